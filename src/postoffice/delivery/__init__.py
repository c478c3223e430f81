"""postoffice.delivery package."""
