"""Per-task artifacts: what a `patch`, `adapter` or `head` fine-tune trained, stored apart from
the expert it trained on.

An artifact is a directory of two files, written together atomically (temp directory, then
rename: a path that exists holds a complete artifact):

  artifact.json   the record: `format`, `finetune`, `task`, `num_classes`, `precision`,
                  `resolution`, `input_range`, `trained_parameters`, `expert` ({`handle`,
                  `path`, `identity`: `hub.identity.of_directory` of the module}), `variables`
                  ([{`name`, `shape`}] in the model's order) and `training` (the run's settings)
  variables.npz   the trained variables' float32 values, keys "0000", "0001", ... in that order

It names its expert by content, so applying it to another module is an error naming both
(`check_expert`). `transfer.reuse` applies and exports artifacts.
"""
import io
import json
import os

import numpy as np
import tensorflow as tf

from tfexperts import errors
from tfexperts import fileio
from tfexperts.hub import export as hub_export
from tfexperts.transfer import modes

FORMAT = "tfexperts.transfer.artifact/1"
DIRECTORY = "artifact"  # inside a fine-tuning run's directory
RECORD = "artifact.json"
VALUES = "variables.npz"


def expert_fields(expert):
  """`{"handle", "path", "identity"}` naming module `expert` (an `ExpertRef`) by where it is and
  what it holds."""
  return {"handle": expert.handle, "path": expert.location, "identity": expert.identity}


def save(model, directory, task, resolution, settings=None):
  """Writes the trained variables of `model` (a `finetune.TransferModel` not in `full` mode) and
  their record to `directory` (replaced atomically if it exists).

  Takes the model, the artifact's directory, the task name, the resolution it was trained at and
  the run's settings (JSON-ready dict, recorded as `training`). Returns the artifact's bytes.
  """
  if model.finetune == modes.FULL:
    raise ValueError("A full fine-tune trains every weight: it has no per-task artifact.")
  trained = modes.trained_variables(model)
  record = {"format": FORMAT, "finetune": model.finetune, "task": task,
            "num_classes": model.num_classes, "precision": model.precision,
            "resolution": resolution, "input_range": list(model.expert_ref.input_range),
            "trained_parameters": modes.count(trained), "expert": expert_fields(model.expert_ref),
            "variables": [{"name": v.path, "shape": list(v.shape)} for v in trained],
            "training": settings or {}}
  buffer = io.BytesIO()
  np.savez(buffer, **{f"{i:04d}": np.asarray(v.numpy(), np.float32)
                      for i, v in enumerate(trained)})

  def write(tmp):
    tf.io.gfile.makedirs(tmp)
    with tf.io.gfile.GFile(os.path.join(tmp, VALUES), "wb") as f:
      f.write(buffer.getvalue())
    with tf.io.gfile.GFile(os.path.join(tmp, RECORD), "w") as f:
      f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")

  hub_export.write_atomically(directory, write, overwrite=True, nbytes=len(buffer.getvalue()))
  return fileio.tree_nbytes(directory)


def read(directory):
  """`(record, values)` of the artifact at `directory`: its record dict and its arrays in order.

  Raises UserError naming the directory when it is not an artifact (missing files, unknown
  format, values that do not match the record).
  """
  record_path = os.path.join(directory, RECORD)
  if not tf.io.gfile.exists(record_path):
    raise errors.MissingFileError(f"{directory} is not a tfexperts fine-tuning artifact: no "
                                  f"{RECORD} (artifacts are the `artifact/` directory of a "
                                  "patch, adapter or head run).")
  record = fileio.read_json(record_path)
  if not isinstance(record, dict) or record.get("format") != FORMAT:
    raise errors.UserError(f"{record_path}: format {record.get('format')!r} is not {FORMAT!r}.")
  with tf.io.gfile.GFile(os.path.join(directory, VALUES), "rb") as f:
    data = np.load(io.BytesIO(f.read()))
    values = [data[f"{i:04d}"] for i in range(len(data.files))]
  shapes = [tuple(v["shape"]) for v in record["variables"]]
  if [v.shape for v in values] != shapes:
    raise errors.UserError(f"{directory}: {VALUES} holds shapes {[v.shape for v in values]}, its "
                           f"record lists {shapes}.")
  return record, values


def check_expert(record, expert, directory):
  """Raises UserError naming both modules (paths and identities) when module `expert` (an
  `ExpertRef`) is not the one the artifact at `directory` (its `record`) was trained on, or is
  given another input range."""
  given = expert_fields(expert)
  trained = record["expert"]
  if given["identity"] != trained["identity"]:
    raise errors.UserError(
        f"Artifact {directory} was trained on module {trained['path']} (identity "
        f"{trained['identity'][:16]}), not on {given['path']} (identity "
        f"{given['identity'][:16]}): apply it to the module it was trained on.")
  value_range = list(expert.input_range)
  if value_range != list(record["input_range"]):
    raise errors.UserError(f"Artifact {directory} was trained with inputs in range "
                           f"{record['input_range']}; handle {expert.handle} gives {value_range}: use "
                           f"{trained['handle']}.")
