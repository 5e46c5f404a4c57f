"""Finished models in a workdir: the contract between training and export.

A finished model is a directory holding
  model.json          the Keras serialization of the model (`keras.saving.serialize_keras_object`)
  model.weights.h5    its weights (`model.save_weights`)
  metadata.json       what it is: see `ARTIFACT_KINDS` and `save_final`'s docstring
written into a temp directory beside it and renamed into place, so a directory named like a
finished model is always complete.
"""
import json
import os
import tempfile

import keras
import tensorflow as tf

from tfexperts import fileio
# Imported for their Keras registrations, so any finished model deserializes.
from tfexperts.models import adapters  # pylint: disable=unused-import
from tfexperts.models import bit  # pylint: disable=unused-import

ARTIFACT_KINDS = ("baseline", "full", "adapter_bank", "patch_bank", "epn")
MODEL_CONFIG = "model.json"
MODEL_WEIGHTS = "model.weights.h5"
METADATA = "metadata.json"


def save_final(model, directory, metadata):
  """Writes a built Keras `model` and its `metadata` as a finished model at `directory`.

  `metadata` must hold `kind` (one of ARTIFACT_KINDS) and should hold, as they apply: `name`,
  `experts` (list of {name, node, num_images, label_prior}) for banks and full experts,
  `upstream_dataset`, `num_upstream_classes`, `upstream_class_names`, `domains` (for the EPN),
  `preset`, `resolution`, `steps`. Overwrites an existing finished model. Returns `directory`.
  """
  kind = metadata.get("kind")
  if kind not in ARTIFACT_KINDS:
    raise ValueError(f"metadata['kind'] must be one of {ARTIFACT_KINDS}. Received: {kind!r}")
  parent = fileio.parent_dir(directory.rstrip("/"))
  if parent:
    tf.io.gfile.makedirs(parent)
  tmp = fileio.temp_path_beside(directory.rstrip("/"))
  tf.io.gfile.makedirs(tmp)
  config = keras.saving.serialize_keras_object(model)
  fileio.write_bytes_atomic(os.path.join(tmp, MODEL_CONFIG), json.dumps(config).encode())
  _save_weights(model, os.path.join(tmp, MODEL_WEIGHTS))
  fileio.write_json_atomic(os.path.join(tmp, METADATA), metadata)
  if tf.io.gfile.exists(directory):
    tf.io.gfile.rmtree(directory)
  tf.io.gfile.rename(tmp, directory)
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


def load_final(directory):
  """Loads a finished model; returns `(model, metadata)` with the model built and its weights set.

  Raises FileNotFoundError naming `directory` when it is not a complete finished model.
  """
  if not is_final(directory):
    raise FileNotFoundError(f"{directory!r} is not a finished model: it needs {MODEL_CONFIG}, "
                            f"{MODEL_WEIGHTS} and {METADATA}.")
  with tf.io.gfile.GFile(os.path.join(directory, MODEL_CONFIG)) as f:
    model = keras.saving.deserialize_keras_object(json.load(f))
  model.build((None, None, None, 3))
  with tempfile.TemporaryDirectory() as local:
    local_path = os.path.join(local, MODEL_WEIGHTS)
    tf.io.gfile.copy(os.path.join(directory, MODEL_WEIGHTS), local_path, overwrite=True)
    model.load_weights(local_path)
  return model, fileio.read_json(os.path.join(directory, METADATA))
