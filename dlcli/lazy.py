"""TensorFlow and Keras, imported on first use.

Importing TensorFlow costs ~8 s on a small machine. Recipes and commands refer to `tf` and
`keras` at module level as keras-io examples do, but the import only happens when a
command actually builds a model or a dataset, so `dlcli --help`, `list` and `show` stay fast.
"""

import importlib


class LazyModule:
    """Stands in for a module and imports it when an attribute is first read."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return f"<lazy module {self._name!r}>"


tf = LazyModule("tensorflow")
keras = LazyModule("keras")
