"""postoffice.message package."""
