"""Feature modules that are not tfexperts exports, written by the tests, and a prepared hub cache.

`write_tf_module` saves a plain `tf.Module` (mean colour -> random projection, [b, dim]);
`write_keras_export` saves a Keras 3 model with `model.export` (a `serve` endpoint, no
`__call__`); `prepare_hub_cache` places modules where `tensorflow_hub`'s resolver looks for remote
handles: `<TFHUB_CACHE_DIR>/<sha1 of the handle>/`, a non-empty directory being a finished
download (with the descriptor file tensorflow_hub writes beside it).
"""
import hashlib
import os
import shutil

import keras
import numpy as np
import tensorflow as tf


class ColourProjection(tf.Module):
  """`__call__(images) = relu(mean colour @ kernel)`: a tiny feature-vector module."""

  def __init__(self, dim, seed):
    super().__init__()
    self.kernel = tf.Variable(np.random.default_rng(seed).normal(size=(3, dim)).astype("float32"))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    return tf.nn.relu(tf.matmul(tf.reduce_mean(images, axis=(1, 2)), self.kernel))


def write_tf_module(path, dim=6, seed=0):
  """Saves a `ColourProjection` SavedModel at `path`; returns the module."""
  module = ColourProjection(dim, seed)
  tf.saved_model.save(module, path)
  return module


def write_keras_export(path, dim=5, seed=0):
  """Exports a small Keras 3 conv model ([b, h, w, 3] -> [b, dim]) with `model.export`."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(dim, 3, strides=2, activation="relu")(inputs)
  model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
  model.export(path, verbose=False)
  return model


def hub_cache_dir(cache_dir, handle):
  """Where tensorflow_hub caches remote `handle` under `cache_dir`."""
  return os.path.join(cache_dir, hashlib.sha1(handle.encode("utf8")).hexdigest())


def prepare_hub_cache(cache_dir, handles, module_dirs):
  """Copies `module_dirs` (cycled) to the cache directories of `handles`; returns the paths."""
  paths = []
  for i, handle in enumerate(handles):
    target = hub_cache_dir(cache_dir, handle)
    shutil.copytree(module_dirs[i % len(module_dirs)], target)
    with open(target + ".descriptor.txt", "w") as f:
      f.write(f"Module: {handle}\nPrepared by the tfexperts tests (no download).\n")
    paths.append(target)
  return paths
