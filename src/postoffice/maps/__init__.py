"""postoffice.maps package."""
