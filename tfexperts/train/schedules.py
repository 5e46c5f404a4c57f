"""Learning-rate schedules: BiT's linear warm-up then step decay (or cosine), lr scaled by batch."""
import math

import keras
from keras import ops

from tfexperts import defaults

BIT_BASE_LR = defaults.BASE_LR
BIT_BASE_BATCH = defaults.BASE_BATCH


def scaled_learning_rate(base_lr, batch_size, base_batch=BIT_BASE_BATCH):
  """BiT's linear scaling: `base_lr * batch_size / base_batch` (0.003 at batch 512)."""
  if batch_size <= 0:
    raise ValueError(f"`batch_size` must be positive. Received: batch_size={batch_size!r}")
  return base_lr * batch_size / base_batch


@keras.saving.register_keras_serializable(package="tfexperts")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to `peak_lr` over `warmup_steps`, then step or cosine decay.

  Args:
    peak_lr: learning rate reached at the end of warm-up.
    total_steps: length of the run.
    warmup_steps: steps of linear warm-up (clipped to total_steps).
    decay: "step" (multiply by `decay_factor` at each of `decay_fractions` of total_steps, BiT's
      0.3, 0.6, 0.9) or "cosine" (to 0 at total_steps).
  """

  DECAYS = ("step", "cosine")

  def __init__(self, peak_lr, total_steps, warmup_steps=0, decay="step",
               decay_fractions=(0.3, 0.6, 0.9), decay_factor=0.1):
    if decay not in self.DECAYS:
      raise ValueError(f"Unknown decay {decay!r}. Choose one of {self.DECAYS}.")
    if total_steps <= 0 or warmup_steps < 0:
      raise ValueError("Need total_steps > 0 and warmup_steps >= 0. Received: "
                       f"total_steps={total_steps!r}, warmup_steps={warmup_steps!r}")
    self.peak_lr, self.total_steps = float(peak_lr), int(total_steps)
    self.warmup_steps = int(min(warmup_steps, total_steps))
    self.decay, self.decay_factor = decay, float(decay_factor)
    self.decay_fractions = tuple(float(f) for f in decay_fractions)

  def __call__(self, step):
    step = ops.cast(step, "float32")
    warmup = self.peak_lr * step / max(self.warmup_steps, 1)
    if self.decay == "cosine":
      span = max(self.total_steps - self.warmup_steps, 1)
      progress = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
      decayed = self.peak_lr * 0.5 * (1.0 + ops.cos(math.pi * progress))
    else:
      decayed = ops.convert_to_tensor(self.peak_lr, "float32")
      for fraction in self.decay_fractions:
        decayed = ops.where(step >= fraction * self.total_steps, decayed * self.decay_factor,
                            decayed)
    return ops.where(step < self.warmup_steps, warmup, decayed)

  def get_config(self):
    return {"peak_lr": self.peak_lr, "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps, "decay": self.decay,
            "decay_fractions": self.decay_fractions, "decay_factor": self.decay_factor}
