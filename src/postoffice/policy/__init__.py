"""postoffice.policy package."""
