"""`TrainConfig`: every setting of a training run (bin/train_experts' flags, same names and
defaults). Import-free of TensorFlow, so the binary takes its flag defaults from here."""
import dataclasses
from typing import List, Optional

from tfexperts import artifacts
from tfexperts import bounds
from tfexperts import defaults
from tfexperts.models import presets
from tfexperts.train import loop_config
from tfexperts.train import strategy as strategy_lib

MIXED_PRECISION = ("none", "auto", "bfloat16", "float16")
SLICES = ("semantic", "random")
DECAYS = loop_config.DECAYS


@dataclasses.dataclass
class TrainConfig:
  """Settings of `tfexperts.train.workdir.train` (see bin/train_experts --help for each)."""
  workdir: Optional[str] = None
  stage: List[str] = dataclasses.field(default_factory=lambda: ["baseline"])
  tpu: Optional[str] = None
  tpu_timeout: float = 30.0
  strategy: str = "auto"
  dataset: str = "tfexperts_shapes/demo"
  data_dir: Optional[str] = None
  split: str = "train"
  hierarchy: Optional[str] = None
  image_key: str = "image"
  label_key: str = "label"
  prepare_offline: bool = True
  experts: List[str] = dataclasses.field(default_factory=list)
  num_experts: int = 5
  min_count: int = 1
  slices: str = "semantic"
  model: str = "r50x1"
  width: Optional[float] = None
  groups: Optional[int] = None
  resolution: int = 64
  preprocess: str = "resize({res})|flip_lr|value_range(0, 1)"
  batch_size: int = 512
  baseline_steps: int = 1000
  expert_steps: int = 500
  base_lr: float = defaults.BASE_LR
  momentum: float = defaults.MOMENTUM
  warmup_steps: int = 50
  decay: str = "step"
  weight_decay: float = 0.0
  label_smoothing: float = 0.0
  mixup_alpha: float = 0.0
  mixed_precision: str = "none"
  checkpoint_every: int = defaults.CHECKPOINT_EVERY
  log_every: int = defaults.LOG_EVERY
  steps_per_loop: int = 1
  seed: int = 0
  deterministic: bool = False

  def __post_init__(self):
    """Checks every setting, so an API caller gets the bounds the binary's flags enforce."""
    bounds.all_of("stage", self.stage, artifacts.STAGES)
    bounds.positive_number("tpu_timeout", self.tpu_timeout)
    bounds.one_of("strategy", self.strategy, strategy_lib.STRATEGIES)
    bounds.one_of("model", self.model, list(presets.PRESETS))
    bounds.one_of("slices", self.slices, SLICES)
    bounds.one_of("mixed_precision", self.mixed_precision, MIXED_PRECISION)
    bounds.positive_number("width", self.width, allow_none=True)
    bounds.positive_int("groups", self.groups, allow_none=True)
    for name in ("num_experts", "min_count", "resolution", "batch_size", "baseline_steps",
                 "expert_steps"):
      bounds.positive_int(name, getattr(self, name))
    loop_config.check_optimization(self)

  def settings(self):
    """The run's settings as recorded in the workdir's config.json (unset ones left out)."""
    return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

  def flag_lines(self):
    """The settings as `--name=value` lines (flags.txt, usable as --flagfile)."""
    lines = []
    for name, value in self.settings().items():
      if isinstance(value, bool):
        lines.append(f"--{name}" if value else f"--no{name}")
      elif isinstance(value, (list, tuple)):
        lines.append(f"--{name}={','.join(str(v) for v in value)}")
      else:
        lines.append(f"--{name}={value}")
    return lines


def default(name):
  """The default of TrainConfig field `name` (the binary's flag default)."""
  field = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return field.default
