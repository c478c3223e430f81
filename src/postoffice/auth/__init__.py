"""postoffice.auth package."""
