"""The content identity of a SavedModel directory: what a feature cache entry is keyed on.

A handle names where a module lives, not what it computes: re-exporting other weights at the same
path keeps the handle. The identity digests the SavedModel fingerprint (`fingerprint.pb`: graph,
signatures, object graph and checkpoint hashes; `saved_model.pb` itself for older modules without
one), the bytes of `variables/variables.index` (which holds a checksum of every variable's data)
and of `assets/metadata.json`. Reading it costs a few small files, never the weights.
"""
import hashlib
import os

import tensorflow as tf

IDENTITY_FORMAT = "tfexperts.hub.identity/1"
_HASHED_FILES = (os.path.join("variables", "variables.index"),
                 os.path.join("assets", "metadata.json"))


def _file_digest(path):
  with tf.io.gfile.GFile(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _fingerprint(directory):
  try:
    return "fingerprint:" + str(tf.saved_model.experimental.read_fingerprint(directory)
                                .singleprint())
  except (FileNotFoundError, ValueError, tf.errors.OpError):
    # SavedModels written before TF 2.12 have no fingerprint.pb.
    path = os.path.join(directory, tf.saved_model.SAVED_MODEL_FILENAME_PB)
    return "saved_model.pb:" + _file_digest(path)


def of_directory(directory):
  """SHA-256 hex digest identifying the content of the SavedModel at local/gs:// `directory`."""
  digest = hashlib.sha256(IDENTITY_FORMAT.encode())
  digest.update(_fingerprint(directory).encode())
  for name in _HASHED_FILES:
    path = os.path.join(directory, name)
    part = _file_digest(path) if tf.io.gfile.exists(path) else "absent"
    digest.update(f"\n{name}:{part}".encode())
  return digest.hexdigest()
