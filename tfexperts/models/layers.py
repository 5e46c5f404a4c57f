"""BiT building blocks: weight-standardized convolution, symmetric padding, pre-activation convs.

Layer names equal the scopes of the published BiT checkpoints (`standardized_conv2d`, `group_norm`,
`a`/`b`/`c`, `proj`), so Keras variable paths read like `block1/unit01/a/group_norm/gamma`.
"""
import keras
from keras import ops

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


def _check_positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="tfexperts")
class StandardizedConv2D(keras.layers.Conv2D):
  """Conv2D without bias whose kernel is weight-standardized at every call ('valid' padding)."""

  def __init__(self, filters, kernel_size, strides=1, name="standardized_conv2d", **kwargs):
    kwargs.setdefault("use_bias", False)
    kwargs.setdefault("padding", "valid")
    super().__init__(filters, kernel_size, strides=strides, name=name, **kwargs)

  def convolution_op(self, inputs, kernel):
    return super().convolution_op(inputs, standardize_kernel(kernel))


@keras.saving.register_keras_serializable(package="tfexperts")
class SymmetricPadding(keras.layers.Layer):
  """Zero-pads height and width by `(kernel_size - 1) // 2` on each side (BiT's explicit padding).

  Keras' 'same' padding is asymmetric at stride 2, which changes features of published weights.
  """

  def __init__(self, kernel_size, **kwargs):
    super().__init__(**kwargs)
    _check_positive_int("kernel_size", kernel_size)
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


def make_group_norm(groups, name="group_norm"):
  """Returns BiT's GroupNorm (eps 1e-5) with `groups` groups, named as in the checkpoints."""
  return keras.layers.GroupNormalization(groups=groups, epsilon=GN_EPSILON, name=name)


@keras.saving.register_keras_serializable(package="tfexperts")
class PreActConv(keras.layers.Layer):
  """GroupNorm -> ReLU -> (symmetric pad) -> StandardizedConv2D, one of a unit's `a`, `b`, `c`.

  With `projection_filters > 0` (unit `a` of a unit that changes shape) it also owns `proj`, a
  strided 1x1 conv of the pre-activation, and `call` returns `(output, shortcut)` where shortcut is
  `proj(relu(gn(x)))`, else `x`. Without projection, `call` returns the output only.
  """

  def __init__(self, filters, kernel_size=1, strides=1, groups=32, projection_filters=0,
               projection_strides=1, **kwargs):
    super().__init__(**kwargs)
    for arg, value in (("filters", filters), ("kernel_size", kernel_size), ("strides", strides),
                       ("groups", groups), ("projection_strides", projection_strides)):
      _check_positive_int(arg, value)
    if isinstance(projection_filters, bool) or not isinstance(projection_filters, int) or (
        projection_filters < 0):
      raise ValueError("`projection_filters` must be a non-negative integer. "
                       f"Received: projection_filters={projection_filters!r}")
    self.filters, self.kernel_size, self.strides = filters, kernel_size, strides
    self.groups = groups
    self.projection_filters, self.projection_strides = projection_filters, projection_strides
    self.group_norm = make_group_norm(groups)
    self.pad = SymmetricPadding(kernel_size, name="pad") if kernel_size > 1 else None
    self.conv = StandardizedConv2D(filters, kernel_size, strides=strides)
    self.proj = None
    if projection_filters:
      self.proj = _Projection(projection_filters, projection_strides, name="proj")

  def call(self, x):
    preact = ops.relu(self.group_norm(x))
    y = self.conv(self.pad(preact) if self.pad is not None else preact)
    if self.proj is None:
      return y
    return y, self.proj(preact)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "groups": self.groups,
            "projection_filters": self.projection_filters,
            "projection_strides": self.projection_strides}


@keras.saving.register_keras_serializable(package="tfexperts")
class _Projection(keras.layers.Layer):
  """Scope `proj` holding the shortcut's `standardized_conv2d` (checkpoint `a/proj/...`)."""

  def __init__(self, filters, strides, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.strides = filters, strides
    self.conv = StandardizedConv2D(filters, 1, strides=strides)

  def call(self, x):
    return self.conv(x)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "strides": self.strides}
