"""The loader: handles of every form, modules without metadata, and clear errors."""
import os
import shutil
import urllib.error

import numpy as np
import pytest
import tensorflow as tf

from tests.hub import collection_fixtures as conftest
from tfexperts.errors import UserError
from tfexperts.hub import load
from tfexperts.hub import metadata
from tfexperts.hub.tfhub import hub

BIT_EXPERT = "https://tfhub.dev/google/experts/bit/r50x1/in21k/animal/1"


def _baseline(exported):
  return os.path.join(exported.collection_dir, "baseline", "1")


def test_name_from_handle():
  assert load.name_from_handle(BIT_EXPERT) == "animal"
  assert load.name_from_handle("export/c/patch_dog/12/") == "patch_dog"
  assert load.name_from_handle("https://tfhub.dev/x/y/3?tf-hub-format=compressed") == "y"


def test_local_and_file_url_handles(exported):
  x = conftest.images(2)
  expert = load.load_expert(_baseline(exported))
  assert (expert.name, expert.kind) == ("baseline", "baseline")
  same = load.load_expert("file://" + _baseline(exported))
  np.testing.assert_array_equal(same.embed(x).numpy(), expert(x).numpy())
  assert expert.logits(x).shape == (2, 6)


def test_remote_handle_without_metadata_goes_through_tensorflow_hub(tmp_path, exported,
                                                                    monkeypatch):
  # A published BiT expert: a plain feature-vector SavedModel without tfexperts metadata. Its
  # download is stood in for by hub.resolve returning a local copy (there is no network here).
  cached = str(tmp_path / "hub_cache" / "animal")
  shutil.copytree(os.path.join(exported.collection_dir, "adapter_animal", "1"), cached)
  shutil.rmtree(os.path.join(cached, "assets"))
  asked = []
  monkeypatch.setattr(hub, "resolve", lambda handle: asked.append(handle) or cached)
  expert = load.load_expert(BIT_EXPERT)
  assert asked and asked[0] == BIT_EXPERT
  assert (expert.name, expert.handle, expert.metadata, expert.kind) == (
      "animal", BIT_EXPERT, metadata.ModuleMetadata.absent(), None)
  assert expert.metadata.is_absent and expert.metadata.input.resolution == 224
  x = conftest.images(2)
  want = load.load_expert(os.path.join(exported.collection_dir, "adapter_animal", "1")).embed(x)
  np.testing.assert_array_equal(expert.embed(x).numpy(), want.numpy())
  assert not expert.has_logits
  with pytest.raises(ValueError, match="no 'logits' endpoint"):
    expert.logits(x)


def test_unreachable_remote_handle_names_it(monkeypatch):
  def offline(handle):
    raise urllib.error.URLError("Temporary failure in name resolution")
  monkeypatch.setattr(hub, "resolve", offline)
  with pytest.raises(OSError, match="Could not fetch hub handle 'https://tfhub.dev/google/"):
    load.load_expert(BIT_EXPERT)


def test_missing_handle_and_non_savedmodel_directory(tmp_path, exported):
  missing = str(tmp_path / "nope" / "1")
  with pytest.raises(FileNotFoundError, match=f"'{missing}' does not exist"):
    load.load_expert(missing)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty' is not a SavedModel"):
    load.load_expert(str(tmp_path / "empty"))
  with pytest.raises(ValueError, match="is a collection"):
    load.load_expert(exported.collection_dir)
  with pytest.raises(ValueError, match="load_bank"):
    load.load_expert(os.path.join(exported.collection_dir, "adapter_bank", "1"))


class _Images(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    return images


class _Dict(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    return {"pre_logits": tf.reduce_mean(images, axis=(1, 2))}


class _NoCall(tf.Module):
  """Only a variable: no __call__, serve endpoint or signature maps images to anything."""

  def __init__(self):
    super().__init__()
    self.weight = tf.Variable(2.0)


@pytest.mark.parametrize("module, message", [
    (_Images, r"is not a feature-vector module: .* shape \(2, 224, 224, 3\)"),
    (_Dict, "returns a dict"),
    (_NoCall, "without __call__"),
])
def test_module_that_is_not_a_feature_vector_is_refused(tmp_path, module, message):
  path = str(tmp_path / "m")
  tf.saved_model.save(module(), path)
  with pytest.raises(ValueError, match=message) as info:
    load.load_expert(path)
  assert path in str(info.value)


def test_lazy_collection_loads_modules_on_first_use(exported):
  coll = load.load_collection(exported.collection_dir)
  assert all(e._module is None for e in coll.experts)  # pylint: disable=protected-access
  with pytest.raises(KeyError, match="adapter_bank"):
    coll.get("missing")
  red = coll.get("patch_thing_red")
  assert (red.name, red.metadata.name, red.metadata.node) == (
      "patch_thing_red", "thing/red", "thing/red")


class _FixedSizeModule(tf.Module):
  """A feature-vector SavedModel taking only 20x20 images, as many TF Hub modules do."""

  def __init__(self):
    super().__init__()
    self.scale = tf.Variable([1.0, 2.0, 3.0])

  @tf.function(input_signature=[tf.TensorSpec([None, 20, 20, 3], tf.float32)])
  def __call__(self, images):
    return tf.reduce_mean(images, [1, 2]) * self.scale


def test_fixed_input_size_module_is_probed_at_its_size_and_names_a_wrong_one(tmp_path):
  from tfexperts.select import features  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "fixed" / "1")
  tf.saved_model.save(_FixedSizeModule(), path)
  expert = load.load_expert(path)  # probed at 20x20, not 224
  assert expert.input_size == (20, 20)
  assert expert.embed(np.full((2, 20, 20, 3), 0.5, "float32")).shape == (2, 3)
  images = np.full((4, 32, 32, 3), 0.5, "float32")
  with pytest.raises(UserError, match=r"'.*fixed/1' takes only 20x20 images.*requested 32x32"):
    expert.embed(images)
  dataset = tf.data.Dataset.from_tensor_slices((images, np.arange(4))).batch(2)
  with pytest.raises(UserError, match=r"takes only 20x20 images.*requested 32x32"):
    features.embed(expert.embed, dataset)
