"""Residual adapter experts: many experts in one model, selected per example by an expert id.

An adapter before block i is `x -> x + A2(A1(x))`, with A1 = GroupNorm-ReLU-Conv1x1 (c to c/2) and
A2 = GroupNorm-ReLU-Conv1x1 (c/2 to c), convolutions without bias, A2's kernel starting at zero so
a new adapter leaves the backbone's function unchanged. Block i then sees
`x_i = F_i(x_{i-1} + a_e(x_{i-1}))` where e is the example's expert id (hard-coded routing).

An `AdapterBank` stacks the parameters of `num_experts` adapters (leading axis = expert) and
gathers each example's rows, so a batch may mix experts and shapes stay static (XLA/TPU friendly).
Per expert and place the cost is `3c + c^2` parameters: 1,385,920 for R50x1 (c = 64, 256, 512,
1024), 5.9% of its 23,500,352.
"""
import keras
from keras import ops

from tfexperts import bounds
from tfexperts.models import bit
from tfexperts.models import layers as bit_layers


def adapter_parameter_count(block_input_channels):
  """Closed-form parameters of one expert's adapters: sum over places of 3c + c^2.

  Takes the channel count entering each block; returns an int (GN scale+bias 2c and c/2, two 1x1
  kernels c*c/2 each, no biases).
  """
  return sum(3 * c + c * c for c in block_input_channels)


@keras.saving.register_keras_serializable(package="tfexperts")
class Conv1x1Bank(keras.layers.Layer):
  """`num_experts` bias-free 1x1 convolutions; `call(x, expert_ids)` applies row e to example i."""

  def __init__(self, num_experts, filters, kernel_initializer="he_normal", **kwargs):
    super().__init__(**kwargs)
    self.num_experts, self.filters = num_experts, filters
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

  def build(self, input_shape):
    self.kernel = self.add_weight(name="kernel", shape=(self.num_experts, input_shape[-1],
                                                        self.filters),
                                  initializer=self.kernel_initializer)

  def call(self, x, expert_ids):
    kernel = bit_layers.gather_rows(self.kernel, expert_ids, x.dtype)
    return ops.einsum("bhwc,bcd->bhwd", x, kernel)

  def get_config(self):
    return {**super().get_config(), "num_experts": self.num_experts, "filters": self.filters,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.saving.register_keras_serializable(package="tfexperts")
class AdapterComponent(keras.layers.Layer):
  """GroupNorm -> ReLU -> Conv1x1 for a bank of experts (`a1` or `a2` of an adapter)."""

  def __init__(self, num_experts, filters, groups, zero_init=False, seed=None, **kwargs):
    super().__init__(**kwargs)
    self.num_experts, self.filters, self.groups = num_experts, filters, groups
    self.zero_init, self.seed = zero_init, seed
    self.group_norm = bit_layers.GroupNormBank(num_experts, groups=groups, name="group_norm")
    initializer = "zeros" if zero_init else keras.initializers.HeNormal(seed)
    self.conv = Conv1x1Bank(num_experts, filters, initializer, name="conv2d")

  def build(self, input_shape):
    """Creates the variables for inputs of `input_shape` (`[..., channels]`) without a call."""
    self.group_norm.build(input_shape)
    self.conv.build(input_shape)

  def call(self, x, expert_ids):
    return self.conv(ops.relu(self.group_norm(x, expert_ids)), expert_ids)

  def get_config(self):
    return {**super().get_config(), "num_experts": self.num_experts, "filters": self.filters,
            "groups": self.groups, "zero_init": self.zero_init, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfexperts")
class AdapterBank(keras.layers.Layer):
  """`num_experts` residual adapters at one place: `call(x, ids) = x + a2(a1(x))` per expert."""

  def __init__(self, num_experts, channels, groups=32, seed=None, **kwargs):
    super().__init__(**kwargs)
    if channels % 2 or (channels // 2) % groups:
      raise ValueError(f"An adapter needs even `channels` whose half is divisible by `groups`. "
                       f"Received: channels={channels!r}, groups={groups!r}")
    self.num_experts, self.channels, self.groups, self.seed = num_experts, channels, groups, seed
    self.a1 = AdapterComponent(num_experts, channels // 2, groups, seed=seed, name="a1")
    self.a2 = AdapterComponent(num_experts, channels, groups, zero_init=True, name="a2")

  def build(self, input_shape):
    """Creates the variables for inputs of `input_shape` (`[..., channels]`) without a call."""
    self.a1.build(input_shape)
    self.a2.build(tuple(input_shape[:-1]) + (self.channels // 2,))

  def call(self, x, expert_ids):
    return x + self.a2(self.a1(x, expert_ids), expert_ids)

  def get_config(self):
    return {**super().get_config(), "num_experts": self.num_experts, "channels": self.channels,
            "groups": self.groups, "seed": self.seed}


def _check_expert_ids(expert_ids, num_experts, name):
  if expert_ids is None:
    if num_experts == 1:
      return None
    raise ValueError(f"Model {name!r} holds {num_experts} experts; call it with expert_ids "
                     "([batch] ints). Received: expert_ids=None")
  return expert_ids


@keras.saving.register_keras_serializable(package="tfexperts")
class AdapterExpertModel(keras.Model):
  """A BiT backbone with an `AdapterBank` before each of its 4 blocks.

  `call(images, expert_ids)` takes `[b, h, w, 3]` images in [0, 1] and `[b]` int expert ids (may be
  omitted when `num_experts == 1`) and returns the backbone's output dict (`pre_logits`, and
  `logits` when the backbone has a head). With `freeze_backbone` (the default) only the adapters
  are trainable: the backbone and its head stay exactly as they were.

  Args:
    backbone: a plain `ResNetV2` (its weights are used as they are, not copied).
    num_experts: adapters per place.
    freeze_backbone: mark the backbone (and head) non-trainable.
  """

  def __init__(self, backbone, num_experts, freeze_backbone=True, name="adapter_experts",
               **kwargs):
    super().__init__(name=name, **kwargs)
    if isinstance(backbone, dict):
      backbone = keras.saving.deserialize_keras_object(backbone)
    if not isinstance(backbone, bit.ResNetV2) or backbone.patch_experts:
      raise ValueError(f"`backbone` must be a plain ResNetV2. Received: backbone={backbone!r}")
    bounds.positive_int("num_experts", num_experts)
    self.backbone, self.num_experts = backbone, num_experts
    self.freeze_backbone = freeze_backbone
    if freeze_backbone:
      backbone.trainable = False
    self.adapters = [AdapterBank(num_experts, c, backbone.groups, name=f"block{i + 1}_adapter")
                     for i, c in enumerate(backbone.block_input_channels)]

  def call(self, images, expert_ids=None, training=False):
    if _check_expert_ids(expert_ids, self.num_experts, self.name) is None:
      expert_ids = ops.zeros((ops.shape(images)[0],), "int32")
    x = self.backbone.root(images)
    for adapter, block in zip(self.adapters, self.backbone.blocks):
      x = block(adapter(x, expert_ids))
    return self.backbone.outputs_from(x)

  def build(self, input_shape):
    """Creates the backbone's and the adapters' variables for images of `input_shape`."""
    if not self.backbone.built:
      self.backbone.build(input_shape)
    if not self.built:
      for adapter, channels in zip(self.adapters, self.backbone.block_input_channels):
        adapter.build(bit_layers.with_channels(input_shape, channels))
    if self.freeze_backbone:  # variables created after `trainable = False` do not inherit it
      self.backbone.trainable = False
    super().build(input_shape)

  def get_config(self):
    return {"name": self.name, "trainable": self.trainable, "num_experts": self.num_experts,
            "freeze_backbone": self.freeze_backbone,
            "backbone": keras.saving.serialize_keras_object(self.backbone)}

  @classmethod
  def from_config(cls, config):
    return bit.set_trainable_after_init(cls, config)

  def expert_variables(self, expert):
    """Returns `{variable path: row}` views of one expert's adapter parameters (for inspection)."""
    self._check_expert(expert)
    return {v.path: v[expert] for a in self.adapters for v in a.weights}

  def _check_expert(self, expert):
    if isinstance(expert, bool) or not isinstance(expert, int) or not 0 <= expert < self.num_experts:
      raise ValueError(f"`expert` must be an int in [0, {self.num_experts}). "
                       f"Received: expert={expert!r}")

  def extract_expert(self, expert):
    """Standalone single-expert model: a copy of the backbone plus expert `expert`'s adapters.

    Returns a new built `AdapterExpertModel` with `num_experts=1` whose outputs equal this bank's
    outputs for `expert_ids == expert`; nothing is shared with this model.
    """
    self._check_expert(expert)
    backbone = clone_resnet(self.backbone)
    single = AdapterExpertModel(backbone, 1, freeze_backbone=self.freeze_backbone,
                                name=f"{self.name}_expert{expert}")
    single.build((None, None, None, 3))
    for source, target in zip(self.adapters, single.adapters):
      for sv, tv in zip(source.weights, target.weights):
        tv.assign(sv[expert:expert + 1])
    return single


class AdaptedExpert(keras.Model):
  """A single expert (plain `ResNetV2` or single-expert `AdapterExpertModel`) with one more,
  fresh residual adapter (`AdapterBank` of one expert) before each of its blocks: downstream
  adapter fine-tuning.

  `call(images)` returns the expert's output dict; block i sees `new_i(own_i(x))`, `own_i` being
  the expert's own adapter (adapter experts) and `new_i` starting as the identity (zero-initialised
  second conv), so the model first computes exactly what the expert computes. Variables are
  created at construction, by shape (no pass over the network). The first convs' initial values
  come from `seed` (block i: `seed + i`), so two models of one expert start equal.
  """

  def __init__(self, expert, seed=0, name="adapted_expert", **kwargs):
    super().__init__(name=name, **kwargs)
    if not isinstance(expert, (bit.ResNetV2, AdapterExpertModel)) or getattr(
        expert, "num_experts", 1) != 1 or getattr(expert, "patch_experts", 0):
      raise ValueError("`expert` must be a plain ResNetV2 or a single-expert "
                       f"AdapterExpertModel. Received: expert={expert!r}")
    self.expert = expert
    resnet = self.resnet
    self.task_adapters = [AdapterBank(1, c, resnet.groups, seed=seed + i,
                                      name=f"block{i + 1}_task_adapter")
                          for i, c in enumerate(resnet.block_input_channels)]
    for adapter, channels in zip(self.task_adapters, resnet.block_input_channels):
      adapter.build((None, None, None, channels))
    self.built = True

  @property
  def resnet(self):
    """The expert's `ResNetV2` (its backbone, for an adapter expert)."""
    return self.expert.backbone if isinstance(self.expert, AdapterExpertModel) else self.expert

  def call(self, images, training=False):
    resnet = self.resnet
    ids = ops.zeros((ops.shape(images)[0],), "int32")
    own = self.expert.adapters if resnet is not self.expert else [None] * len(resnet.blocks)
    x = resnet.root(images)
    for own_adapter, adapter, block in zip(own, self.task_adapters, resnet.blocks):
      if own_adapter is not None:
        x = own_adapter(x, ids)
      x = block(adapter(x, ids))
    return resnet.outputs_from(x)


def clone_resnet(model, **overrides):
  """A new built `ResNetV2` with `model`'s config (plus `overrides`) and a copy of its weights."""
  clone = bit.ResNetV2.from_config({**model.get_config(), **overrides})
  clone.build((None, None, None, 3))
  clone.set_weights(model.get_weights())
  return clone


def create_adapter_experts(baseline, num_experts):
  """Adapter bank over a copy of `baseline` (a built plain `ResNetV2`); returns it built.

  The new model's outputs equal the baseline's for every expert id until adapters are trained.
  """
  model = AdapterExpertModel(clone_resnet(baseline), num_experts)
  model.build((None, None, None, 3))
  return model
