"""The collection index: `<collection>/index.json`, listing every module of a collection.

  {"format": INDEX_FORMAT, "collection": name,
   "modules": [{"name": module dir name, "version": int, "handle": "<name>/<version>",
                "kind": ..., "metadata": {...}}, ...]}

Handles are relative to the collection directory, so a collection can be copied or moved (e.g. to
`gs://`) as a whole. The index is rewritten atomically after each module is exported, so it only
ever lists complete modules.
"""
import os

import tensorflow as tf

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
  """Index entry of module `name` version `version` with its `metadata` dict."""
  return {"name": name, "version": version, "handle": f"{name}/{version}",
          "kind": metadata.get("kind"), "metadata": metadata}


def read(collection_dir):
  """Returns the index dict of the collection at `collection_dir`.

  Raises FileNotFoundError when there is no index, ValueError naming the file when it is not a
  tfexperts collection index.
  """
  path = index_path(collection_dir)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{collection_dir!r} is not a hub module collection: no {path!r}.")
  try:
    data = fileio.read_json(path)
  except ValueError as e:
    raise ValueError(f"Collection index {path!r} is not valid JSON: {e}") from e
  if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(
      data.get("modules"), list):
    raise ValueError(f"{path!r} is not a tfexperts collection index (format {INDEX_FORMAT!r} "
                     "with a 'modules' list).")
  return data


def update(collection_dir, collection, entries):
  """Adds `entries` to the collection's index (replacing same name and version); returns it.

  Creates the index when missing. Not safe against two exporters updating one collection at the
  same moment (the last writer wins).
  """
  data = read(collection_dir) if is_collection(collection_dir) else {
      "format": INDEX_FORMAT, "collection": collection, "modules": []}
  new_keys = {(e["name"], e["version"]) for e in entries}
  modules = [m for m in data["modules"] if (m.get("name"), m.get("version")) not in new_keys]
  modules.extend(entries)
  data["modules"] = sorted(modules, key=lambda m: (str(m["name"]), m["version"]))
  data["collection"] = collection
  fileio.write_json_atomic(index_path(collection_dir), data)
  return data


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
