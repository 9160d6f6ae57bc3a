"""The recipes: one module each, found by name (see dlcli.training.registry)."""
