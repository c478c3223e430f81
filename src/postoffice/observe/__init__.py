"""postoffice.observe package."""
