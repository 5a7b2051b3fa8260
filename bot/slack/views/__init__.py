"""Block Kit views (modals): pure builders, one surface a module."""
