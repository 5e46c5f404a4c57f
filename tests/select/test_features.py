"""Embedding with progress, strategies, and the feature cache (warm runs embed nothing)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import processes
from tfexperts import fileio
from tfexperts.errors import UserError
from tfexperts.select import feature_cache, features

NUM_IMAGES = 10


class CountingModel(tf.Module):
  """Features = per-channel mean and max of the image; counts the images it really embeds."""

  def __init__(self):
    super().__init__()
    self.images_seen = tf.Variable(0, dtype=tf.int64)

  def __call__(self, images):
    self.images_seen.assign_add(tf.cast(tf.shape(images)[0], tf.int64))
    return tf.concat([tf.reduce_mean(images, [1, 2]), tf.reduce_max(images, [1, 2])], axis=1)


def make_dataset(batch_size=4):
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(NUM_IMAGES, 8, 8, 3)).astype(np.float32)
  labels = np.arange(NUM_IMAGES) % 3
  return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size), images, labels


def expected_features(images):
  return np.concatenate([images.mean(axis=(1, 2)), images.max(axis=(1, 2))], axis=1)


def test_embed_returns_features_in_order_and_logs_progress(monkeypatch):
  dataset, images, labels = make_dataset()
  model, stats = CountingModel(), features.EmbedStats()
  lines = []  # captured here, independent of how other tests left absl/python logging
  monkeypatch.setattr(features.logging, "info", lambda fmt, *args: lines.append(fmt % args))
  got, got_labels = features.embed(model, dataset, num_images=NUM_IMAGES, stats=stats,
                                   log_every_seconds=0.0)
  np.testing.assert_allclose(got, expected_features(images), rtol=1e-6)
  np.testing.assert_array_equal(got_labels, labels)
  assert got.dtype == np.float32 and stats.images_embedded == NUM_IMAGES
  assert int(model.images_seen.numpy()) == NUM_IMAGES
  assert any("images/s" in line and "/10" in line for line in lines)


def test_embed_with_xla_pads_the_last_batch():
  dataset, images, _ = make_dataset()
  model = CountingModel()
  got, _ = features.embed(model, dataset, jit_compile=True)
  np.testing.assert_allclose(got, expected_features(images), rtol=1e-6)
  # One compiled batch shape: the last batch (2 images) is padded to 4, so 3 x 4 are run.
  assert int(model.images_seen.numpy()) == 12


def test_embed_falls_back_when_xla_cannot_compile(monkeypatch):
  dataset, images, _ = make_dataset()
  warnings = []
  monkeypatch.setattr(features.logging, "warning", lambda fmt, *args: warnings.append(fmt % args))

  def model(batch):  # tf.numpy_function has no XLA kernel
    return tf.numpy_function(expected_features, [batch], tf.float32, stateful=False)

  got, _ = features.embed(model, dataset, jit_compile=True)
  np.testing.assert_allclose(got, expected_features(images), rtol=1e-6)
  assert len(warnings) == 1 and "XLA could not compile" in warnings[0]


def test_embed_under_a_strategy_matches():
  dataset, images, _ = make_dataset(batch_size=3)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    model = CountingModel()
  got, _ = features.embed(model, dataset, strategy=strategy)
  np.testing.assert_allclose(got, expected_features(images), rtol=1e-6)


def test_embed_takes_pre_logits_from_a_dict_model():
  dataset, images, _ = make_dataset()
  model = lambda x: {"pre_logits": tf.reduce_mean(x, [1, 2]), "logits": x[:, 0, 0, :1]}  # noqa
  got, _ = features.embed(model, dataset)
  np.testing.assert_allclose(got, images.mean(axis=(1, 2)), rtol=1e-6)
  with pytest.raises(ValueError, match="'pre_logits'"):
    features.embed(lambda x: {"logits": x}, dataset)


def cached(cache, key, model, calls):
  def make_model():
    calls.append("model")
    return model

  def make_data():
    calls.append("dataset")
    return make_dataset()[0]
  return features.cached_features(cache, key, make_model, make_data)


def make_key(**overrides):
  fields = dict(handle="export/experts/animals/1", module="0" * 64, task="dtd",
                split="train800val200",
                resolution=224, preprocessing="resize_bilinear")
  return feature_cache.CacheKey(**{**fields, **overrides})


def test_warm_cache_embeds_nothing(tmp_path):
  cache, key, model = feature_cache.FeatureCache(str(tmp_path)), make_key(), CountingModel()
  calls, stats = [], features.EmbedStats()
  cold = cached(cache, key, model, calls)
  assert cold.images_embedded == NUM_IMAGES and int(model.images_seen.numpy()) == NUM_IMAGES
  warm = cached(cache, key, model, calls)
  assert warm.images_embedded == 0 and int(model.images_seen.numpy()) == NUM_IMAGES
  assert calls == ["model", "dataset"]  # the warm run built neither the model nor the data
  features.cached_features(cache, key, None, None, stats=stats)
  assert (stats.cache_hits, stats.cache_misses, stats.images_embedded) == (1, 0, 0)
  np.testing.assert_array_equal(warm.features, cold.features)
  np.testing.assert_array_equal(warm.labels, cold.labels)
  # Any change of the key is a different entry.
  other = cached(cache, make_key(resolution=128), model, calls)
  assert other.images_embedded == NUM_IMAGES
  assert sorted(os.listdir(tmp_path)) == sorted(
      os.path.basename(cache.path(k)) for k in (key, make_key(resolution=128)))


def test_half_written_cache_file_is_not_complete(tmp_path):
  cache, key, model = feature_cache.FeatureCache(str(tmp_path)), make_key(), CountingModel()
  cached(cache, key, model, [])
  path = cache.path(key)
  data = open(path, "rb").read()
  with open(path, "wb") as f:  # e.g. a copy cut short: truncated under the final name
    f.write(data[:len(data) // 2])
  assert cache.load(key) is None
  assert cached(cache, key, model, []).images_embedded == NUM_IMAGES
  assert cache.load(key) is not None  # rewritten complete
  # A writer that died mid-way leaves only a temporary name, which is never read.
  os.remove(path)
  with open(path + fileio.TEMP_MARKER + "dead", "wb") as f:
    f.write(data[:len(data) // 2])
  assert cache.load(key) is None


def test_cache_rejects_a_file_holding_another_key(tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path))
  key, other = make_key(), make_key(task="eurosat")
  cache.save(other, np.zeros((2, 3)), np.array([0, 1]))
  os.rename(cache.path(other), cache.path(key))
  assert cache.load(key) is None


def test_cache_key_is_stable_and_checked():
  key = make_key()
  assert key.digest() == make_key().digest() != make_key(split="test").digest()
  assert key.to_json() == ('{"format":2,"handle":"export/experts/animals/1","module":"' + "0" * 64
                           + '","preprocessing":"resize_bilinear","resolution":224,'
                           '"split":"train800val200","task":"dtd"}')
  assert make_key(module="1" * 64).digest() != key.digest()
  with pytest.raises(ValueError, match="module"):
    make_key(module="")
  with pytest.raises(ValueError, match="resolution.*'224'"):
    make_key(resolution="224")


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
  path = str(tmp_path / "x.bin")

  def broken_rename(*args, **kwargs):
    raise OSError("disk full")
  monkeypatch.setattr(tf.io.gfile, "rename", broken_rename)
  with pytest.raises(OSError):
    fileio.write_bytes_atomic(path, b"abc")
  assert os.listdir(tmp_path) == []


TWO_REPLICA_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.select import test_features as t
from tfexperts.select import features
dataset, images, labels = t.make_dataset(batch_size=4)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
  model = t.CountingModel()
got, got_labels = features.embed(model, dataset, strategy=strategy)
np.testing.assert_allclose(got, t.expected_features(images), rtol=1e-6)
np.testing.assert_array_equal(got_labels, labels)
print("OK")
"""


def test_embed_under_two_replicas_keeps_dataset_order():
  # Logical devices must be configured before TF starts, hence a fresh process.
  result = processes.run_python(TWO_REPLICA_SCRIPT)
  assert "OK" in result.stdout, result.stderr[-3000:]


class ScaledMeanModule(tf.Module):
  """A minimal feature-vector SavedModel: per-channel means times a weight vector."""

  def __init__(self, weights):
    super().__init__()
    self.weights = tf.Variable(weights, dtype=tf.float32)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    return tf.reduce_mean(images, [1, 2]) * self.weights


def test_module_reexported_at_the_same_handle_is_a_cache_miss(tmp_path):
  # The key follows the module's content: other weights at the same path are embedded again.
  from tfexperts.data import tasks  # pylint: disable=g-import-not-at-top
  from tfexperts.hub import load  # pylint: disable=g-import-not-at-top
  from tfexperts.select import selection  # pylint: disable=g-import-not-at-top
  handle = str(tmp_path / "export" / "c" / "m" / "1")
  source = selection.FeatureSource(tasks.get_task("dtd"), resolution=8,
                                   cache_dir=str(tmp_path / "cache"))
  results = []
  for weights in ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]):
    tf.saved_model.save(ScaledMeanModule(weights), handle)  # replaces the module in place
    expert = load.load_expert(handle, lazy=True)
    for _ in range(2):  # the second pass over the same content is a hit
      results.append(features.cached_features(source.cache, source.key(expert),
                                              lambda: expert.embed, lambda: make_dataset()[0]))
  assert [r.images_embedded for r in results] == [NUM_IMAGES, 0, NUM_IMAGES, 0]
  assert not np.allclose(results[0].features, results[2].features)
  np.testing.assert_array_equal(results[2].features, results[3].features)


def test_nan_features_are_an_error_naming_the_module(tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path))
  key = make_key(handle="export/c/broken/1")
  broken = lambda images: tf.where(images[:, :1, 0, 0] > 0.5, np.nan, 1.0)  # noqa: E731
  with pytest.raises(UserError, match=r"'export/c/broken/1' gave NaN.*dtd/train800val200"):
    features.cached_features(cache, key, lambda: broken, lambda: make_dataset()[0])
  assert not os.listdir(tmp_path)  # nothing cached
