"""postoffice.net package."""
