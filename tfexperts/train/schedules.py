"""Learning-rate schedules: BiT's linear warm-up then step decay (or cosine); the peak rate is
scaled to the batch by `loop_config.learning_rate_at`."""
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops


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
    self.decay, self.decay_factor = decay, float(decay_factor)
    self.decay_fractions = tuple(float(f) for f in decay_fractions)
    self._set_run(peak_lr, total_steps, warmup_steps)

  def _set_run(self, peak_lr, total_steps, warmup_steps):
    if total_steps <= 0 or warmup_steps < 0:
      raise ValueError("Need total_steps > 0 and warmup_steps >= 0. Received: "
                       f"total_steps={total_steps!r}, warmup_steps={warmup_steps!r}")
    self.peak_lr, self.total_steps = float(peak_lr), int(total_steps)
    self.warmup_steps = int(min(warmup_steps, total_steps))

  def _terms(self):
    """`(peak_lr, warmup_steps, warmup_divisor, cosine_span, decay_boundaries)` of `__call__`,
    as float32 values exactly as the formula compares and divides by."""
    as_float32 = lambda value: float(np.float32(value))
    return (as_float32(self.peak_lr), float(self.warmup_steps), float(max(self.warmup_steps, 1)),
            float(max(self.total_steps - self.warmup_steps, 1)),
            tuple(as_float32(f * self.total_steps) for f in self.decay_fractions))

  def __call__(self, step):
    step = ops.cast(step, "float32")
    peak, warmup_steps, warmup_divisor, span, boundaries = self._terms()
    warmup = peak * step / warmup_divisor
    if self.decay == "cosine":
      progress = ops.clip((step - warmup_steps) / span, 0.0, 1.0)
      decayed = peak * 0.5 * (1.0 + ops.cos(math.pi * progress))
    else:
      decayed = ops.convert_to_tensor(peak, "float32")
      for boundary in boundaries:
        decayed = ops.where(step >= boundary, decayed * self.decay_factor, decayed)
    return ops.where(step < warmup_steps, warmup, decayed)

  def get_config(self):
    return {"peak_lr": self.peak_lr, "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps, "decay": self.decay,
            "decay_fractions": self.decay_fractions, "decay_factor": self.decay_factor}


class RetargetableWarmupDecay(WarmupDecay):
  """`WarmupDecay` whose peak, length and warm-up live in variables.

  `retarget` gives it another run's numbers without retracing a `tf.function` that calls it, so a
  training loop can reuse its traced step for the next run of a sweep. Its values equal a new
  `WarmupDecay` of the same arguments at every step, to the bit. Create it under the distribution
  strategy's scope, like the model's variables.
  """

  def __init__(self, peak_lr, total_steps, warmup_steps=0, decay="step",
               decay_fractions=(0.3, 0.6, 0.9), decay_factor=0.1):
    super().__init__(peak_lr, total_steps, warmup_steps, decay, decay_fractions, decay_factor)
    initial = WarmupDecay._terms(self)
    self._variables = [tf.Variable(value, dtype=tf.float32, trainable=False, name=f"lr_{name}")
                       for name, value in zip(("peak", "warmup", "divisor", "span"), initial[:4])]
    self._boundaries = tf.Variable(list(initial[4]) or [0.0], dtype=tf.float32, trainable=False,
                                   name="lr_boundaries")

  def retarget(self, peak_lr, total_steps, warmup_steps=0):
    """Sets the schedule to `WarmupDecay(peak_lr, total_steps, warmup_steps, <same decay>)`."""
    self._set_run(peak_lr, total_steps, warmup_steps)
    values = WarmupDecay._terms(self)
    for variable, value in zip(self._variables, values[:4]):
      variable.assign(value)
    self._boundaries.assign(list(values[4]) or [0.0])

  def _terms(self):
    boundaries = [self._boundaries[i] for i in range(len(self.decay_fractions))]
    return (*self._variables, boundaries)
