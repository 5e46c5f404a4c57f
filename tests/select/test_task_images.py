"""A task split's images are decoded once per resolution and shared by every expert of that size."""
import dataclasses

import numpy as np
import tensorflow as tf

from tests.hub.test_modules import _path
from tfexperts.data import tasks
from tfexperts.select import selection
from tfexperts.select import task_images

NUM_IMAGES = 12


class DecodeCounter:
  """A task `image_fn` that counts the images the task's pipeline decodes (and changes none)."""

  def __init__(self):
    self.count = 0

  def _count(self, image):
    self.count += 1
    return image

  def __call__(self, image):
    counted = tf.numpy_function(self._count, [image], image.dtype, stateful=True)
    counted.set_shape(image.shape)
    return counted


def counted_task():
  counter = DecodeCounter()
  base = tasks.get_task("shapes_fine_tiny")
  assert base.image_fn is None
  return dataclasses.replace(base, image_fn=counter,
                             splits={**base.splits, "few": f"train[:{NUM_IMAGES}]"}), counter


def _arrays(dataset):
  pairs = [(x.numpy(), y.numpy()) for x, y in dataset]
  return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


def test_experts_share_one_decode_and_get_the_streamed_features(exported, offline_data_dir):
  task, counter = counted_task()
  candidates = selection.load_candidates(
      [_path(exported, n) for n in ("baseline", "adapter_animal", "adapter_thing_red")])
  source = selection.FeatureSource(task, "few", offline_data_dir, batch_size=5)
  scores, _ = selection.score(candidates, source, ["knn"])
  assert len(scores["knn"]) == 3 and source.stats.images_embedded == 3 * NUM_IMAGES
  assert counter.count == NUM_IMAGES and source.images.decodes == {32: 1}
  # Bit for bit what the split decoded per expert gives (image memory off: the old path).
  streamed = selection.FeatureSource(task, "few", offline_data_dir, batch_size=5,
                                     image_memory_bytes=0)
  streamed.native = source.native  # one traced model for both
  for expert in candidates.experts:
    np.testing.assert_array_equal(streamed.features(expert).features,
                                  source.features(expert).features)
  assert counter.count == 4 * NUM_IMAGES and streamed.images.decodes == {32: 3}
  for got, want in zip(_arrays(source.images.dataset(32)),
                       _arrays(task.load("few", offline_data_dir, image_size=32, batch_size=5))):
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_memory_bound_drops_the_least_recent_size_or_streams(offline_data_dir):
  task, counter = counted_task()
  size32 = NUM_IMAGES * 32 * 32 * 3  # uint8 bytes of the split at 32 px
  store = task_images.ImageStore(task, "few", offline_data_dir, 5, max_bytes=size32)
  for resolution in (32, 32, 16, 16, 32):  # 16 px does not fit beside 32 px: 32 is dropped
    assert _arrays(store.dataset(resolution))[0].shape == (NUM_IMAGES, resolution, resolution, 3)
  assert store.decodes == {32: 2, 16: 1} and store.stored_bytes() == size32
  small = task_images.ImageStore(task, "few", offline_data_dir, 5, max_bytes=size32 - 1)
  for _ in range(2):
    _arrays(small.dataset(32))  # too large to keep: decoded at every use
  assert small.decodes == {32: 2} and small.stored_bytes() == 0
  assert counter.count == 5 * NUM_IMAGES
