"""seeding.set_seed: the streams a run draws from are those of `keras.utils.set_random_seed`, and
re-seeding with TensorFlow's current global seed keeps the kernel cache (compiled functions)."""
import random

import keras
import numpy as np
import tensorflow as tf

from tfexperts.train import seeding


def _streams(seed):
  """What a run draws from after seeding: tf.data's seeded shuffle and random datasets (seeded by
  the global seed too), NumPy, Python and Keras' global seed generator."""
  return {"shuffle": [int(x) for x in tf.data.Dataset.range(20).shuffle(20, seed=seed)],
          "random": [int(x) for x in tf.data.Dataset.random(seed=seed).take(3)],
          "numpy": np.random.rand(3).tolist(), "python": random.random(),
          "keras": keras.random.uniform((3,)).numpy().tolist()}


def test_set_seed_gives_the_streams_of_keras_set_random_seed():
  keras.utils.set_random_seed(7)
  want = _streams(7)
  _streams(7)  # advance every stream
  seeding.set_seed(7)  # the global seed already is 7: no cache clear
  assert _streams(7) == want
  keras.utils.set_random_seed(8)
  other = _streams(8)
  assert other != want
  seeding.set_seed(7)
  seeding.set_seed(8)  # another seed: seeds as keras does
  assert _streams(8) == other


def test_set_seed_with_the_current_seed_keeps_the_kernel_cache():
  # A stateful random kernel keeps its state in the kernel cache: clearing the cache (what
  # `tf.random.set_seed` does) restarts its stream; keeping the cache continues it.
  keras.utils.set_random_seed(5)
  first = tf.random.uniform([3], seed=11).numpy()
  seeding.set_seed(5)
  assert not np.array_equal(tf.random.uniform([3], seed=11).numpy(), first)
  keras.utils.set_random_seed(5)
  np.testing.assert_array_equal(tf.random.uniform([3], seed=11).numpy(), first)
