"""postoffice.testing package."""
