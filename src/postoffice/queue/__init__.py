"""postoffice.queue package."""
