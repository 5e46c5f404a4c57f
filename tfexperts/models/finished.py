"""Finished models in a workdir: the files training writes and export reads.

A finished model is a directory holding
  model.json          the Keras serialization of the model (`keras.saving.serialize_keras_object`)
  model.weights.h5    its weights (`model.save_weights`)
  metadata.json       what it is: a `tfexperts.artifacts.ModelRecord`
written into a temp directory beside it and renamed into place, so a directory named like a
finished model is always complete.
"""
import json
import os
import tempfile

import keras
import tensorflow as tf

from tfexperts import artifacts
from tfexperts import errors
from tfexperts import fileio
# Imported for their Keras registrations, so any finished model deserializes.
from tfexperts.models import adapters  # pylint: disable=unused-import
from tfexperts.models import bit  # pylint: disable=unused-import
from tfexperts.models import finite

MODEL_CONFIG = artifacts.MODEL_CONFIG
MODEL_WEIGHTS = artifacts.MODEL_WEIGHTS
METADATA = artifacts.METADATA


def save_final(model, directory, record):
  """Writes a built Keras `model` and its `record` (an `artifacts.ModelRecord`) as a finished
  model at `directory`. Overwrites an existing finished model. Returns `directory`.

  Raises `errors.NonFiniteModelError` (writing nothing) when a weight is NaN or infinite, and
  `errors.DiskFullError` (leaving no temp directory) when the disk has no room for it.
  """
  if not isinstance(record, artifacts.ModelRecord):
    raise TypeError(f"`record` must be a tfexperts.artifacts.ModelRecord. Received: "
                    f"{type(record).__name__}")
  finite.check_finite(model, record.name, f" Not saved as a finished model at {directory}.")
  parent = fileio.parent_dir(directory.rstrip("/"))
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = fileio.temp_path_beside(directory.rstrip("/"))
  try:
    with fileio.disk_writes(directory, lambda: fileio.variables_nbytes(model.weights),
                            qualifier="about "):
      tf.io.gfile.makedirs(tmp)
      config = keras.saving.serialize_keras_object(model)
      fileio.write_bytes_atomic(os.path.join(tmp, MODEL_CONFIG), json.dumps(config).encode())
      _save_weights(model, os.path.join(tmp, MODEL_WEIGHTS))
      artifacts.write_record(tmp, record)
      if tf.io.gfile.exists(directory):
        tf.io.gfile.rmtree(directory)
      tf.io.gfile.rename(tmp, directory)
  finally:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.rmtree(tmp)
  return directory


def _save_weights(model, path):
  # h5py needs a local file; staging through a local temp file keeps gs:// workdirs working.
  with tempfile.TemporaryDirectory() as local:
    local_path = os.path.join(local, MODEL_WEIGHTS)
    model.save_weights(local_path)
    tf.io.gfile.copy(local_path, path, overwrite=True)


def is_final(directory):
  """True when `directory` holds a complete finished model (all three files)."""
  return all(tf.io.gfile.exists(os.path.join(directory, f))
             for f in (MODEL_CONFIG, MODEL_WEIGHTS, METADATA))


def load_final(directory, record=None):
  """Loads a finished model; returns `(model, record)`: the model built with its weights set, and
  its `artifacts.ModelRecord` (`record`, when the caller has read it already).

  Raises MissingFileError (a FileNotFoundError) naming `directory` when it is not a complete
  finished model, `artifacts.RecordError` naming the key when its record is malformed.
  """
  if not is_final(directory):
    raise errors.MissingFileError(f"{directory!r} is not a finished model: it needs "
                                  f"{MODEL_CONFIG}, {MODEL_WEIGHTS} and {METADATA}.")
  with tf.io.gfile.GFile(os.path.join(directory, MODEL_CONFIG)) as f:
    model = keras.saving.deserialize_keras_object(json.load(f))
  model.build((None, None, None, 3))
  weights = os.path.join(directory, MODEL_WEIGHTS)
  if "://" not in directory:  # h5py reads local files in place
    model.load_weights(weights)
  else:
    with tempfile.TemporaryDirectory() as local:
      local_path = os.path.join(local, MODEL_WEIGHTS)
      with fileio.disk_writes(local_path, lambda: tf.io.gfile.stat(weights).length):
        tf.io.gfile.copy(weights, local_path, overwrite=True)
      model.load_weights(local_path)
  return model, record if record is not None else artifacts.read_record(directory)
