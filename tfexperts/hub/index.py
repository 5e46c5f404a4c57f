"""The collection index: `<collection>/index.json`, listing every module of a collection.

  {"format": INDEX_FORMAT, "collection": name,
   "modules": [{"name": module dir name, "version": int, "handle": "<name>/<version>",
                "kind": ..., "metadata": {...}}, ...],
   "versions": {"<version>": {"planned": [module names], "complete": bool}}}

Handles are relative to the collection directory, so a collection can be copied or moved (e.g. to
`gs://`) as a whole. An export first records the modules it plans for its version, then rewrites
the index atomically after each module, so the index only ever lists complete modules, and says
whether every planned one is there (an interrupted export leaves `complete: false` until a rerun
finishes it). Indexes without `versions` (older exports) count as complete.
"""
import os

import tensorflow as tf

from tfexperts import errors
from tfexperts import fileio

INDEX_FILE = "index.json"
INDEX_FORMAT = "tfexperts.hub.collection/1"


def index_path(collection_dir):
  """Path of the index file of the collection at `collection_dir`."""
  return os.path.join(collection_dir.rstrip("/"), INDEX_FILE)


def is_collection(directory):
  """True when `directory` holds a collection index."""
  return tf.io.gfile.exists(index_path(directory))


def entry(name, version, metadata):
  """Index entry (a dict) of module `name` version `version` with its `metadata` (a
  `hub.metadata.ModuleMetadata`, stored as its JSON)."""
  return {"name": name, "version": version, "handle": f"{name}/{version}",
          "kind": metadata.kind, "metadata": metadata.to_json()}


def read(collection_dir):
  """Returns the index dict of the collection at `collection_dir`.

  Raises FileNotFoundError when there is no index, ValueError naming the file when it is not a
  tfexperts collection index.
  """
  path = index_path(collection_dir)
  if not tf.io.gfile.exists(path):
    raise errors.MissingFileError(f"{collection_dir!r} is not a hub module collection: no {path!r}"
                                  ".")
  try:
    data = fileio.read_json(path)
  except ValueError as e:
    raise errors.UserError(f"Collection index {path!r} is not valid JSON: {e}") from e
  if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(
      data.get("modules"), list):
    raise errors.UserError(f"{path!r} is not a tfexperts collection index (format {INDEX_FORMAT!r}"
                           " with a 'modules' list).")
  return data


def _read_or_new(collection_dir, collection):
  data = read(collection_dir) if is_collection(collection_dir) else {
      "format": INDEX_FORMAT, "collection": collection, "modules": []}
  data["collection"] = collection
  return data


def _write(collection_dir, data):
  for version, export in (data.get("versions") or {}).items():
    export["complete"] = not missing(data, int(version))
  fileio.write_json_atomic(index_path(collection_dir), data)
  return data


def record_plan(collection_dir, collection, version, names):
  """Records that `version` of the collection is to hold the modules `names`; returns the index."""
  data = _read_or_new(collection_dir, collection)
  data.setdefault("versions", {})[str(version)] = {"planned": sorted(names), "complete": False}
  return _write(collection_dir, data)


def update(collection_dir, collection, entries):
  """Adds `entries` to the collection's index (replacing same name and version); returns it.

  Creates the index when missing. Not safe against two exporters updating one collection at the
  same moment (the last writer wins).
  """
  data = _read_or_new(collection_dir, collection)
  new_keys = {(e["name"], e["version"]) for e in entries}
  modules = [m for m in data["modules"] if (m.get("name"), m.get("version")) not in new_keys]
  modules.extend(entries)
  data["modules"] = sorted(modules, key=lambda m: (str(m["name"]), m["version"]))
  return _write(collection_dir, data)


def versions(data):
  """Sorted versions that have a module or a recorded plan in index `data`."""
  found = {m.get("version") for m in data["modules"]}
  found.update(int(v) for v in data.get("versions") or {})
  return sorted(v for v in found if isinstance(v, int))


def missing(data, version):
  """Sorted names planned for `version` whose module is not in index `data` (yet)."""
  planned = ((data.get("versions") or {}).get(str(version)) or {}).get("planned") or []
  present = {m.get("name") for m in data["modules"] if m.get("version") == version}
  return sorted(set(planned) - present)


def latest(data, version=None):
  """Index entries of `data`, one per module name: `version` if given, else the highest one."""
  chosen = {}
  for module in data["modules"]:
    if version is not None and module.get("version") != version:
      continue
    current = chosen.get(module["name"])
    if current is None or module["version"] > current["version"]:
      chosen[module["name"]] = module
  return [chosen[name] for name in sorted(chosen)]
