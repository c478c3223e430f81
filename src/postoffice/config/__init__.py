"""postoffice.config package."""
