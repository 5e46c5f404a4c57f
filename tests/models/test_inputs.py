"""The image input contract where images enter: uint8 converted, out-of-range floats refused."""
import numpy as np
import pytest
import tensorflow as tf

from tfexperts.errors import UserError
from tfexperts.hub import load
from tfexperts.models import bit
from tfexperts.models import inputs
from tfexperts.train import seeding
from tfexperts.transfer import finetune

UINT8 = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
UNIT = UINT8.astype("float32") / 255.0


@pytest.fixture(scope="module")
def model():
  seeding.set_seed(0)
  return bit.create_model("tiny")


def test_model_converts_uint8_and_refuses_other_ranges_eagerly(model):
  want = model(UNIT)["pre_logits"].numpy()
  np.testing.assert_array_equal(model(UINT8)["pre_logits"].numpy(), want)
  model(np.clip(UNIT * 1.04 - 0.02, -0.02, 1.02))  # within the tolerance (e.g. resize overshoot)
  with pytest.raises(UserError, match=r"look like \[0, 255\] images: divide them by 255"):
    model(UNIT * 255.0)
  with pytest.raises(UserError, match=r"look like \[-1, 1\] images: map them with \(x \+ 1\) / 2"):
    model(UNIT * 2.0 - 1.0)
  with pytest.raises(UserError, match=r"int32.*tf.cast\(images, tf.float32\) / 255"):
    model(UINT8.astype("int32"))


def test_traced_model_asserts_the_range(model):
  features = tf.function(lambda x: model(x)["pre_logits"])
  want = model(UNIT)["pre_logits"].numpy()
  # Graph and eager ops round differently: the bound is relative to the features' scale.
  np.testing.assert_allclose(features(UNIT).numpy(), want, rtol=0,
                             atol=1e-5 * max(1.0, float(np.abs(want).max())))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"look like \[0, 255\]"):
    features(UNIT * 255.0)


class MeanModule(tf.Module):
  """A third-party style feature-vector SavedModel with no range check of its own."""

  def __init__(self):
    super().__init__()
    self.scale = tf.Variable([1.0, 2.0, 3.0])

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def __call__(self, images):
    return tf.reduce_mean(images, [1, 2]) * self.scale


def test_hub_embed_and_finetuning_model_apply_the_contract(tmp_path):
  path = str(tmp_path / "m" / "1")
  tf.saved_model.save(MeanModule(), path)
  expert = load.load_expert(path)
  np.testing.assert_allclose(expert.embed(UINT8).numpy(), expert.embed(UNIT).numpy(), rtol=1e-6)
  with pytest.raises(UserError, match=r"\[0, 255\]"):
    expert.embed(UNIT * 255.0)
  transfer = finetune.TransferModel(expert.ref, num_classes=3)
  assert transfer(UINT8).shape == (2, 3)
  with pytest.raises(UserError, match=r"\[-1, 1\]"):
    transfer(UNIT * 2.0 - 1.0)


def test_messages_name_the_convention():
  assert "[0, 255]" in inputs.describe(0.0, 254.0)
  assert "[-1, 1]" in inputs.describe(-1.0, 1.0)
  assert "rescale them" in inputs.describe(-300.0, 2.0)
