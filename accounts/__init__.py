"""Users and API authentication."""
