"""BiT ResNet-v2 (Kolesnikov et al., "Big Transfer") as Keras 3 layers.

Weight-standardized convolutions, GroupNorm, pre-activation bottleneck units with the stride on the
3x3, a root of 7x7/2 conv + zero-padded 3x3/2 max-pool, and a GN-ReLU-average-pool giving the
pre-logits, then an optional zero-initialised head. Layer names equal the BiT checkpoint scopes:
`root_block`, `block{b}/unit{NN}/{a,b,c}`, `a/proj`, `group_norm`, `head`.

The model takes images in [0, 1] and maps them to [-1, 1], the range of the raw BiT checkpoints, so
hub modules built on it keep the [0, 1] contract.
"""
import keras
from keras import ops

from tfexperts import bounds
from tfexperts import errors
from tfexperts.models import inputs
from tfexperts.models import layers as bit_layers
from tfexperts.models.presets import PRESETS  # noqa: F401  (name -> constructor arguments)

ROOT_FILTERS = 64
BLOCK_FILTERS = (64, 128, 256, 512)
BLOCK_STRIDES = (1, 2, 2, 2)
EXPANSION = 4


def _scaled(filters, width):
  return int(round(filters * width))


@keras.saving.register_keras_serializable(package="tfexperts")
class RootBlock(keras.layers.Layer):
  """BiT root: pad 3, 7x7 stride-2 StandardizedConv2D, pad 1 with zeros, 3x3 stride-2 max-pool."""

  def __init__(self, filters, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.pad_conv = bit_layers.SymmetricPadding(7, name="pad_conv")
    self.conv = bit_layers.StandardizedConv2D(filters, 7, strides=2)
    self.pad_pool = bit_layers.SymmetricPadding(3, name="pad_pool")
    self.pool = keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="max_pool")

  def build(self, input_shape):
    self.conv.build(input_shape)

  def call(self, x):
    return self.pool(self.pad_pool(self.conv(self.pad_conv(x))))

  def get_config(self):
    return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="tfexperts")
class BottleneckUnit(keras.layers.Layer):
  """Pre-activation bottleneck: 1x1 (F) -> 3x3 (F, stride) -> 1x1 (4F), each GN-ReLU first.

  The shortcut is a strided 1x1 projection of the first pre-activation when the stride is > 1 or
  the channel count changes (so its input channel count must be given), else the input itself.
  """

  def __init__(self, filters, strides, in_channels, groups=32, patch_experts=0, **kwargs):
    super().__init__(**kwargs)
    self.filters, self.strides = filters, strides
    self.in_channels, self.groups, self.patch_experts = in_channels, groups, patch_experts
    out = filters * EXPANSION
    needs_projection = strides > 1 or in_channels != out
    common = {"groups": groups, "patch_experts": patch_experts}
    self.a = bit_layers.PreActConv(filters, 1, projection_filters=out if needs_projection else 0,
                                   projection_strides=strides, name="a", **common)
    self.b = bit_layers.PreActConv(filters, 3, strides=strides, name="b", **common)
    self.c = bit_layers.PreActConv(out, 1, name="c", **common)

  def build(self, input_shape):
    """Creates `a`, `b`, `c`'s variables, in that order, for inputs of `input_shape`."""
    self.a.build(input_shape)
    self.b.build(bit_layers.with_channels(input_shape, self.filters))
    self.c.build(bit_layers.with_channels(input_shape, self.filters))

  def call(self, x, expert_ids=None):
    if self.a.proj is not None:
      y, shortcut = self.a(x, expert_ids)
    else:
      y, shortcut = self.a(x, expert_ids), x
    return self.c(self.b(y, expert_ids), expert_ids) + shortcut

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "strides": self.strides,
            "in_channels": self.in_channels, "groups": self.groups,
            "patch_experts": self.patch_experts}


@keras.saving.register_keras_serializable(package="tfexperts")
class ResNetBlock(keras.layers.Layer):
  """A stage of `num_units` bottleneck units (`unit01`, `unit02`, ...); the first one strides."""

  def __init__(self, num_units, filters, strides, in_channels, groups=32, patch_experts=0,
               **kwargs):
    super().__init__(**kwargs)
    self.num_units, self.filters, self.strides = num_units, filters, strides
    self.in_channels, self.groups, self.patch_experts = in_channels, groups, patch_experts
    self.units = []
    channels = in_channels
    for i in range(num_units):
      self.units.append(BottleneckUnit(filters, strides if i == 0 else 1, channels, groups,
                                       patch_experts, name=f"unit{i + 1:02d}"))
      channels = filters * EXPANSION

  def build(self, input_shape):
    """Creates the units' variables, in order, for inputs of `input_shape`."""
    for unit in self.units:
      unit.build(input_shape)
      input_shape = bit_layers.with_channels(input_shape, self.filters * EXPANSION)

  def call(self, x, expert_ids=None):
    for unit in self.units:
      x = unit(x, expert_ids)
    return x

  def get_config(self):
    return {**super().get_config(), "num_units": self.num_units, "filters": self.filters,
            "strides": self.strides, "in_channels": self.in_channels, "groups": self.groups,
            "patch_experts": self.patch_experts}


def validate_resnet_args(units, width, num_classes, groups, patch_experts=0):
  """Checks ResNetV2 constructor arguments; returns `units` as a tuple. Raises ValueError."""
  if not isinstance(units, (tuple, list)) or len(units) != len(BLOCK_FILTERS) or any(
      isinstance(u, bool) or not isinstance(u, int) or u <= 0 for u in units):
    raise ValueError("`units` must be 4 positive integers, one per block, e.g. (3, 4, 6, 3) for "
                     f"R50. Received: units={units!r}")
  bounds.positive_number("width", width)
  root = ROOT_FILTERS * width
  if abs(root - round(root)) > 1e-9 or round(root) < 1:
    raise ValueError("`width` must make 64 * width a whole number of channels. "
                     f"Received: width={width!r} (64 * width = {root})")
  bounds.positive_int("groups", groups)
  if round(root) % groups:
    raise ValueError(f"`groups` must divide the root width 64 * width = {round(root)}. "
                     f"Received: groups={groups!r}, width={width!r}")
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
    raise ValueError("`num_classes` must be a non-negative integer (0 means no head). "
                     f"Received: num_classes={num_classes!r}")
  if isinstance(patch_experts, bool) or not isinstance(patch_experts, int) or patch_experts < 0:
    raise ValueError("`patch_experts` must be a non-negative integer (0 means a plain model). "
                     f"Received: patch_experts={patch_experts!r}")
  return tuple(units)


@keras.saving.register_keras_serializable(package="tfexperts")
class ResNetV2(keras.Model):
  """BiT ResNet-v2. `call(images)` takes `[b, h, w, 3]` floats in [0, 1] and returns a dict.

  The dict holds `"pre_logits"` (`[b, 2048 * width]`, float32) and, when `num_classes > 0`,
  `"logits"` (`[b, num_classes]`, float32, from a zero-initialised head). The pieces are public so
  expert models can insert adapters between them: `root(images)`, `blocks`, `outputs_from(x)`.

  Args:
    units: units per block, 4 positive ints ((3, 4, 6, 3) = R50).
    width: width multiplier; 64 * width must be a whole number divisible by `groups`.
    num_classes: size of the head; 0 means no head.
    groups: GroupNorm groups (32 in BiT; fewer for tiny test widths).
    patch_experts: 0 for a plain model; n > 0 makes every GroupNorm a `GroupNormBank` of n
      model patches (per-expert scale and bias), and `call` then needs `expert_ids`.
  """

  def __init__(self, units=(3, 4, 6, 3), width=1, num_classes=0, groups=32, patch_experts=0,
               name="resnet", **kwargs):
    super().__init__(name=name, **kwargs)
    self.units_per_block = validate_resnet_args(units, width, num_classes, groups, patch_experts)
    self.width, self.num_classes, self.groups = width, num_classes, groups
    self.patch_experts = patch_experts
    self.root_block = RootBlock(_scaled(ROOT_FILTERS, width), name="root_block")
    self.blocks = []
    channels = _scaled(ROOT_FILTERS, width)
    for b, (num_units, filters, strides) in enumerate(
        zip(self.units_per_block, BLOCK_FILTERS, BLOCK_STRIDES)):
      filters = _scaled(filters, width)
      self.blocks.append(ResNetBlock(num_units, filters, strides, channels, groups, patch_experts,
                                     name=f"block{b + 1}"))
      channels = filters * EXPANSION
    self.feature_dim = channels
    self.group_norm = bit_layers.make_group_norm(groups, patch_experts)
    self.head = None
    if num_classes:
      self.head = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="head")

  @property
  def block_input_channels(self):
    """Channel counts entering each of the 4 blocks (where adapters go): 64,256,512,1024 x width."""
    return tuple(block.in_channels for block in self.blocks)

  def root(self, images):
    """Maps `[b, h, w, 3]` images in [0, 1] (or uint8, see `inputs.prepare`) to the root block's
    output (input of block1)."""
    return self.root_block(inputs.prepare(images) * 2.0 - 1.0)

  def outputs_from(self, x, expert_ids=None):
    """Maps block4's output to `{"pre_logits": ..., "logits": ...}` (logits only with a head)."""
    pre_logits = ops.mean(bit_layers.call_norm(self.group_norm, x, expert_ids, relu=True),
                          axis=(1, 2))
    outputs = {"pre_logits": ops.cast(pre_logits, "float32")}
    if self.head is not None:
      outputs["logits"] = ops.cast(self.head(pre_logits), "float32")
    return outputs

  def call(self, images, expert_ids=None, training=False):
    if self.patch_experts and expert_ids is None:
      raise ValueError(f"Model {self.name!r} holds {self.patch_experts} model patches; "
                       "call it with expert_ids ([batch] ints). Received: expert_ids=None")
    x = self.root(images)
    for block in self.blocks:
      x = block(x, expert_ids)
    return self.outputs_from(x, expert_ids)

  def build(self, input_shape):
    """Creates every variable for images of `input_shape` (e.g. `[None] * 3 + [3]`) from the
    channel counts alone, in the order a call would create them (root, blocks, final GroupNorm,
    head), so seeded initial values are those of a build by a symbolic pass, without its cost
    (seconds per model: every op of the network traced several times)."""
    if not self.built:
      self.root_block.build(tuple(input_shape))
      for block in self.blocks:
        block.build(bit_layers.with_channels(input_shape, block.in_channels))
      self.group_norm.build(bit_layers.with_channels(input_shape, self.feature_dim))
      if self.head is not None:
        self.head.build((input_shape[0], self.feature_dim))
    super().build(input_shape)

  def get_config(self):
    return {"name": self.name, "trainable": self.trainable,
            "units": list(self.units_per_block), "width": self.width,
            "num_classes": self.num_classes, "groups": self.groups,
            "patch_experts": self.patch_experts}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["units"] = tuple(config["units"])
    return set_trainable_after_init(cls, config)


def set_trainable_after_init(cls, config):
  """`cls(**config)` with `trainable` applied after construction.

  Keras 3 models constructed with `trainable=False` stop propagating later `trainable` changes to
  their sublayers (seen with keras 3.15), so the flag is set once the sublayers exist.
  """
  config = dict(config)
  trainable = config.pop("trainable", True)
  model = cls(**config)
  if not trainable:
    model.trainable = False
  return model


def create_model(preset="r50x1", **overrides):
  """Builds a `ResNetV2` from a preset name (see `PRESETS`) with keyword overrides.

  Returns the model, built for `[None, None, None, 3]` images. Raises ValueError naming the preset
  and the known presets when the name is unknown.
  """
  if preset not in PRESETS:
    raise ValueError(f"Unknown model preset {preset!r}. Known presets: {sorted(PRESETS)}."
                     f"{errors.did_you_mean(preset, PRESETS)}")
  model = ResNetV2(**{**PRESETS[preset], **overrides})
  model.build((None, None, None, 3))
  return model
