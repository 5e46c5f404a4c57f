"""GroupNorm at bfloat16 / float16: statistics accumulated in float32 from the reduced-precision
activations (no float32 copy), as accurate as normalising a float32 copy and rounding once;
the inference kernels (per example for large maps, float32 arithmetic for small ones) and the
trainable path agree; gradients flow on the trainable path."""
import numpy as np
import pytest
import tensorflow as tf

from tfexperts.models import layers

GROUPS = 4


def _reference(x, gamma, beta):
  """float64 GroupNorm of `x` [b, h, w, c], then ReLU."""
  b, h, w, c = x.shape
  a = x.astype(np.float64).reshape(b, h * w, GROUPS, c // GROUPS)
  mean = a.mean(axis=(1, 3), keepdims=True)
  var = a.var(axis=(1, 3), keepdims=True)
  y = ((a - mean) / np.sqrt(var + layers.GN_EPSILON)).reshape(b, h, w, c) * gamma + beta
  return np.maximum(y, 0.0)


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  # A large mean next to the spread: what makes naive E[x^2] - E[x]^2 statistics fail.
  x = (rng.normal(0, 3, (3, 9, 9, 16)) + 5).astype(np.float32)
  gamma = rng.uniform(0.5, 1.5, 16).astype(np.float32)
  beta = rng.normal(0, 1, 16).astype(np.float32)
  return x, gamma, beta


def _function(gamma, beta, inference_only):
  return tf.function(lambda t: layers.group_norm(t, GROUPS, layers.GN_EPSILON, gamma, beta, True,
                                                 inference_only), autograph=False)


def _run(x, gamma, beta, dtype, inference_only):
  out = _function(gamma, beta, inference_only)(tf.cast(tf.constant(x), dtype))
  assert out.dtype == dtype
  return out.numpy().astype(np.float64)


def _op_types(x, dtype, inference_only):
  gamma, beta = np.ones(x.shape[-1], np.float32), np.zeros(x.shape[-1], np.float32)
  graph = _function(gamma, beta, inference_only).get_concrete_function(
      tf.TensorSpec(x.shape, dtype)).graph
  return {op.type for op in graph.get_operations()}


def test_bfloat16_inference_runs_per_example_from_the_threshold_on(data, monkeypatch):
  x = data[0]  # 9 x 9 x 16 per example
  assert "FusedBatchNormV3" not in _op_types(x, tf.bfloat16, True)  # small: float32 arithmetic
  monkeypatch.setattr(layers, "PER_EXAMPLE_MIN_ELEMENTS", 9 * 9 * 16)
  assert "FusedBatchNormV3" in _op_types(x, tf.bfloat16, True)
  assert "FusedBatchNormV3" not in _op_types(x, tf.bfloat16, False)  # trainable: reduced path
  assert "FusedBatchNormV3" not in _op_types(x[:, :, :, :8], tf.bfloat16, True)


def test_small_bfloat16_inference_maps_are_the_float32_result_rounded_once(data):
  x, gamma, beta = data  # under the threshold
  rounded = tf.cast(tf.constant(x), tf.bfloat16)
  want = tf.cast(_function(gamma, beta, False)(tf.cast(rounded, tf.float32)), tf.bfloat16)
  np.testing.assert_array_equal(_run(x, gamma, beta, tf.bfloat16, True),
                                want.numpy().astype(np.float64))


@pytest.mark.parametrize("dtype,inference_only,per_example_from", [
    (tf.bfloat16, True, 0), (tf.bfloat16, True, None), (tf.bfloat16, False, None),
    (tf.float16, False, None), (tf.float16, True, None)])
def test_reduced_precision_group_norm_is_as_accurate_as_rounding_a_float32_result(
    data, dtype, inference_only, per_example_from, monkeypatch):
  if per_example_from is not None:
    monkeypatch.setattr(layers, "PER_EXAMPLE_MIN_ELEMENTS", per_example_from)
  x, gamma, beta = data
  rounded = tf.cast(tf.constant(x), dtype).numpy().astype(np.float32)  # what the layer sees
  want = _reference(rounded, gamma, beta)
  # The float32 path on the same inputs, rounded once to the output dtype: the bar to meet.
  bar = np.abs(tf.cast(layers.group_norm(tf.constant(rounded), GROUPS, layers.GN_EPSILON, gamma,
                                         beta, True), dtype).numpy().astype(np.float64)
               - want).max()
  got = _run(x, gamma, beta, dtype, inference_only)
  # bfloat16 inference rounds once (oneDNN's fused kernels per example, or float32 arithmetic):
  # within 1.5x of the bar. The differentiable path rounds the mean, the deviations and a
  # multiply-add: within 3.5x.
  factor = 1.5 if (dtype == tf.bfloat16 and inference_only) else 3.5
  assert np.abs(got - want).max() <= factor * bar + 1e-6, (np.abs(got - want).max(), bar)


def test_float32_path_unchanged(data):
  x, gamma, beta = data
  got = _run(x, gamma, beta, tf.float32, True)
  np.testing.assert_allclose(got, _reference(x, gamma, beta), atol=2e-5)


def _gradients(x, gamma, beta, dtype):
  xt = tf.cast(tf.constant(x), dtype)
  gamma_v = tf.Variable(gamma)
  weights = np.linspace(-1, 1, x.size).reshape(x.shape).astype(np.float32)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    y = layers.group_norm(xt, GROUPS, layers.GN_EPSILON, gamma_v, beta, True)
    loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
  grad_x, grad_gamma = tape.gradient(loss, [xt, gamma_v])
  return tf.cast(grad_x, tf.float32).numpy(), grad_gamma.numpy()


def test_trainable_bfloat16_gradients_match_float32s(data):
  x, gamma, beta = data
  rounded = tf.cast(tf.cast(tf.constant(x), tf.bfloat16), tf.float32).numpy()
  want_x, want_gamma = _gradients(rounded, gamma, beta, tf.float32)
  got_x, got_gamma = _gradients(x, gamma, beta, tf.bfloat16)
  # Through the statistics too: here 3% RMS apart (bfloat16 rounding); without the mean's or
  # the variance's gradient 66-87%.
  rms = lambda a: float(np.sqrt(np.mean(np.square(a))))
  assert rms(got_x - want_x) <= 0.1 * rms(want_x)
  assert np.abs(got_gamma - want_gamma).max() <= 0.1 * np.abs(want_gamma).max()
