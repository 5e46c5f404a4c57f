"""The common tail of every input pipeline: repeat, shuffle, seeded preprocessing, batch, prefetch.

Shuffling happens before preprocessing (on encoded images, cheap to buffer), and every example gets
its own stateless seed after shuffling, so random augmentation differs per epoch yet the whole
stream is a function of `seed` only. For that reason a resumed run skips what it consumed, and an
input pipeline drops the batches other pipelines read, on the encoded records (`skip`, `shard`):
the stream that remains is the same, but no image is decoded only to be thrown away.
"""
import tensorflow as tf

from tfexperts.data import preprocess as pp


def check_non_negative_int(name, value):
  """Raises ValueError unless `value` is an int >= 0 (bools rejected)."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")


def _check_shard(shard, batch_size):
  ok = isinstance(shard, (tuple, list)) and len(shard) == 2 and all(
      isinstance(v, int) and not isinstance(v, bool) for v in shard)
  if not ok or shard[0] < 1 or not 0 <= shard[1] < shard[0]:
    raise ValueError("`shard` must be (num_shards, index) with 0 <= index < num_shards. "
                     f"Received: shard={shard!r}")
  if shard[0] > 1 and batch_size is None:
    raise ValueError(f"`shard`={shard!r} splits the stream by batches and needs a `batch_size`.")
  return tuple(shard)


def finish(dataset, preprocess_fn, *, shuffle_buffer=0, repeat=False, batch_size=None,
           drop_remainder=False, seed=0, skip=0, shard=(1, 0)):
  """Applies the pipeline tail to a dataset of feature dicts.

  Args:
    dataset: `tf.data.Dataset` of feature dicts (images still encoded is fine).
    preprocess_fn: function on feature dicts (see `preprocess.get_preprocess_fn`).
    shuffle_buffer: 0 keeps the order; n > 0 shuffles with a buffer of n (reshuffled each epoch).
    repeat: repeat forever (before shuffling, so epochs mix).
    batch_size: None for single examples, else the batch size.
    drop_remainder: drop the last partial batch.
    seed: int seed of the shuffle and of the per-example augmentation seeds.
    skip: examples of the shuffled stream dropped before preprocessing (a resumed run's consumed
      examples; see `tfexperts.train.loop.resumed_input`).
    shard: `(num_shards, index)`: keep only batches `index, index + num_shards, ...` of the
      stream (after `skip`), chosen before preprocessing; needs `batch_size` unless num_shards 1.

  Returns:
    The `tf.data.Dataset`, prefetched.
  """
  check_non_negative_int("shuffle_buffer", shuffle_buffer)
  check_non_negative_int("seed", seed)
  if batch_size is not None:
    check_non_negative_int("batch_size", batch_size)
    if batch_size == 0:
      raise ValueError("`batch_size` must be positive or None. Received: batch_size=0")
  check_non_negative_int("skip", skip)
  num_shards, index = _check_shard(shard, batch_size)
  if repeat:
    dataset = dataset.repeat()
  if shuffle_buffer:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  dataset = pp.add_seeds(dataset, seed)
  if skip:
    dataset = dataset.skip(skip)
  if num_shards > 1:
    dataset = dataset.enumerate().filter(
        lambda position, _: tf.equal(position // batch_size % num_shards, index)).map(
            lambda _, features: features)
  dataset = dataset.map(preprocess_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if batch_size is not None:
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
  return dataset.prefetch(tf.data.AUTOTUNE)
