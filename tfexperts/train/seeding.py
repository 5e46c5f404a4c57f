"""Seeding a run without discarding TensorFlow's compiled functions.

`keras.utils.set_random_seed(seed)` seeds Python, NumPy, Keras and TensorFlow. TensorFlow's part,
`tf.random.set_seed`, also clears the eager context's kernel cache, so every traced step and every
function of a loaded SavedModel is instantiated and optimised again at its next call: about 6
seconds at the first step of every fine-tuning run, even one reusing a traced step
(`transfer.finetune.ModelCache`), and the largest fixed cost of a short run. The clear matters
only for stateful random kernels, which hold their random state in the cache; a run draws
randomness only from seeded tf.data ops (`tf.data.Dataset.shuffle`, `Dataset.random`, seeded by
the global seed and their op seed) and stateless ops, none of them cached kernels.
"""
import random

import keras
import numpy as np
from keras.src.backend.common import global_state
from keras.src.random import seed_generator
from keras.src.utils import rng_utils
from tensorflow.python.eager import context


def set_seed(seed):
  """Seeds Python, NumPy, Keras and TensorFlow with `seed` (an int) as
  `keras.utils.set_random_seed(seed)` does; when TensorFlow's global seed already is `seed`,
  TensorFlow's op-seed stream is restarted in place instead, keeping the kernel cache. Returns
  None."""
  if context.global_seed() != seed:
    keras.utils.set_random_seed(seed)
    return
  global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
  global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
  random.seed(seed)
  np.random.seed(seed)
  # What `tf.random.set_seed(seed)` does besides clearing the cache: unseeded ops' seeds restart.
  context.context()._rng = random.Random(seed)  # pylint: disable=protected-access
