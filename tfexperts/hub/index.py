"""The collection index: `<collection>/index.json`, listing every module of a collection.

  {"format": INDEX_FORMAT, "collection": name,
   "modules": [{"name": module dir name, "version": int, "handle": "<name>/<version>",
                "kind": ..., "metadata": {...}}, ...],
   "versions": {"<version>": {"planned": [module names], "complete": bool}}}

`CollectionIndex` is that file as a strict record (an unknown or missing key is an
`artifacts.RecordError` naming it and the file), its modules `IndexEntry` records holding their
typed `hub.metadata.ModuleMetadata`. Handles are relative to the collection directory, so a
collection can be copied or moved (e.g. to `gs://`) as a whole. An export first records the
modules it plans for its version, then rewrites the index atomically after each module, so the
index only ever lists complete modules, and says whether every planned one is there (an
interrupted export leaves `complete: false` until a rerun finishes it). Indexes written before
exports recorded their plan have no `versions`; `CollectionIndex.from_json`, the one reader of
older files, reads them as having no plan, so they count as complete.
"""
import dataclasses
import os
from typing import Dict, List

import tensorflow as tf

from tfexperts import artifacts
from tfexperts import errors
from tfexperts import fileio
from tfexperts.hub import metadata as metadata_lib

INDEX_FILE = "index.json"
INDEX_FORMAT = "tfexperts.hub.collection/1"


@dataclasses.dataclass(frozen=True)
class IndexEntry:
  """One module of a collection: its directory `name`, `version`, `handle` (relative to the
  collection directory, "<name>/<version>"), `kind` and `metadata` (a `ModuleMetadata`)."""
  name: str
  version: int
  handle: str
  kind: str
  metadata: metadata_lib.ModuleMetadata

  @classmethod
  def of(cls, name, version, metadata):
    """The entry of module `name` version `version` with its `metadata` (a `ModuleMetadata`)."""
    return cls(name, version, f"{name}/{version}", metadata.kind, metadata)

  def to_json(self):
    """The JSON-ready dict of this entry (its metadata as `ModuleMetadata.to_json`)."""
    return {**dataclasses.asdict(self), "metadata": self.metadata.to_json()}

  @classmethod
  def from_json(cls, data, where):
    """The entry of dict `data`; raises RecordError naming an unknown or missing key and `where`."""
    artifacts.check_keys(cls, data, where)
    return cls(**{**data, "metadata": metadata_lib.from_json(data["metadata"],
                                                             f"{where} metadata")})


@dataclasses.dataclass(frozen=True)
class ExportPlan(artifacts.StrictJson):
  """What one export of a version planned (`planned`: module names) and whether every planned
  module is in the index (`complete`)."""
  planned: List[str]
  complete: bool


@dataclasses.dataclass
class CollectionIndex:
  """The index of a collection: its name, its modules (`IndexEntry`, sorted by name and version)
  and each version's `ExportPlan` (keyed by the version, an int)."""
  collection: str
  modules: List[IndexEntry]
  versions: Dict[int, ExportPlan]

  def to_json(self):
    """The JSON-ready dict of index.json (versions keyed by their decimal string)."""
    return {"format": INDEX_FORMAT, "collection": self.collection,
            "modules": [m.to_json() for m in self.modules],
            "versions": {str(v): p.to_json() for v, p in sorted(self.versions.items())}}

  @classmethod
  def from_json(cls, data, where="collection index"):
    """The index of dict `data` (index.json); raises RecordError naming `where` and an unknown or
    missing key, or a format other than INDEX_FORMAT. The reader of older files: an index
    without `versions` (written before exports recorded their plan) has none."""
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
      raise artifacts.RecordError(f"{where} is not a tfexperts collection index (format "
                                  f"{INDEX_FORMAT!r}).")
    data = {"versions": {}, **data}  # older indexes have none
    artifacts.check_keys(cls, {k: v for k, v in data.items() if k != "format"}, where)
    if not isinstance(data["modules"], list):
      raise artifacts.RecordError(f"{where}: 'modules' must be a list.")
    modules = [IndexEntry.from_json(m, f"{where} modules[{i}]")
               for i, m in enumerate(data["modules"])]
    versions = {int(v): ExportPlan.from_json(p, f"{where} versions[{v!r}]")
                for v, p in data["versions"].items()}
    return cls(data["collection"], modules, versions)

  def available_versions(self):
    """Sorted versions that have a module or a recorded plan."""
    return sorted({m.version for m in self.modules} | set(self.versions))

  def missing(self, version):
    """Sorted names planned for `version` whose module is not in the index (yet)."""
    plan = self.versions.get(version)
    present = {m.name for m in self.modules if m.version == version}
    return sorted(set(plan.planned if plan else ()) - present)

  def latest(self, version=None):
    """The entries, one per module name: `version` if given, else the highest one."""
    chosen = {}
    for module in self.modules:
      if version is not None and module.version != version:
        continue
      current = chosen.get(module.name)
      if current is None or module.version > current.version:
        chosen[module.name] = module
    return [chosen[name] for name in sorted(chosen)]


def index_path(collection_dir):
  """Path of the index file of the collection at `collection_dir`."""
  return os.path.join(collection_dir.rstrip("/"), INDEX_FILE)


def is_collection(directory):
  """True when `directory` holds a collection index."""
  return tf.io.gfile.exists(index_path(directory))


def read(collection_dir):
  """The `CollectionIndex` of the collection at `collection_dir`.

  Raises MissingFileError when there is no index, UserError naming the file when it is not valid
  JSON, RecordError when it is not a tfexperts collection index.
  """
  path = index_path(collection_dir)
  if not tf.io.gfile.exists(path):
    raise errors.MissingFileError(f"{collection_dir!r} is not a hub module collection: no {path!r}"
                                  ".")
  try:
    data = fileio.read_json(path)
  except ValueError as e:
    raise errors.UserError(f"Collection index {path!r} is not valid JSON: {e}") from e
  return CollectionIndex.from_json(data, repr(path))


def _read_or_new(collection_dir, collection):
  index = (read(collection_dir) if is_collection(collection_dir)
           else CollectionIndex(collection, [], {}))
  index.collection = collection
  return index


def _write(collection_dir, index):
  index.versions = {v: ExportPlan(p.planned, not index.missing(v))
                    for v, p in index.versions.items()}
  fileio.write_json_atomic(index_path(collection_dir), index.to_json())
  return index


def record_plan(collection_dir, collection, version, names):
  """Records that `version` of the collection is to hold the modules `names`; returns the
  `CollectionIndex` written."""
  index = _read_or_new(collection_dir, collection)
  index.versions[version] = ExportPlan(sorted(names), False)
  return _write(collection_dir, index)


def update(collection_dir, collection, entries):
  """Adds `entries` (`IndexEntry`) to the collection's index (replacing same name and version);
  returns the `CollectionIndex` written.

  Creates the index when missing. Not safe against two exporters updating one collection at the
  same moment (the last writer wins).
  """
  index = _read_or_new(collection_dir, collection)
  new_keys = {(e.name, e.version) for e in entries}
  modules = [m for m in index.modules if (m.name, m.version) not in new_keys] + list(entries)
  index.modules = sorted(modules, key=lambda m: (m.name, m.version))
  return _write(collection_dir, index)
