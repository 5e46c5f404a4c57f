"""Command-line programs; `bin/` holds thin wrappers that run them."""
