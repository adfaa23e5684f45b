"""The `hubble` command-line interface."""
