"""`LoopConfig`, the hyperparameters of one `loop.train` run, and BiT's learning-rate scaling.

Import-free of TensorFlow, so a config is checked (and its learning rate computed) before anything
heavy loads. Every learning rate a user gives (`--base_lr`, `--dat_lr`, the VTAB sweep's grid) is
BiT's rate at batch 512; `learning_rate_at` is the one place it becomes the rate a run trains at.
"""
import dataclasses

from tfexperts import bounds
from tfexperts import defaults

DECAYS = ("step", "cosine")


def learning_rate_at(base_lr, batch_size):
  """BiT's linear scaling: the peak learning rate at global batch `batch_size` of a run whose
  rate at batch 512 is `base_lr` (`base_lr * batch_size / 512`; 0.003 at batch 512)."""
  bounds.positive_number("base_lr", base_lr)
  bounds.positive_int("batch_size", batch_size)
  return base_lr * batch_size / defaults.BASE_BATCH


def check_optimization(config):
  """Checks the optimization settings a training config shares with `LoopConfig` (learning rate,
  momentum, warm-up, decay, regularisation, checkpoint/log/loop cadence, seed) on `config` (a
  `LoopConfig` or `train.config.TrainConfig`). Raises UserError naming a field out of bounds, its
  value and what is valid; returns None."""
  for name in ("checkpoint_every", "log_every", "steps_per_loop"):
    bounds.positive_int(name, getattr(config, name))
  bounds.positive_number("base_lr", config.base_lr)
  for name in ("momentum", "weight_decay", "mixup_alpha"):
    bounds.non_negative_number(name, getattr(config, name))
  bounds.fraction("label_smoothing", config.label_smoothing)
  bounds.non_negative_int("warmup_steps", config.warmup_steps)
  bounds.one_of("decay", config.decay, DECAYS)
  bounds.non_negative_int("seed", config.seed)


@dataclasses.dataclass
class LoopConfig:
  """Hyperparameters of one training run (BiT defaults: lr 0.003 at batch 512, momentum 0.9).

  `base_lr` is the learning rate at batch 512; the run trains at `learning_rate` (scaled to
  `global_batch_size`). Raises UserError naming a field out of bounds, its value and what is
  valid.
  """
  total_steps: int
  global_batch_size: int
  base_lr: float = defaults.BASE_LR
  momentum: float = defaults.MOMENTUM
  warmup_steps: int = 0
  decay: str = "step"
  weight_decay: float = 0.0
  label_smoothing: float = 0.0
  mixup_alpha: float = 0.0
  multi_label: bool = False
  checkpoint_every: int = defaults.CHECKPOINT_EVERY
  log_every: int = defaults.LOG_EVERY
  steps_per_loop: int = 1
  seed: int = 0
  loss_scaling: bool = False  # float16 mixed precision needs dynamic loss scaling

  def __post_init__(self):
    for name in ("total_steps", "global_batch_size"):
      bounds.positive_int(name, getattr(self, name))
    check_optimization(self)
    for name in ("multi_label", "loss_scaling"):
      bounds.one_of(name, getattr(self, name), (False, True))

  @classmethod
  def taking(cls, settings, **fields):
    """A LoopConfig with the value of every field that `settings` (another config, e.g.
    `TrainConfig`, `DatConfig`) has under the same name, then `fields` (the rest, or overrides).
    Raises UserError as the constructor does."""
    shared = {field.name: getattr(settings, field.name) for field in dataclasses.fields(cls)
              if hasattr(settings, field.name)}
    return cls(**{**shared, **fields})

  @property
  def learning_rate(self):
    """The peak learning rate this run trains at (`base_lr` scaled to `global_batch_size`)."""
    return learning_rate_at(self.base_lr, self.global_batch_size)
