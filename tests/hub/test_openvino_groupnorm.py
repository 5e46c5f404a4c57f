"""`hub.openvino_groupnorm` fuses both forms of GroupNorm that tfexperts modules hold: today's
(`layers.group_norm`) and the one exported before 2026-12-04 (per-group values broadcast to a
dynamic shape, axes inserted by slicing), which published modules keep."""
import collections

import numpy as np
import pytest
import tensorflow as tf

from tfexperts.models import layers

CHANNELS, GROUPS = 8, 2


def _group_norm_before_2026_12_04(x, groups, epsilon, gamma, beta):
  """`layers.group_norm`'s float32 path as it was exported until 2026-12-04."""
  shape = tf.shape(x)
  channels = x.shape[-1]
  per_group = channels // groups
  flat = tf.reshape(x, [shape[0], -1, channels])

  def group_mean(per_channel):
    return tf.reduce_mean(tf.reshape(per_channel, [-1, groups, per_group]), axis=2, keepdims=True)

  def to_channels(per_group_value):
    return tf.reshape(tf.broadcast_to(per_group_value, [shape[0], groups, per_group]),
                      [shape[0], channels])

  mean = to_channels(group_mean(tf.reduce_mean(flat, axis=1)))
  variance = group_mean(tf.reduce_mean(tf.math.squared_difference(flat, mean[:, None, :]),
                                       axis=1))
  scale = to_channels(tf.math.rsqrt(variance + epsilon)) * gamma
  offset = beta - mean * scale
  return tf.reshape(flat * scale[:, None, :] + offset[:, None, :], shape)


@pytest.mark.parametrize("group_norm", [layers.group_norm, _group_norm_before_2026_12_04],
                         ids=["today", "before_2026_12_04"])
def test_each_exported_form_fuses_into_one_group_normalization(group_norm, tmp_path):
  ov = pytest.importorskip("openvino")
  from tfexperts.hub import openvino_engine  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from tfexperts.hub import openvino_groupnorm  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  rng = np.random.default_rng(0)
  gamma, beta = (tf.constant(rng.normal(center, 0.3, CHANNELS).astype("float32"))
                 for center in (1.0, 0.0))
  module = tf.Module()
  module.normalise = tf.function(
      lambda x: group_norm(x, GROUPS, layers.GN_EPSILON, gamma, beta),
      input_signature=[tf.TensorSpec([None, None, None, CHANNELS], tf.float32)])
  tf.saved_model.save(module, str(tmp_path),
                      signatures={"serving_default": module.normalise.get_concrete_function()})
  model = openvino_engine.convert_saved_model(str(tmp_path))
  assert openvino_groupnorm.fuse_group_norms(model) == 1
  kinds = collections.Counter(op.get_type_name() for op in model.get_ordered_ops())
  assert kinds["GroupNormalization"] == 1 and kinds["SquaredDifference"] == 0, kinds
  images = rng.uniform(size=(2, 5, 4, CHANNELS)).astype("float32")
  compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
  want = group_norm(tf.constant(images), GROUPS, layers.GN_EPSILON, gamma, beta).numpy()
  np.testing.assert_allclose(compiled(images)[0], want, rtol=0, atol=1e-5)
