"""The `autarky` command line."""
