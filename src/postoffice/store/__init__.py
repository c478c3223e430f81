"""postoffice.store package."""
