"""Modules imported on first use, so light registries (task names) load without TensorFlow.

The binaries check flag values against the task registry before anything heavy is imported;
`tfexperts.data.tasks` therefore refers to TensorFlow and tensorflow-datasets through
`LazyModule`s that import them when an attribute is first read.
"""
import importlib


class LazyModule:
  """Stands for the module named `name`; importing it is deferred to the first attribute read."""

  def __init__(self, name):
    self._name = name

  def __getattr__(self, attr):
    return getattr(importlib.import_module(self._name), attr)

  def __repr__(self):
    return f"LazyModule({self._name!r})"
