"""BiT ResNet-v2: architecture facts, exact parameter counts, reference forward pass, config."""
import logging

import numpy as np
import pytest
import tensorflow as tf

import keras
from tfexperts.models import bit
from tfexperts.models import checkpoints
from tfexperts.models import layers as bit_layers


def _numpy_group_norm(x, gamma, beta, groups, eps=1e-5):
  b, h, w, c = x.shape
  g = x.reshape(b, h, w, groups, c // groups).astype(np.float64)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  return ((g - mean) / np.sqrt(var + eps)).reshape(b, h, w, c) * gamma + beta


def _numpy_standardize(kernel):
  k = kernel.astype(np.float64)
  mean = k.mean(axis=(0, 1, 2), keepdims=True)
  var = k.var(axis=(0, 1, 2), keepdims=True)
  return (k - mean) / np.sqrt(var + 1e-10)


def _reference_forward(params, images, units, groups):
  """BiT forward pass written directly from the checkpoint dict with tf.nn ops and NumPy GN."""
  def conv(x, name, stride=1, pad=0):
    kernel = _numpy_standardize(params[name + "/standardized_conv2d/kernel"])
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    return tf.nn.conv2d(x, kernel, stride, "VALID").numpy()

  def gn_relu(x, name):
    return np.maximum(_numpy_group_norm(x, params[name + "/group_norm/gamma"],
                                        params[name + "/group_norm/beta"], groups), 0)

  x = images.astype(np.float64) * 2 - 1
  x = conv(x, "resnet/root_block", stride=2, pad=3)
  x = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
  x = tf.nn.max_pool2d(x, 3, 2, "VALID").numpy()
  for b, num_units in enumerate(units):
    for u in range(num_units):
      scope = f"resnet/block{b + 1}/unit{u + 1:02d}"
      stride = 2 if (b > 0 and u == 0) else 1
      p = gn_relu(x, scope + "/a")
      proj = scope + "/a/proj/standardized_conv2d/kernel"
      shortcut = conv(p, scope + "/a/proj", stride=stride) if proj in params else x
      y = conv(p, scope + "/a")
      y = conv(gn_relu(y, scope + "/b"), scope + "/b", stride=stride, pad=1)
      y = conv(gn_relu(y, scope + "/c"), scope + "/c")
      x = y + shortcut
  pre_logits = gn_relu(x, "resnet").mean(axis=(1, 2))
  kernel = params["resnet/head/conv2d/kernel"][0, 0]
  return pre_logits, pre_logits @ kernel + params["resnet/head/conv2d/bias"]


def _randomize(model, seed=0):
  rng = np.random.default_rng(seed)
  for v in model.weights:
    v.assign(rng.normal(0, 0.5 if "group_norm" in v.path else 1.0, v.shape).astype("float32")
             + (1.0 if v.path.endswith("gamma") else 0.0))


def test_r50x1_and_r101x1_parameter_counts_equal_bit():
  assert bit.create_model("r50x1").count_params() == 23_500_352
  assert bit.create_model("r101x1").count_params() == 42_492_480


@pytest.mark.parametrize("preset,dim", [("r50x1", 2048), ("r50x3", 6144), ("r152x4", 8192),
                                        ("tiny", 512)])
def test_feature_dim_is_2048_times_width(preset, dim):
  model = bit.ResNetV2(**bit.PRESETS[preset])
  assert model.feature_dim == dim == int(2048 * bit.PRESETS[preset]["width"])


def test_r50x1_adapter_places_have_bit_channel_counts():
  assert bit.ResNetV2(**bit.PRESETS["r50x1"]).block_input_channels == (64, 256, 512, 1024)


def test_weight_standardization_equals_formula():
  kernel = np.random.default_rng(1).normal(2.0, 3.0, (3, 3, 5, 7)).astype("float32")
  got = bit_layers.standardize_kernel(tf.constant(kernel)).numpy()
  np.testing.assert_allclose(got, _numpy_standardize(kernel), rtol=1e-5, atol=1e-5)


def test_standardized_conv_uses_standardized_kernel_and_no_bias():
  layer = bit_layers.StandardizedConv2D(4, 3, strides=2)
  x = np.random.default_rng(2).normal(size=(2, 9, 9, 3)).astype("float32")
  y = layer(x).numpy()
  assert [v.name for v in layer.weights] == ["kernel"]
  want = tf.nn.conv2d(x, _numpy_standardize(layer.kernel.numpy()).astype("float32"), 2, "VALID")
  np.testing.assert_allclose(y, want.numpy(), rtol=1e-4, atol=1e-4)


def test_freeze_standardization_standardizes_once_without_retracing_warnings(caplog):
  model = bit.create_model("tiny", units=(1, 1, 1, 1), num_classes=2)
  x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
  before = model(x)["pre_logits"].numpy()
  kernels = [layer for layer in model._flatten_layers()  # pylint: disable=protected-access
             if isinstance(layer, bit_layers.StandardizedConv2D)]
  raw = [layer.kernel.numpy() for layer in kernels]
  assert len({kernel.shape for kernel in raw}) > 5  # more than TF's retracing-warning threshold
  logger = logging.getLogger("tensorflow")
  logger.addHandler(caplog.handler)  # TF's logger does not propagate to the root's handler
  try:
    assert bit_layers.freeze_standardization(model) == len(kernels)
  finally:
    logger.removeHandler(caplog.handler)
  assert not [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]
  assert all(layer.kernel_standardized for layer in kernels)
  for layer, kernel in zip(kernels, raw):
    np.testing.assert_allclose(layer.kernel.numpy(), _numpy_standardize(kernel), atol=1e-5)
  np.testing.assert_allclose(model(x)["pre_logits"].numpy(), before, rtol=1e-5, atol=1e-5)


def test_group_norm_matches_numpy_reference():
  rng = np.random.default_rng(3)
  x = rng.normal(1.0, 2.0, (2, 5, 5, 16)).astype("float32")
  layer = bit_layers.make_group_norm(groups=4)
  layer.build(x.shape)
  gamma, beta = rng.normal(size=16), rng.normal(size=16)
  layer.gamma.assign(gamma)
  layer.beta.assign(beta)
  np.testing.assert_allclose(layer(x).numpy(), _numpy_group_norm(x, gamma, beta, 4),
                             rtol=1e-4, atol=1e-4)


def test_group_norm_variance_has_no_cancellation_under_large_offsets():
  # Channel means 1e3 times the spread within a group: an E[x^2] - E[x]^2 variance would lose
  # every digit in float32; the two-pass variance about the group mean keeps them.
  rng = np.random.default_rng(4)
  x = (rng.normal(0.0, 1.0, (2, 6, 6, 8)) + 1000.0).astype("float32")
  layer = bit_layers.make_group_norm(groups=2)
  layer.build(x.shape)
  np.testing.assert_allclose(layer(x).numpy(), _numpy_group_norm(x, 1.0, 0.0, 2), atol=2e-3)
  compiled = tf.function(layer, jit_compile=True)  # the fused XLA form computes the same
  np.testing.assert_allclose(compiled(x).numpy(), _numpy_group_norm(x, 1.0, 0.0, 2), atol=2e-3)


def test_default_group_norm_is_bit_32_groups_eps_1e5():
  unit = bit.create_model("r26x1").blocks[0].units[0]
  assert unit.a.group_norm.groups == 32 and unit.a.group_norm.epsilon == 1e-5


def test_tiny_model_matches_reference_bit_forward_pass():
  model = bit.create_model("tiny", units=(1, 2, 1, 1), num_classes=3)
  _randomize(model)
  params = {n: v.numpy() for n, v in checkpoints.checkpoint_variables(model).items()}
  params["resnet/head/conv2d/kernel"] = params["resnet/head/conv2d/kernel"][None, None]
  images = np.random.default_rng(4).uniform(size=(2, 35, 33, 3)).astype("float32")
  out = model(images)
  want_pre, want_logits = _reference_forward(params, images, (1, 2, 1, 1), groups=4)
  np.testing.assert_allclose(out["pre_logits"].numpy(), want_pre, rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(out["logits"].numpy(), want_logits, rtol=2e-3, atol=2e-2)


def test_outputs_by_name_and_zero_init_head():
  model = bit.create_model("tiny", num_classes=7)
  out = model(np.random.default_rng(5).uniform(size=(3, 32, 32, 3)).astype("float32"))
  assert set(out) == {"pre_logits", "logits"}
  assert out["pre_logits"].shape == (3, 512) and out["logits"].shape == (3, 7)
  np.testing.assert_array_equal(out["logits"].numpy(), 0.0)
  headless = bit.create_model("tiny")
  assert set(headless(np.zeros((1, 32, 32, 3), "float32"))) == {"pre_logits"}


def test_layer_names_follow_bit_checkpoint_hierarchy():
  names = set(checkpoints.checkpoint_variables(bit.create_model("tiny", num_classes=2)))
  for name in ["resnet/root_block/standardized_conv2d/kernel",
               "resnet/block1/unit01/a/group_norm/gamma",
               "resnet/block1/unit01/a/standardized_conv2d/kernel",
               "resnet/block1/unit01/a/proj/standardized_conv2d/kernel",
               "resnet/block2/unit01/b/standardized_conv2d/kernel",
               "resnet/block4/unit01/c/group_norm/beta",
               "resnet/group_norm/beta", "resnet/head/conv2d/kernel", "resnet/head/conv2d/bias"]:
    assert name in names


@pytest.mark.parametrize("kwargs,fragment", [
    ({"units": (3, 4, 6)}, "units=(3, 4, 6)"),
    ({"units": (3, 0, 6, 3)}, "units=(3, 0, 6, 3)"),
    ({"width": 0}, "width=0"),
    ({"width": 0.3}, "width=0.3"),
    ({"groups": 5}, "groups=5"),
    ({"num_classes": -1}, "num_classes=-1"),
])
def test_bad_constructor_args_name_the_received_value(kwargs, fragment):
  with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
    bit.ResNetV2(**kwargs)


def test_unknown_preset_lists_known_presets():
  with pytest.raises(ValueError, match="r50x1"):
    bit.create_model("r51x1")


def test_get_config_round_trips():
  model = bit.create_model("tiny", num_classes=4)
  clone = bit.ResNetV2.from_config(model.get_config())
  assert clone.get_config() == model.get_config()
  assert clone.units_per_block == (1, 1, 1, 1) and clone.groups == 4 and clone.width == 0.25


def test_keras_save_and_load_keep_outputs(tmp_path):
  model = bit.create_model("tiny", num_classes=3)
  _randomize(model, seed=6)
  images = np.random.default_rng(7).uniform(size=(2, 32, 32, 3)).astype("float32")
  path = str(tmp_path / "model.keras")
  model.save(path)
  restored = keras.models.load_model(path)
  for key in ("pre_logits", "logits"):
    np.testing.assert_array_equal(restored(images)[key].numpy(), model(images)[key].numpy())
