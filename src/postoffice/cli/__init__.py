"""postoffice.cli package."""
