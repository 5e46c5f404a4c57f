"""A BiT model's architecture as data, and the model it describes rebuilt from it.

`Architecture` is the `architecture` part of a hub module's metadata (`tfexperts.hub.metadata`):
what `describe` reads off a built model, and all `rebuild` needs to make that model again (with a
head of a given size) so a module's saved variables can be assigned to it in order. This is the
one place a model is made from a description rather than from a preset; every layer name and
variable path is the model code's own (`bit`, `adapters`).
"""
import dataclasses
from typing import Optional

from tfexperts import artifacts
from tfexperts.models import adapters
from tfexperts.models import bit

FAMILY = "BiT ResNet-v2"


@dataclasses.dataclass(frozen=True)
class Architecture(artifacts.StrictJson):
  """A BiT ResNet-v2 as data (hashable: one model per distinct architecture can be shared).

  Attributes:
    family: FAMILY.
    preset: the `bit.PRESETS` name it was created from, when known (informative only).
    units: units per block (4 ints).
    width: width multiplier.
    groups: GroupNorm groups.
    adapters: whether residual adapters (one expert) sit before each block.
    patch_experts: model patches per GroupNorm (0: a plain model; n > 0: a patch bank).
  """
  family: str
  preset: Optional[str]
  units: tuple
  width: float
  groups: int
  adapters: bool
  patch_experts: int

  def __post_init__(self):
    if self.family != FAMILY:
      raise artifacts.RecordError(f"architecture family must be {FAMILY!r}. Received: "
                                  f"{self.family!r}")
    if not isinstance(self.units, (list, tuple)):
      raise artifacts.RecordError(f"architecture units must be a list of 4 ints. Received: "
                                  f"{self.units!r}")
    object.__setattr__(self, "units", tuple(int(u) for u in self.units))

  def to_json(self):
    """The JSON-ready dict (`units` as a list)."""
    return {**dataclasses.asdict(self), "units": list(self.units)}


def describe(model, preset=None):
  """The `Architecture` of a built `bit.ResNetV2` or `adapters.AdapterExpertModel` (`preset`:
  its preset name when known)."""
  backbone = getattr(model, "backbone", model)
  return Architecture(family=FAMILY, preset=preset, units=tuple(backbone.units_per_block),
                      width=backbone.width, groups=backbone.groups,
                      adapters=backbone is not model, patch_experts=backbone.patch_experts)


def rebuild(architecture, num_classes=0, variable_paths=True):
  """A fresh, built model of `architecture` with a head of `num_classes` (0: none).

  Takes an `Architecture` of a single model (no patch bank) and returns a `bit.ResNetV2`, or an
  `adapters.AdapterExpertModel` of one expert around one when `architecture.adapters`, every
  layer trainable. Its variables come in the order the model lists them, which is the order a
  hub module saves them in. With `variable_paths=False` a plain model's variables are created
  from each layer's input channel count instead of a symbolic pass (`_build_from_channels`:
  much faster at R50 depth, but their paths lack the parent layers' names, so training
  checkpoints, which key variables by path, cannot use it). Raises ValueError for a patch bank.
  """
  if not isinstance(architecture, Architecture):
    raise TypeError(f"`architecture` must be an Architecture. Received: "
                    f"{type(architecture).__name__}")
  if architecture.patch_experts:
    raise ValueError(f"A patch bank ({architecture.patch_experts} patch experts) cannot be "
                     "rebuilt as a single model; extract one expert first.")
  model = bit.ResNetV2(units=architecture.units, width=architecture.width,
                       num_classes=num_classes, groups=architecture.groups)
  if architecture.adapters:
    model = adapters.AdapterExpertModel(model, 1, freeze_backbone=False)
    model.build((None, None, None, 3))
  elif variable_paths:
    model.build((None, None, None, 3))
  else:
    _build_from_channels(model)
  return model


def _shape(channels):
  return (None, None, None, channels)


def _build_from_channels(model):
  """Creates a plain `bit.ResNetV2`'s variables from each layer's input channel count alone.

  `model.build` creates them by a symbolic pass over the whole model (~20k graph ops, 5-8 s for
  an R50 on this 2-core machine, more than the rest of a module's load). Variables come out in
  the same order and shapes (Keras orders them by layer, not by creation); their paths lack the
  parent layers' names.
  """
  def mark_built(*layers):
    for layer in layers:
      if layer is not None:
        layer.built = True

  root = model.root_block
  root.conv.build(_shape(3))
  mark_built(root.pad_conv, root.pad_pool, root.pool, root)
  for block in model.blocks:
    for unit in block.units:
      for conv, channels in ((unit.a, unit.in_channels), (unit.b, unit.filters),
                             (unit.c, unit.filters)):
        conv.group_norm.build(_shape(channels))
        conv.conv.build(_shape(channels))
        if conv.proj is not None:
          conv.proj.conv.build(_shape(channels))
        mark_built(conv.pad, conv.proj, conv)
      mark_built(unit)
    mark_built(block)
  model.group_norm.build(_shape(model.feature_dim))
  if model.head is not None:
    model.head.build((None, model.feature_dim))
  mark_built(model)
