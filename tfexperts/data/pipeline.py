"""The common tail of every input pipeline: repeat, shuffle, seeded preprocessing, batch, prefetch.

Shuffling happens before preprocessing (on encoded images, cheap to buffer), and every example gets
its own stateless seed after shuffling, so random augmentation differs per epoch yet the whole
stream is a function of `seed` only.
"""
import tensorflow as tf

from tfexperts.data import preprocess as pp


def check_non_negative_int(name, value):
  """Raises ValueError unless `value` is an int >= 0 (bools rejected)."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")


def finish(dataset, preprocess_fn, *, shuffle_buffer=0, repeat=False, batch_size=None,
           drop_remainder=False, seed=0):
  """Applies the pipeline tail to a dataset of feature dicts.

  Args:
    dataset: `tf.data.Dataset` of feature dicts (images still encoded is fine).
    preprocess_fn: function on feature dicts (see `preprocess.get_preprocess_fn`).
    shuffle_buffer: 0 keeps the order; n > 0 shuffles with a buffer of n (reshuffled each epoch).
    repeat: repeat forever (before shuffling, so epochs mix).
    batch_size: None for single examples, else the batch size.
    drop_remainder: drop the last partial batch.
    seed: int seed of the shuffle and of the per-example augmentation seeds.

  Returns:
    The `tf.data.Dataset`, prefetched.
  """
  check_non_negative_int("shuffle_buffer", shuffle_buffer)
  check_non_negative_int("seed", seed)
  if batch_size is not None:
    check_non_negative_int("batch_size", batch_size)
    if batch_size == 0:
      raise ValueError("`batch_size` must be positive or None. Received: batch_size=0")
  if repeat:
    dataset = dataset.repeat()
  if shuffle_buffer:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  dataset = pp.add_seeds(dataset, seed)
  dataset = dataset.map(preprocess_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if batch_size is not None:
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE)
