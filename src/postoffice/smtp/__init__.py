"""postoffice.smtp package."""
