"""Writing hub modules: a SavedModel plus `assets/metadata.json`, checked, then moved into place.

A module is written into a temp directory beside its final path, reloaded and compared with the
Keras model (see `verify`), and only then renamed to the final path, so a path that exists always
holds a complete, checked module; on any failure the temp directory is removed. An existing
module is replaced only with `overwrite=True` (the old one is moved aside first and deleted last).
"""
import contextlib

import numpy as np
import tensorflow as tf
from absl import logging

from tfexperts import fileio
from tfexperts.hub import copies
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import module as module_lib
from tfexperts.hub import native
from tfexperts.hub import verify
from tfexperts.models import finite


def _check_metadata(metadata):
  if not isinstance(metadata, metadata_lib.ModuleMetadata) or metadata.is_absent:
    raise ValueError("`metadata` must be the ModuleMetadata of a tfexperts module (see "
                     f"`metadata.build`). Received: {metadata!r}")
  return metadata


def check_target(path, overwrite=False):
  """Raises FileExistsError when `path` exists and `overwrite` is False; returns `path`."""
  if tf.io.gfile.exists(path) and not overwrite:
    raise FileExistsError(f"{path!r} already exists; pass overwrite=True (--overwrite) to "
                          "replace it, or export another version.")
  return path


def write_atomically(path, write_fn, overwrite=False, nbytes=None):
  """Runs `write_fn(temp_dir)` and renames the temp directory to `path`.

  Args:
    path: final directory (local or `gs://`).
    write_fn: callable filling the temp directory it is given; anything it raises propagates,
      after the temp directory is removed.
    overwrite: replace an existing `path`; without it an existing `path` raises FileExistsError.
    nbytes: about how many bytes the module takes (int or callable), for a disk-full message;
      default: what the temp directory holds when the write fails.

  Returns:
    `path`. Raises `errors.DiskFullError` naming `path` (and leaving no temp directory) when the
    disk has no room for the module.
  """
  path = check_target(path.rstrip("/"), overwrite)
  parent = fileio.parent_dir(path)
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = fileio.temp_path_beside(path)
  try:
    size = (nbytes, "about ") if nbytes is not None else (lambda: fileio.tree_nbytes(tmp),
                                                           "at least ")
    with fileio.disk_writes(path, *size):
      write_fn(tmp)
      if not tf.io.gfile.exists(path):
        tf.io.gfile.rename(tmp, path)
      else:
        old = fileio.temp_path_beside(path)
        tf.io.gfile.rename(path, old)
        try:
          tf.io.gfile.rename(tmp, path)
        except BaseException:
          tf.io.gfile.rename(old, path)  # put the old module back
          raise
        tf.io.gfile.rmtree(old)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
  return path


def _save_context(options):
  """Context in which functions trace as `tf.saved_model.save` traces them, when available.

  The save traces every function again under its own context (its variable policy is part of
  the trace key), so tracing `__call__` beforehand, as the polymorphic signature requires, would
  cost twice the model traces. Tracing under the same context lets the save reuse those traces.
  This uses TensorFlow's private save_context module, so without it tracing simply happens twice.
  """
  try:
    from tensorflow.python.saved_model import save_context  # pylint: disable=g-import-not-at-top
  except ImportError:
    return contextlib.nullcontext()
  return save_context.save_context(options)


def _check_finite(model, metadata, path):
  """NonFiniteModelError naming the module when `model` diverged (NaN or infinite weights)."""
  name = metadata.module or metadata.name or model.name
  finite.check_finite(model, name, f" Not exported to {path}: train it again with a lower "
                      "learning rate (a smaller --base_lr, in a new --workdir).")


def _write_and_check(module, model, directory, metadata, expert_ids):
  options = tf.saved_model.SaveOptions()
  with _save_context(options):
    signatures = module.signatures()
  tf.saved_model.save(module, directory, signatures=signatures, options=options)
  metadata_lib.write(directory, metadata)
  loaded = tf.saved_model.load(directory)
  resolution = metadata_lib.input_resolution(metadata)
  images = verify.check_images(resolution, count=len(expert_ids) if expert_ids is not None
                               else verify.NUM_IMAGES)
  where = metadata.module or metadata.name or directory
  diff = verify.compare(loaded, model, images, expert_ids, module.with_logits, where=where,
                        call_output=module.call_output)
  if expert_ids is None and module.call_output == module_lib.PRE_LOGITS:
    # lets tfexperts.hub.native check a model rebuilt from the metadata
    native.write_check_features(directory, resolution, len(images), 0,
                                loaded(tf.constant(images)).numpy())
  if metadata_lib.read(directory) != metadata:
    raise verify.VerificationError(f"{directory}: metadata asset does not read back equal.")
  if len(loaded.variables) != len(module.variables) or (
      len(loaded.trainable_variables) != len(module.trainable_variables)):
    raise verify.VerificationError(
        f"{directory}: reloaded module has {len(loaded.variables)} variables "
        f"({len(loaded.trainable_variables)} trainable), expected {len(module.variables)} "
        f"({len(module.trainable_variables)}).")
  logging.info("Checked module %s: max difference %.3g from the Keras model (tolerance %g x "
               "output scale).", where, diff, verify.TOLERANCE)


def export_expert(model, path, metadata, with_logits=False, overwrite=False,
                  call_output=module_lib.PRE_LOGITS):
  """Writes one expert as a hub module at `path` (e.g. `export/<collection>/<expert>/1`).

  Args:
    model: a built `ResNetV2` or single-expert `AdapterExpertModel` (for a bank expert, pass
      `bank.extract_expert(e)` or `patches.extract_patch_expert(bank, e)`). Left unchanged: when
      it has a head to drop or variables created frozen, the module is written from a fully
      trainable copy (see `copies`).
    path: the module's directory (local or `gs://`).
    metadata: the module's `hub.metadata.ModuleMetadata` (see `metadata.build`), written to
      `assets/metadata.json`; its `input.resolution` (default 224) sizes the check images.
    with_logits: keep the upstream head as a `logits` endpoint (baseline, EPN); otherwise the
      head is dropped.
    overwrite: replace an existing module at `path`.
    call_output: what the module's `__call__` returns: `pre_logits` (experts), or `logits` for
      a task module (`tfexperts.transfer.reuse.export`, with `with_logits`).

  Returns:
    `path`. Raises FileExistsError (exists, no overwrite), ValueError (bad model or metadata),
    `errors.NonFiniteModelError` (a NaN or infinite weight: the model diverged) or
    `verify.VerificationError` (the written module differs from `model`), leaving nothing at
    `path` (or the old module, untouched) on failure.
  """
  if getattr(model, "patch_experts", 0) or getattr(model, "num_experts", 1) != 1:
    raise ValueError(f"export_expert takes a single-expert model; use export_bank for the bank "
                     f"{model.name!r}, or extract one expert first.")
  metadata = _check_metadata(metadata)
  check_target(path.rstrip("/"), overwrite)
  _check_finite(model, metadata, path)
  module = module_lib.ExpertModule(copies.export_ready(model, keep_head=with_logits), with_logits,
                                   call_output)
  return write_atomically(path, lambda d: _write_and_check(module, model, d, metadata, None),
                          overwrite, lambda: fileio.variables_nbytes(model.weights))


def num_bank_experts(model):
  """Number of experts of an adapter bank or patch bank (0 for a plain model)."""
  return getattr(model, "num_experts", 0) or getattr(model, "patch_experts", 0)


def export_bank(model, path, metadata, with_logits=False, overwrite=False):
  """Writes a whole adapter or patch bank as one hub module taking `(images, expert_ids)`.

  Args:
    model: a built `AdapterExpertModel` or patch-bank `ResNetV2` (`patch_experts > 0`); left
      unchanged.
    path, metadata, with_logits, overwrite: as in `export_expert`. Every expert is checked.

  Returns:
    `path`; raises as `export_expert` does.
  """
  count = num_bank_experts(model)
  if not count:
    raise ValueError(f"export_bank takes an adapter or patch bank. Model {model.name!r} is a "
                     "plain model; use export_expert.")
  metadata = _check_metadata(metadata)
  check_target(path.rstrip("/"), overwrite)
  _check_finite(model, metadata, path)
  module = module_lib.BankModule(copies.export_ready(model, keep_head=with_logits), with_logits)
  ids = np.arange(max(count, verify.NUM_IMAGES), dtype="int32") % count
  return write_atomically(path, lambda d: _write_and_check(module, model, d, metadata, ids),
                          overwrite, lambda: fileio.variables_nbytes(model.weights))

