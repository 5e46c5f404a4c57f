"""`tensorflow_hub`, importable with setuptools >= 82.

tensorflow_hub 0.16.1 checks TensorFlow's version at import with `pkg_resources.parse_version`,
and setuptools 82 removed `pkg_resources` (tensorflow/hub#934), so `import tensorflow_hub` fails
there with ModuleNotFoundError. When it does, the import is retried with a stand-in
`pkg_resources` offering only `parse_version` (from `packaging`), present just for that import.
Use `from tfexperts.hub.tfhub import hub`.
"""
import importlib
import sys
import types


def _import_tensorflow_hub():
  try:
    return importlib.import_module("tensorflow_hub")
  except ModuleNotFoundError as e:
    if e.name != "pkg_resources":
      raise
  from packaging import version  # pylint: disable=g-import-not-at-top
  stand_in = types.ModuleType("pkg_resources")
  stand_in.parse_version = version.parse
  sys.modules["pkg_resources"] = stand_in
  try:
    return importlib.import_module("tensorflow_hub")
  finally:
    if sys.modules.get("pkg_resources") is stand_in:
      del sys.modules["pkg_resources"]


hub = _import_tensorflow_hub()
