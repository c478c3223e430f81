"""postoffice.routing package."""
