"""The module names of a pool of hub modules, read from local collection indexes without
TensorFlow (so configs and binaries check an expert's name before anything heavy loads).

Remote handles (gs://, URLs, tfhub:NAME) are left to `hub.load`, which checks them when it
reads them; their names are known only then.
"""
import json
import os
import re

from tfexperts import errors

SAVED_MODEL_FILE = "saved_model.pb"  # tf.saved_model.SAVED_MODEL_FILENAME_PB
INDEX_FILE = "index.json"  # tfexperts.hub.index.INDEX_FILE


def is_local(path):
  """True for a path on this machine (a plain path or file:// URL), False for gs://, https://,
  tfhub:NAME and other scheme-prefixed handles."""
  return path.startswith("file://") or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path)


def local_path(spec):
  """The file system path of a local handle (without its `?range=...` options or file://)."""
  path = spec.split("?")[0]
  return path[len("file://"):] if path.startswith("file://") else path


def _collection_names(label, index_file):
  """Module names of a local collection index; each listed module directory must exist."""
  try:
    with open(index_file) as f:
      modules = json.load(f)["modules"]
    entries = [(m["name"], m["handle"]) for m in modules]
  except (ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f"{label}: {index_file!r} is not a valid collection index "
                           f"({type(e).__name__}: {e}).") from None
  for name, handle in entries:
    if not os.path.isdir(os.path.join(os.path.dirname(index_file), handle)):
      raise errors.UserError(f"{label}: {index_file!r} lists module {name!r} at {handle!r}, "
                             "which does not exist (a moved or partly deleted collection).")
  return [name for name, _ in entries]


def module_names(specs, label="experts"):
  """Checks each local spec is a SavedModel directory or a collection with a sound index.json.

  Takes hub handles / collection directories (a list, or a comma-separated str) and the name
  errors start with (a flag, a config field). Returns the module names of the collections when
  every spec is a local collection, else None (names of single or remote modules are known only
  once their metadata is read). Raises UserError naming a missing path or a broken index.
  """
  if isinstance(specs, str):
    specs = [s for s in specs.split(",") if s]
  names = []
  for spec in specs:
    if not is_local(spec):
      names = None
      continue
    path = local_path(spec)
    if not os.path.exists(path):
      raise errors.UserError(f"{label}: {spec!r} does not exist.")
    index_file = os.path.join(path, INDEX_FILE)
    if os.path.isfile(index_file):
      found = _collection_names(label, index_file)
      names = None if names is None else names + found
    elif os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
      names = None
    else:
      raise errors.UserError(f"{label}: {spec!r} is neither a hub module (no {SAVED_MODEL_FILE}) "
                             f"nor a collection of them (no {INDEX_FILE}).")
  return names
