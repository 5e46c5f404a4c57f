"""The settings of `--selection=dat` (`transfer.dat`), without TensorFlow: configs are built and
checked by the binaries' flag checks, before anything heavy loads."""
import dataclasses
from typing import Optional

from tfexperts import bounds
from tfexperts import defaults


@dataclasses.dataclass
class DatConfig:
  """DAT's upstream fine-tuning: steps at a global batch, BiT's SGD schedule (lr at batch 512).

  `resolution` None trains at the baseline module's `input.resolution`. Raises UserError naming a
  field out of bounds, its value and what is valid.
  """
  steps: int = 1000
  batch_size: int = 512
  base_lr: float = defaults.BASE_LR
  warmup_steps: int = 50
  checkpoint_every: int = defaults.CHECKPOINT_EVERY
  log_every: int = defaults.LOG_EVERY
  resolution: int = None
  seed: int = 0

  def __post_init__(self):
    for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
      bounds.positive_int(name, getattr(self, name))
    bounds.non_negative_int("warmup_steps", self.warmup_steps)
    bounds.positive_int("resolution", self.resolution, allow_none=True)
    bounds.positive_number("base_lr", self.base_lr)
    bounds.non_negative_int("seed", self.seed)


@dataclasses.dataclass
class UpstreamSpec:
  """The baseline's upstream data, for `selection="dat"` (as bin/train_experts names it)."""
  dataset: str
  hierarchy: Optional[str] = None
  data_dir: Optional[str] = None
  split: str = "train"
  image_key: str = "image"
  label_key: str = "label"

  def open(self):
    """The `tfexperts.data.upstream.Upstream` this spec names."""
    from tfexperts.data import offline  # pylint: disable=g-import-not-at-top
    return offline.open_upstream(self.dataset, self.hierarchy, self.data_dir, split=self.split,
                                 image_key=self.image_key, label_key=self.label_key)
