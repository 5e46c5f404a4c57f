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


def rebuild(architecture, num_classes=0):
  """A fresh, built model of `architecture` with a head of `num_classes` (0: none).

  Takes an `Architecture` of a single model (no patch bank) and returns a `bit.ResNetV2`, or an
  `adapters.AdapterExpertModel` of one expert around one when `architecture.adapters`, every
  layer trainable. Its variables come in the order the model lists them, which is the order a
  hub module saves them in. Raises ValueError for a patch bank.
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
  return model

