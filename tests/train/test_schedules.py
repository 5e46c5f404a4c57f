"""Learning-rate schedules: a retargeted schedule equals a new one, bit for bit, without retracing."""
import numpy as np
import pytest
import tensorflow as tf

from tfexperts.train import schedules

RUNS = [(0.3 * 32 / 512, 100, 10), (0.1 * 32 / 512, 100, 10), (0.01, 37, 0), (0.003, 1000, 250),
        (1e-4, 3, 5)]


STEPS = tf.range(1002)  # every run's steps and past its end, one shape for every call


def _values(schedule):
  return schedule(STEPS).numpy()


@pytest.mark.parametrize("decay", schedules.WarmupDecay.DECAYS)
def test_retargeted_schedule_equals_a_new_one_in_one_trace(decay):
  retargetable = schedules.RetargetableWarmupDecay(*RUNS[0], decay=decay)
  traced = tf.function(lambda steps: retargetable(steps))
  for peak_lr, total, warmup in RUNS:
    retargetable.retarget(peak_lr, total, warmup)
    want = _values(schedules.WarmupDecay(peak_lr, total, warmup, decay))
    got = traced(STEPS).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_values(retargetable), want)  # eagerly too
  assert traced.experimental_get_tracing_count() == 1


def test_step_decay_boundaries_and_warmup_values():
  schedule = schedules.RetargetableWarmupDecay(0.1, 10, 2)
  schedule.retarget(0.2, 20, 4)
  values = _values(schedule)
  np.testing.assert_allclose(values[:4], [0.0, 0.05, 0.1, 0.15], rtol=1e-6)
  np.testing.assert_allclose(values[[4, 5, 6, 12, 18, 20]], [0.2, 0.2, 0.02, 0.002, 0.0002, 0.0002],
                             rtol=1e-5)


def test_retarget_checks_its_arguments():
  schedule = schedules.RetargetableWarmupDecay(0.1, 10)
  with pytest.raises(ValueError, match="total_steps=0"):
    schedule.retarget(0.1, 0)
