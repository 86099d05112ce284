"""foundations."""
