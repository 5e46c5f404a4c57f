"""BiT building blocks: weight-standardized convolution, symmetric padding, pre-activation convs.

Layer names equal the scopes of the published BiT checkpoints (`standardized_conv2d`, `group_norm`,
`a`/`b`/`c`, `proj`), so Keras variable paths read like `block1/unit01/a/group_norm/gamma`.
"""
import functools

import keras
import tensorflow as tf
from keras import ops

from tfexperts import bounds

GN_EPSILON = 1e-5
WS_EPSILON = 1e-10


def standardize_kernel(kernel):
  """Weight standardization: (k - mean) / sqrt(var + 1e-10) over (h, w, in) per output channel.

  Takes a `[h, w, in, out]` kernel; returns a kernel of the same shape and dtype. Statistics are
  computed in float32 so bfloat16/float16 kernels standardize as accurately as float32 ones.
  """
  kernel32 = ops.cast(kernel, "float32")
  mean = ops.mean(kernel32, axis=(0, 1, 2), keepdims=True)
  var = ops.var(kernel32, axis=(0, 1, 2), keepdims=True)
  return ops.cast((kernel32 - mean) / ops.sqrt(var + WS_EPSILON), kernel.dtype)


@keras.saving.register_keras_serializable(package="tfexperts")
class StandardizedConv2D(keras.layers.Conv2D):
  """Conv2D without bias whose kernel is weight-standardized at every call ('valid' padding).

  An inference-only owner whose kernels already hold standardized values (see
  `tfexperts.hub.native`, which standardizes once on load) sets `kernel_standardized = True` on
  the layer before tracing; the call then uses the kernel as it is. Never saved in the config.
  """

  kernel_standardized = False

  def __init__(self, filters, kernel_size, strides=1, name="standardized_conv2d", **kwargs):
    kwargs.setdefault("use_bias", False)
    kwargs.setdefault("padding", "valid")
    super().__init__(filters, kernel_size, strides=strides, name=name, **kwargs)

  def convolution_op(self, inputs, kernel):
    if not self.kernel_standardized:
      kernel = standardize_kernel(kernel)
    return super().convolution_op(inputs, kernel)


# Standardization as a graph, one per kernel shape: the model's own traced call computes it as a
# graph, and eager ops round differently (features then move by ~1e-5 of their scale at R50).
_GRAPH_STANDARDIZE = {}


def freeze_standardization(model):
  """Inference only: weight-standardizes every `StandardizedConv2D` kernel of `model` once, in
  place, and makes those layers use their kernels as they are (`kernel_standardized`); its
  GroupNorms become `inference_only` (no gradient through their statistics).

  Takes a built Keras model or layer; returns the number of kernels standardized. The raw kernels
  are lost: never for a model that trains, is saved or exported. (Standardization is idempotent
  up to rounding, so a call traced before this one still computes the same outputs.)
  """
  count = 0
  for layer in model._flatten_layers():  # pylint: disable=protected-access
    if isinstance(layer, StandardizedConv2D):
      shape = tuple(layer.kernel.shape)
      if shape not in _GRAPH_STANDARDIZE:
        # A callable of its own per shape (TF counts traces per function code, and one shared
        # function traced for R50's ~20 kernel shapes printed a retracing warning on every load).
        _GRAPH_STANDARDIZE[shape] = tf.function(functools.partial(standardize_kernel),
                                                autograph=False)
      layer.kernel.assign(_GRAPH_STANDARDIZE[shape](layer.kernel.value))
      layer.kernel_standardized = True
      count += 1
    elif isinstance(layer, GroupNorm):
      layer.inference_only = True
  return count


@keras.saving.register_keras_serializable(package="tfexperts")
class SymmetricPadding(keras.layers.Layer):
  """Zero-pads height and width by `(kernel_size - 1) // 2` on each side (BiT's explicit padding).

  Keras' 'same' padding is asymmetric at stride 2, which changes features of published weights.
  """

  def __init__(self, kernel_size, **kwargs):
    super().__init__(**kwargs)
    bounds.positive_int("kernel_size", kernel_size)
    self.kernel_size = kernel_size

  def call(self, x):
    total = self.kernel_size - 1
    before, after = total // 2, total - total // 2
    return ops.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])

  def compute_output_shape(self, input_shape):
    b, h, w, c = input_shape
    grow = self.kernel_size - 1
    return (b, None if h is None else h + grow, None if w is None else w + grow, c)

  def get_config(self):
    return {**super().get_config(), "kernel_size": self.kernel_size}


def _in_xla_function():
  """True while tracing inside a `tf.function(jit_compile=True)` (TF's own XLA-context test)."""
  try:
    from tensorflow.python.ops import control_flow_util  # pylint: disable=g-import-not-at-top
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
  except (ImportError, AttributeError):
    return False


# Per example, `_group_norm_per_example` pays a fixed cost per example and GroupNorm (~0.1-0.2 ms
# on a 2-core CPU): from about 200k elements per example (56 x 56 x 64 in R50x1 at 224 px) it is
# 1.2-2.4x faster than float32 arithmetic on the batch; at about 100k (28 x 28 x 128, 7 x 7 x
# 2048) they are even, below it per example is up to 3.5x slower (7 x 7 x 512: 2x; every map of a
# 32 px model). `bench/group_norm.py` measures both on bfloat16 maps.
PER_EXAMPLE_MIN_ELEMENTS = 2 ** 17


def _per_example_pays(x):
  """Whether `x`'s examples are large enough for `_group_norm_per_example` (unknown: yes)."""
  size = x.shape[1:].num_elements()
  return size is None or size >= PER_EXAMPLE_MIN_ELEMENTS


def group_norm(x, groups, epsilon, gamma, beta, relu=False, inference_only=False):
  """GroupNorm of `x` (`[b, h, w, c]`) with per-channel `gamma`, `beta` (`[c]` or per example
  `[b, c]`), followed by a ReLU when `relu`; returns `x`'s shape and dtype. `inference_only`:
  no gradient is needed (a bfloat16 `x` of static batch size then takes the fastest kernels,
  `_group_norm_per_example`, whose statistics have no gradient, when its examples hold at least
  `PER_EXAMPLE_MIN_ELEMENTS`; smaller ones take the float32 arithmetic below on a float32 copy,
  rounded once). Statistics are computed in float32 (on the trainable path, and for float16, of a
  bfloat16 or float16 `x` accumulated in float32 from `x` itself: `_group_norm_reduced`).

  Two reading passes for the statistics and one multiply-add. Without XLA the first pass takes
  per-channel means over the pixels (a reduction over the middle axis, contiguous channels kept),
  averaged per group; the second the per-channel mean squared deviation from the group mean,
  averaged per group, which is the group's variance exactly (no E[x^2] - E[x]^2 cancellation).
  Inside an XLA-compiled function the same two passes run over the grouped layout
  `[b, pixels, groups, channels / groups]`, which XLA's CPU code reduces faster. Then
  gamma * rsqrt(var + eps) and the mean fold into one scale and one offset per (example,
  channel), so the normalisation itself is one multiply-add per element.
  """
  per_example = (inference_only and x.dtype == tf.bfloat16 and x.shape[0] is not None
                 and not _in_xla_function())
  if per_example and _per_example_pays(x):
    return _group_norm_per_example(x, groups, epsilon, gamma, beta, relu)
  if x.dtype in (tf.bfloat16, tf.float16) and not per_example:
    return _relu_if(_group_norm_reduced(x, groups, epsilon, gamma, beta), relu)
  # Float32 arithmetic, also for the small maps of the per-example case: the output is rounded to
  # x's dtype once, as per example (the reduced path's two roundings would move kNN picks).
  # Shapes are written with constants where they can be (-1 for the batch, tiling instead of
  # broadcasting to a dynamic shape): fewer graph ops make every trace and its gradient cheaper.
  in_dtype = x.dtype
  shape = tf.shape(x)
  channels = x.shape[-1]
  per_group = channels // groups
  flat = tf.reshape(tf.cast(x, tf.float32), [shape[0], -1, channels])

  def group_mean(per_channel):  # [b, c] -> [b, g, 1]
    return tf.reduce_mean(tf.reshape(per_channel, [-1, groups, per_group]), axis=2, keepdims=True)

  def to_channels(per_group_value):  # [b, g, 1] -> [b, c]
    return tf.reshape(tf.tile(per_group_value, [1, 1, per_group]), [-1, channels])

  if _in_xla_function():
    # XLA's CPU code for reductions over the grouped layout is faster than over the pixels axis.
    grouped_mean, variance = tf.nn.moments(
        tf.reshape(flat, [shape[0], -1, groups, per_group]), axes=[1, 3])
    mean, variance = to_channels(grouped_mean[:, :, None]), variance[:, :, None]
  else:
    mean = to_channels(group_mean(tf.reduce_mean(flat, axis=1)))
    variance = group_mean(tf.reduce_mean(
        tf.math.squared_difference(flat, tf.expand_dims(mean, 1)), axis=1))
  scale = to_channels(tf.math.rsqrt(variance + epsilon)) * tf.cast(gamma, tf.float32)
  offset = tf.cast(beta, tf.float32) - mean * scale
  y = flat * tf.expand_dims(scale, 1) + tf.expand_dims(offset, 1)
  return _relu_if(tf.cast(tf.reshape(y, shape), in_dtype), relu)


def _relu_if(y, relu):
  return tf.nn.relu(y) if relu else y


def _group_norm_per_example(x, groups, epsilon, gamma, beta, relu):
  """`group_norm` of a bfloat16 `x` of static batch size by oneDNN's fused batch norm kernels,
  one example at a time: for this CPU's bfloat16 they run 2x faster than the same arithmetic as
  separate element-wise ops (TensorFlow's bfloat16 element-wise kernels are not vectorised well).

  Per example: the training-mode kernel gives per-channel means and variances over the pixels,
  accumulated in float32 in one reading pass; they combine into group statistics exactly (law
  of total variance) in float32; the inference-mode kernel then applies the folded per-channel
  scale and offset (mean 0, variance 1, epsilon 0) in one pass, rounding once, and the optional
  ReLU follows on the same piece.
  """
  channels = x.shape[-1]
  per_group = channels // groups
  batch = x.shape[0]
  pixels = tf.cast(tf.size(x) // (batch * channels), tf.float32)
  bessel = (pixels - 1.0) / tf.maximum(pixels, 1.0)  # the kernel's variance is n/(n-1)-corrected
  gamma, beta = tf.cast(gamma, tf.float32), tf.cast(beta, tf.float32)
  ones, zeros = tf.ones([channels], tf.float32), tf.zeros([channels], tf.float32)
  outputs = []
  for i, piece in enumerate(tf.split(x, batch) if batch > 1 else [x]):
    _, channel_mean, channel_var = tf.raw_ops.FusedBatchNormV3(
        x=piece, scale=ones, offset=zeros, mean=zeros, variance=zeros, epsilon=epsilon,
        is_training=True)[:3]
    channel_mean = tf.reshape(channel_mean, [groups, per_group])
    mean = tf.reduce_mean(channel_mean, axis=1, keepdims=True)
    variance = tf.reduce_mean(tf.reshape(channel_var, [groups, per_group]) * bessel
                              + tf.math.squared_difference(channel_mean, mean), axis=1,
                              keepdims=True)
    scale = tf.reshape(tf.broadcast_to(tf.math.rsqrt(variance + epsilon), [groups, per_group]),
                       [channels])
    scale *= gamma[i] if gamma.shape.rank == 2 else gamma
    offset = (beta[i] if beta.shape.rank == 2 else beta) - tf.reshape(
        tf.broadcast_to(mean, [groups, per_group]), [channels]) * scale
    y = tf.raw_ops.FusedBatchNormV3(x=piece, scale=scale, offset=offset, mean=zeros,
                                    variance=ones, epsilon=0.0, is_training=False)[0]
    outputs.append(_relu_if(y, relu))
  return tf.concat(outputs, 0) if batch > 1 else outputs[0]


def _group_norm_reduced(x, groups, epsilon, gamma, beta):
  """`group_norm` of a bfloat16/float16 `x`, without a float32 copy of it.

  TensorFlow's reductions of bfloat16/float16 tensors accumulate in float32 and round only their
  `[b, c]` results, so the per-channel means and mean squared deviations are read straight from
  `x` and from its deviations from the group mean (computed once in `x`'s dtype); group
  statistics, rsqrt and the scale are float32, and the output is one multiply-add of the
  deviations in `x`'s dtype. Differentiable (the trainable path). The float32 path's four full float32 passes and two casts are what made BiT's GroupNorm
  the bottleneck of its reduced-precision forward pass.
  """
  dtype = x.dtype
  shape = tf.shape(x)
  channels = x.shape[-1]
  per_group = channels // groups
  flat = tf.reshape(x, [shape[0], -1, channels])

  def group_mean(per_channel):  # [b, c] (x's dtype) -> [b, g, 1] float32
    return tf.reduce_mean(tf.reshape(tf.cast(per_channel, tf.float32), [-1, groups, per_group]),
                          axis=2, keepdims=True)

  def to_channels(per_group_value):  # [b, g, 1] -> [b, c]; constant shapes, as in `group_norm`
    return tf.reshape(tf.tile(per_group_value, [1, 1, per_group]), [-1, channels])

  mean = tf.cast(to_channels(group_mean(tf.reduce_mean(flat, axis=1))), dtype)
  # Centred once, on the mean rounded to x's dtype (x - mean is then nearly exact): the variance
  # and the output are computed from the small deviations, not from x's larger values.
  deviation = flat - tf.expand_dims(mean, 1)
  variance = group_mean(tf.reduce_mean(tf.math.square(deviation), axis=1))
  scale = to_channels(tf.math.rsqrt(variance + epsilon)) * tf.cast(gamma, tf.float32)
  y = deviation * tf.expand_dims(tf.cast(scale, dtype), 1) + tf.expand_dims(tf.cast(beta, dtype),
                                                                            -2)
  return tf.reshape(y, shape)


@keras.saving.register_keras_serializable(package="tfexperts")
class GroupNorm(keras.layers.Layer):
  """BiT's GroupNorm: variables `gamma`, `beta` of shape `[channels]` (the names and shapes of
  `keras.layers.GroupNormalization` and of the BiT checkpoints), computed by `group_norm`.

  `call(x, relu=True)` also applies the ReLU that follows every GroupNorm in BiT. An
  inference-only owner sets `inference_only = True` on the layer before tracing (as
  `freeze_standardization` does): no gradient then flows through its statistics. Never saved.
  """

  inference_only = False

  def __init__(self, groups=32, epsilon=GN_EPSILON, **kwargs):
    super().__init__(**kwargs)
    bounds.positive_int("groups", groups)
    self.groups, self.epsilon = groups, epsilon

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels % self.groups:
      raise ValueError(f"GroupNorm groups={self.groups} must divide the channel count. "
                       f"Received: channels={channels}")
    self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
    self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

  def call(self, x, relu=False):
    return ops.cast(group_norm(x, self.groups, self.epsilon, self.gamma, self.beta, relu,
                               self.inference_only), self.compute_dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


def make_group_norm(groups, num_experts=0, name="group_norm"):
  """Returns BiT's GroupNorm (eps 1e-5, `groups` groups), named as in the checkpoints.

  With `num_experts > 0` returns a `GroupNormBank` holding one scale and bias per expert (a
  model-patch bank); its call then takes `expert_ids`.
  """
  if num_experts:
    return GroupNormBank(num_experts, groups=groups, name=name)
  return GroupNorm(groups=groups, epsilon=GN_EPSILON, name=name)


def call_norm(norm, x, expert_ids, relu=False):
  """Applies a plain GroupNorm, or a `GroupNormBank` routed by `expert_ids` ([b] ints), then a
  ReLU when `relu`."""
  if isinstance(norm, GroupNormBank):
    y = norm(x, expert_ids)
    return ops.relu(y) if relu else y
  return norm(x, relu=relu)


def gather_rows(table, expert_ids, dtype):
  """Per-example rows of an expert-stacked variable: `table[expert_ids]` cast to `dtype`."""
  return ops.cast(ops.take(table, ops.cast(expert_ids, "int32"), axis=0), dtype)


@keras.saving.register_keras_serializable(package="tfexperts")
class GroupNormBank(keras.layers.Layer):
  """GroupNorm whose scale and bias are chosen per example from `num_experts` stacked rows.

  Variables `gamma` and `beta` have shape `[num_experts, channels]`; row e is expert e's patch.
  `call(x, expert_ids)` normalizes `x` like GroupNorm and applies row `expert_ids[i]` to example i.
  """

  def __init__(self, num_experts, groups=32, epsilon=GN_EPSILON, **kwargs):
    super().__init__(**kwargs)
    bounds.positive_int("num_experts", num_experts)
    bounds.positive_int("groups", groups)
    self.num_experts, self.groups, self.epsilon = num_experts, groups, epsilon

  def build(self, input_shape):
    channels = input_shape[-1]
    if channels % self.groups:
      raise ValueError(f"GroupNorm groups={self.groups} must divide the channel count. "
                       f"Received: channels={channels}")
    self.gamma = self.add_weight(name="gamma", shape=(self.num_experts, channels),
                                 initializer="ones")
    self.beta = self.add_weight(name="beta", shape=(self.num_experts, channels),
                                initializer="zeros")

  def call(self, x, expert_ids):
    # The same function as GroupNorm, so a bank whose rows all equal a GroupNorm's parameters
    # reproduces it bit for bit.
    return ops.cast(group_norm(x, self.groups, self.epsilon,
                               gather_rows(self.gamma, expert_ids, "float32"),
                               gather_rows(self.beta, expert_ids, "float32")), self.compute_dtype)

  def get_config(self):
    return {**super().get_config(), "num_experts": self.num_experts, "groups": self.groups,
            "epsilon": self.epsilon}


def with_channels(input_shape, channels):
  """`[b, h, w, c]` shape `input_shape` as `(b, None, None, channels)`: what a layer whose
  variables depend on the channel count only is built for."""
  return (input_shape[0], None, None, channels)


@keras.saving.register_keras_serializable(package="tfexperts")
class PreActConv(keras.layers.Layer):
  """GroupNorm -> ReLU -> (symmetric pad) -> StandardizedConv2D, one of a unit's `a`, `b`, `c`.

  With `patch_experts > 0` its GroupNorm is a `GroupNormBank` and `call` takes `expert_ids`.
  With `projection_filters > 0` (unit `a` of a unit that changes shape) it also owns `proj`, a
  strided 1x1 conv of the pre-activation, and `call` returns `(output, shortcut)` where shortcut is
  `proj(relu(gn(x)))`, else `x`. Without projection, `call` returns the output only.
  """

  def __init__(self, filters, kernel_size=1, strides=1, groups=32, projection_filters=0,
               projection_strides=1, patch_experts=0, **kwargs):
    super().__init__(**kwargs)
    for arg, value in (("filters", filters), ("kernel_size", kernel_size), ("strides", strides),
                       ("groups", groups), ("projection_strides", projection_strides)):
      bounds.positive_int(arg, value)
    bounds.non_negative_int("projection_filters", projection_filters)
    self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
    self.groups, self.patch_experts = groups, patch_experts
    self.projection_filters, self.projection_strides = projection_filters, projection_strides
    self.group_norm = make_group_norm(groups, patch_experts)
    self.pad = SymmetricPadding(kernel_size, name="pad") if kernel_size > 1 else None
    self.conv = StandardizedConv2D(filters, kernel_size, strides=strides)
    self.proj = None
    if projection_filters:
      self.proj = _Projection(projection_filters, projection_strides, name="proj")

  def build(self, input_shape):
    """Creates the variables for inputs of `input_shape` (`[b, h, w, c]`) without a call, in the
    order a call would (GroupNorm, conv, projection): seeded initial values stay the same."""
    self.group_norm.build(input_shape)
    self.conv.build(input_shape)
    if self.proj is not None:
      self.proj.build(input_shape)

  def call(self, x, expert_ids=None):
    preact = call_norm(self.group_norm, x, expert_ids, relu=True)
    y = self.conv(self.pad(preact) if self.pad is not None else preact)
    if self.proj is None:
      return y
    return y, self.proj(preact)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "groups": self.groups,
            "projection_filters": self.projection_filters,
            "projection_strides": self.projection_strides, "patch_experts": self.patch_experts}


@keras.saving.register_keras_serializable(package="tfexperts")
class _Projection(keras.layers.Layer):
  """Scope `proj` holding the shortcut's `standardized_conv2d` (checkpoint `a/proj/...`)."""

  def __init__(self, filters, strides, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.strides = filters, strides
    self.conv = StandardizedConv2D(filters, 1, strides=strides)

  def build(self, input_shape):
    self.conv.build(input_shape)

  def call(self, x):
    return self.conv(x)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "strides": self.strides}
