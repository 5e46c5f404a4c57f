"""A task split's images decoded and resized once, kept in memory for every expert of that size.

Scoring K experts with the feature cache off (or cold) used to decode and resize the split's
images K times, once per expert. `ImageStore.dataset(resolution)` decodes them on first use with
the task's own pipeline, split in two (`tasks.eval_preprocess_stages`): the resized images are
stored as uint8 (4x smaller than float32), and each batch is converted to float32 [0, 1] as it is
read. The batches equal `task.load(split, image_size=resolution, batch_size=...)`'s bit for bit.

Memory is bounded by `max_bytes` (default 1 GiB): a uint8 224 px image takes 150,528 bytes, so
VTAB-1k's 1,000 images take 151 MB at 224 px and 691 MB at 480 px. Resolutions are kept until the
bound would be passed, then the least recently used is dropped; a split whose images alone exceed
the bound is streamed from disk for every expert, as before.
"""
import collections

import numpy as np
import tensorflow as tf
from absl import logging

from tfexperts import defaults
from tfexperts.data import preprocess as pp
from tfexperts.data import tasks as tasks_lib

DEFAULT_MAX_BYTES = 1 << 30


class ImageStore:
  """Decoded, resized images of one task split, by resolution (see the module docstring).

  Attributes:
    decodes: `{resolution: passes over the split's encoded images}`, stored or streamed.
  """

  def __init__(self, task, split, data_dir=None, batch_size=defaults.EMBED_BATCH_SIZE,
               max_bytes=DEFAULT_MAX_BYTES):
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
      raise ValueError(f"`max_bytes` must be a non-negative integer. Received: "
                       f"max_bytes={max_bytes!r}")
    self.task, self.split, self.data_dir = task, split, data_dir
    self.batch_size, self.max_bytes = batch_size, max_bytes
    self.decodes = collections.Counter()
    self._stored = collections.OrderedDict()  # resolution -> (uint8 images, labels), LRU last
    self._streamed = set()  # resolutions too large to store

  def stored_bytes(self):
    """Bytes of images held in memory now."""
    return sum(int(images.shape.num_elements()) * images.dtype.size
               for images, _ in self._stored.values())

  def dataset(self, resolution):
    """The split as batched `(float32 images [b, r, r, 3] in [0, 1], int32 labels)`, in order.

    Takes the int `resolution` r; decodes the split on the first call for r (and again only
    when r was dropped from memory or does not fit in it).
    """
    stored = self._stored.get(resolution)
    if stored is None and resolution not in self._streamed:
      stored = self._decode(resolution)
    if stored is None:
      self.decodes[resolution] += 1
      return self.task.load(self.split, self.data_dir, image_size=resolution,
                            batch_size=self.batch_size)
    self._stored.move_to_end(resolution)
    to_float = pp.get_preprocess_fn(tasks_lib.eval_preprocess_stages(resolution)[1])
    dataset = tf.data.Dataset.from_tensor_slices(stored).batch(self.batch_size)
    dataset = dataset.map(lambda images, labels: (to_float({"image": images})["image"], labels),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)

  def _estimate(self, resolution):
    return self.task.num_examples(self.split, self.data_dir) * resolution * resolution * 3

  def _decode(self, resolution):
    """Decodes the split at `resolution` into memory; the stored tensors, or None (streamed)."""
    if self._estimate(resolution) > self.max_bytes:
      return self._stream(resolution, "would take")
    while self._stored and self.stored_bytes() + self._estimate(resolution) > self.max_bytes:
      self._stored.popitem(last=False)
    self.decodes[resolution] += 1
    per_image = tasks_lib.eval_preprocess_stages(resolution)[0]
    images, labels, size = [], [], 0
    for batch_images, batch_labels in self.task.load(self.split, self.data_dir,
                                                     preprocess=per_image,
                                                     batch_size=self.batch_size):
      images.append(batch_images.numpy())
      labels.append(batch_labels.numpy())
      size += images[-1].nbytes
      if size > self.max_bytes:  # not uint8 after all (a task's image_fn)
        return self._stream(resolution, "take more than")
    stored = (tf.constant(np.concatenate(images)), tf.constant(np.concatenate(labels)))
    self._stored[resolution] = stored
    return stored

  def _stream(self, resolution, verb):
    logging.info("%s/%s images at %d px %s the %d bytes kept in memory: decoding them for every "
                 "expert.", self.task.name, self.split, resolution, verb, self.max_bytes)
    self._streamed.add(resolution)
    return None
