"""Exporting a training workdir's finished models as a collection of hub modules.

Finished models (`tfexperts.models.finished`, each with its `tfexperts.artifacts.ModelRecord`)
anywhere below the workdir become modules under
`<export_dir>/<collection>/<module>/<version>/`:

  artifact kind   modules: kind (module directory name)
  baseline        the baseline, upstream head as `logits`: baseline  (its name, else "baseline")
  full            the expert: full                                   (the expert's name)
  adapter_bank    each expert, extracted: adapter                    ("adapter_<expert name>")
                  the whole bank, taking expert ids: adapter_bank    (its name, else "adapter_bank")
  patch_bank      each expert, extracted: patch                      ("patch_<expert name>")
                  the whole bank: patch_bank                         (its name, else "patch_bank")
  epn             the expert prediction network, head as `logits`    (its name, else "epn")
Names are made filesystem-safe ("thing/red" -> "thing_red").

Every planned module is checked (unique names) before the first one is written; the collection
index records the planned set first and is updated after each module. Exports resume: a rerun
(without `overwrite`) keeps each module already at its version once its metadata and saved
variables are checked against its finished model, writes the missing ones, and removes the temp directories an interrupted run
left for the planned modules; `overwrite` rewrites them all.
"""
import dataclasses
import os
import re

import numpy as np
import tensorflow as tf
from absl import logging

from tfexperts import artifacts
from tfexperts import errors
from tfexperts.hub import copies
from tfexperts.hub import export
from tfexperts.hub import index as index_lib
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import verify
from tfexperts.models import finished
from tfexperts.models import patches

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TEMP_MARK = ".tmp-"
_STALE_TEMP = re.compile(r"\.tmp-[0-9a-f]{32}$")
_SAVED_VARIABLE = re.compile(r"^variables/\d+/\.ATTRIBUTES/VARIABLE_VALUE$")


def safe_name(name):
  """`name` with every run of characters outside [A-Za-z0-9._-] replaced by "_" (for dirs)."""
  cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_")
  return cleaned if _NAME_OK.match(cleaned) else f"m_{cleaned}"


def check_collection_name(collection):
  """Returns `collection` if it is a valid directory name, else raises ValueError."""
  if not isinstance(collection, str) or not _NAME_OK.match(collection):
    raise errors.UserError("The collection name must be letters, digits, '.', '_' or '-' (not "
                           f"starting with '.', '_' or '-'). Received: {collection!r}")
  return collection


def check_version(version):
  """Returns `version` if it is a positive int (hub versions are), else raises ValueError."""
  if isinstance(version, bool) or not isinstance(version, int) or version <= 0:
    raise errors.UserError(f"`version` must be a positive integer. Received: version={version!r}")
  return version


def find_finished_models(workdir):
  """Finished models below `workdir`, sorted, as `[(directory, record), ...]` (`record`: its
  `artifacts.ModelRecord`, read and checked once here).

  Walks with tf.io.gfile (so `gs://` works), skips temp directories of interrupted writes and does
  not descend into finished models. Raises FileNotFoundError when `workdir` does not exist and
  `artifacts.RecordError` (a ValueError) naming the file and key when a record is malformed or
  has an unknown kind.
  """
  if not tf.io.gfile.isdir(workdir):
    raise errors.MissingFileError(f"Workdir {workdir!r} does not exist or is not a directory.")
  found = []
  pending = [workdir.rstrip("/")]
  while pending:
    directory = pending.pop()
    if finished.is_final(directory):
      found.append((directory, artifacts.read_record(directory)))
      continue
    for child in tf.io.gfile.listdir(directory):
      child = child.rstrip("/")
      path = os.path.join(directory, child)
      if _TEMP_MARK not in child and tf.io.gfile.isdir(path):
        pending.append(path)
  return sorted(found, key=lambda item: item[0])


@dataclasses.dataclass
class PlannedModule:
  """One module to write: its directory name and kind, source artifact, and (for an expert
  extracted from a bank) its bank row."""
  module: str
  kind: str
  artifact: str
  expert_id: int = None


def _plan_artifact(directory, record):
  kind = record.kind
  if kind in ("baseline", "epn"):
    return [PlannedModule(safe_name(record.name or kind), kind, directory)]
  if kind == "full":
    name = record.expert.name or record.name or "full"
    return [PlannedModule(safe_name(name), kind, directory)]
  if kind not in artifacts.BANK_KINDS:
    raise errors.UserError(f"{directory}: a {kind!r} model is not part of an expert collection "
                           f"(its kinds: baseline, full, epn, {', '.join(artifacts.BANK_KINDS)}).")
  prefix = kind[:-len("_bank")]
  planned = [PlannedModule(f"{prefix}_{safe_name(e.name or f'expert{i}')}", prefix,
                           directory, i) for i, e in enumerate(record.experts)]
  planned.append(PlannedModule(safe_name(record.name or kind), kind, directory))
  return planned


def plan(workdir):
  """Lists the modules a workdir exports to, checking their names first.

  Returns a list of `PlannedModule`, grouped by artifact. Raises ValueError when two modules would
  share a directory name or the workdir has no finished model.
  """
  return _plan(workdir, find_finished_models(workdir))


def _plan(workdir, found):
  planned = []
  for directory, record in found:
    planned.extend(_plan_artifact(directory, record))
  if not planned:
    raise errors.UserError(f"No finished models (directories with {artifacts.MODEL_CONFIG}, "
                           f"{artifacts.MODEL_WEIGHTS} and {artifacts.METADATA}) below {workdir!r}"
                           ".")
  by_name = {}
  for p in planned:
    if p.module in by_name:
      other = by_name[p.module]
      raise errors.UserError(f"Two modules would be named {p.module!r}: {p.kind} from "
                             f"{p.artifact!r} and {other.kind} from {other.artifact!r}. Give the "
                             "finished models distinct names in their metadata.")
    by_name[p.module] = p
  return planned


def _module_metadata(p, model, record, expert):
  """Metadata of planned module `p` from its artifact's `model` and `record` (`expert`: the
  `ExpertInfo` of a full or extracted expert, else None)."""
  common = {"module": p.module, "resolution": record.resolution, "source": record}
  if p.kind == "baseline":
    # A baseline's label prior is not recorded (label matching scores experts, not the baseline).
    return metadata_lib.build(
        "baseline", record.name or "baseline", model, num_images=record.num_upstream_images,
        label_prior=None, with_logits=True, logit_names=record.upstream_class_names, **common)
  if p.kind == "epn":
    return metadata_lib.build("epn", record.name or "epn", model, with_logits=True,
                              logit_names=record.domain_names or None, **common)
  if p.kind in artifacts.BANK_KINDS:
    return metadata_lib.build(p.kind, record.name or p.kind, model, experts=list(record.experts),
                              **common)
  return metadata_lib.build(
      p.kind, expert.name or record.name or p.module, model, node=expert.node,
      expert_id=p.expert_id, num_images=expert.num_images, label_prior=expert.label_prior,
      slices=expert.slices, **common)


def _single_expert(model, p):
  if p.kind == "adapter":
    return model.extract_expert(p.expert_id)
  if p.kind == "patch":
    return patches.extract_patch_expert(model, p.expert_id)
  return model


def _export_or_verify(p, model, record, collection_dir, collection, version, overwrite):
  """Writes planned module `p` (or, when it exists and not `overwrite`, checks it); returns its
  index entry, which is added to the index."""
  expert = None
  if p.expert_id is not None:
    expert = record.experts[p.expert_id]
  elif p.kind == "full":
    expert = record.expert
  path = os.path.join(collection_dir, p.module, str(version))
  with_logits = p.kind in ("baseline", "epn")
  bank = p.kind in artifacts.BANK_KINDS
  single = model if bank else _single_expert(model, p)
  meta_out = _module_metadata(p, single, record, expert)
  if tf.io.gfile.exists(path) and not overwrite:
    _verify_existing(path, single, meta_out, with_logits)
    logging.info("Kept %s (%s) at %s: matches its finished model.", p.module, p.kind, path)
  else:
    if bank:
      export.export_bank(model, path, meta_out, overwrite=overwrite)
    else:
      export.export_expert(single, path, meta_out, with_logits=with_logits, overwrite=overwrite)
    logging.info("Exported %s (%s) to %s", p.module, p.kind, path)
  entry = index_lib.IndexEntry.of(p.module, version, meta_out)
  index_lib.update(collection_dir, collection, [entry])
  return entry


def _verify_existing(path, model, metadata, with_logits):
  """Checks the module at `path` was written from `model`: same metadata, and every saved variable
  equal to the export copy's (read from the checkpoint, without loading the SavedModel's graph;
  the graph was checked against the model when the module was written)."""
  hint = "Pass overwrite=True (--overwrite) to replace it, or export another --version."
  if metadata_lib.read(path) != metadata:
    raise FileExistsError(f"Module {path!r} already exists with other metadata than the finished "
                          f"model would give (exported from another run?). {hint}")
  want = copies.export_ready(model, keep_head=with_logits).variables
  try:
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    saved = [k for k in reader.get_variable_to_shape_map() if _SAVED_VARIABLE.match(k)]
  except (tf.errors.OpError, ValueError) as e:
    raise FileExistsError(f"Module {path!r} already exists but its variables cannot be read "
                          f"({type(e).__name__}: {e}). {hint}") from e
  if len(saved) != len(want):
    raise FileExistsError(f"Module {path!r} already exists with {len(saved)} variables; its "
                          f"finished model has {len(want)}. {hint}")
  for i, variable in enumerate(want):
    if not np.array_equal(reader.get_tensor(f"variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"),
                          variable.numpy()):
      raise FileExistsError(f"Module {path!r} already exists but its variable {variable.path!r} "
                            f"differs from the finished model's. {hint}")


def remove_stale_temps(collection_dir, modules, version):
  """Removes `<module>/<version>.tmp-<hex>` directories (left by a killed export) of `modules`.

  Only an exporter of this collection and version makes these names; returns the paths removed.
  """
  removed = []
  for name in modules:
    pattern = os.path.join(collection_dir, name, f"{version}{_TEMP_MARK}*")
    for path in tf.io.gfile.glob(pattern):
      if _STALE_TEMP.search(path):
        tf.io.gfile.rmtree(path) if tf.io.gfile.isdir(path) else tf.io.gfile.remove(path)
        removed.append(path)
  if removed:
    logging.info("Removed temp directories of an interrupted export: %s", removed)
  return removed


def _load_artifact(directory, record):
  """(model, record) of a finished model; a bank comes as its checked, export-ready copy."""
  model, record = finished.load_final(directory, record)
  count = export.num_bank_experts(model)
  if not count:
    return model, record
  if count != len(record.experts or []):
    raise errors.UserError(f"{directory!r}: the bank holds {count} experts but its record lists "
                           f"{len(record.experts or [])}.")
  # One headless, fully trainable copy serves the bank module and every extracted expert, so
  # the experts need no copy of their own.
  ready = copies.export_ready(model)
  if ready is not model:
    ids = np.arange(max(count, verify.NUM_IMAGES), dtype="int32") % count
    images = verify.check_images(record.resolution or metadata_lib.DEFAULT_RESOLUTION, len(ids))
    verify.compare_models(ready, model, images, ids, where=f"export copy of {directory}")
  return ready, record


def export_workdir(workdir, export_dir="export", collection=None, version=1, overwrite=False):
  """Exports every finished model below `workdir` into one collection of hub modules.

  Args:
    workdir: a training workdir (local or `gs://`).
    export_dir: root of exports; modules go to `<export_dir>/<collection>/<module>/<version>`.
    collection: collection name; default: the workdir's base name.
    version: positive int version of every module written.
    overwrite: rewrite modules that already exist at `version`; without it they are kept once
      checked against their finished model (a FileExistsError says when one does not match).

  Returns:
    The index entries (`hub.index.IndexEntry`) of every planned module, in plan order. Raises (see `plan`) before writing anything when names clash.
  """
  collection = check_collection_name(
      collection if collection is not None else os.path.basename(workdir.rstrip("/")))
  check_version(version)
  collection_dir = os.path.join(export_dir, collection)
  found = find_finished_models(workdir)
  records = dict(found)
  planned = _plan(workdir, found)
  names = [p.module for p in planned]
  remove_stale_temps(collection_dir, names, version)
  index_lib.record_plan(collection_dir, collection, version, names)
  entries = []
  loaded = {}
  for p in planned:
    if p.artifact not in loaded:
      loaded.clear()  # one finished model in memory at a time (planned modules are grouped)
      loaded[p.artifact] = _load_artifact(p.artifact, records[p.artifact])
    model, record = loaded[p.artifact]
    entries.append(_export_or_verify(p, model, record, collection_dir, collection, version,
                                     overwrite))
  return entries


def format_entries(entries):
  """A printable table of index entries: module, kind, handle, feature size, logits."""
  rows = [("module", "kind", "handle", "features", "logits")]
  for e in entries:
    outputs = e.metadata.outputs
    rows.append((e.name, e.kind, e.handle, str(outputs.pre_logits),
                 "" if outputs.logits is None else str(outputs.logits)))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
