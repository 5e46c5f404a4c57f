"""Preemption (issue 28 item 3): SIGTERM mid-run checkpoints the current step and stops; rerunning
resumes to exactly the weights of an uninterrupted run; a preempted binary exits 75."""
import os
import signal
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests import processes
from tests.train import strategy_worker
from tfexperts import errors
from tfexperts.train import loop

TOTAL_STEPS, SIGTERM_AT_BATCH = 12, 6


def _task(sigterm_at=None):
  """The synthetic tiny-BiT task; with `sigterm_at`, the input pipeline sends this process a real
  SIGTERM (once) when it produces that global batch, as a preempted machine would mid-run."""
  task = strategy_worker.make_task()
  if sigterm_at is None:
    return task
  sent, make_batches = [], task.make_dataset

  def kill(index):
    if int(index) == sigterm_at and not sent:
      sent.append(index)
      os.kill(os.getpid(), signal.SIGTERM)
    return index

  def make_dataset(ctx, per_replica_batch, start_step):
    def hook(index, batch):
      done = tf.py_function(kill, [index], tf.int64)
      with tf.control_dependencies([done]):
        return {k: tf.identity(v) for k, v in batch.items()}
    return make_batches(ctx, per_replica_batch, start_step).enumerate(start_step).map(hook)

  task.make_dataset = make_dataset
  return task


def _config():
  return loop.LoopConfig(total_steps=TOTAL_STEPS, global_batch_size=8, base_lr=0.3,
                         warmup_steps=2, checkpoint_every=100, log_every=100)


def preempt_then_resume(directory):
  """The scenario, run in a child process (`test_sigterm_mid_run...`): an uninterrupted run, a run
  SIGTERMed mid-run, its resumption; asserts what each must show."""
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  straight, _ = loop.train(strategy, _task(), _config(), os.path.join(directory, "straight"))
  straight = [v.numpy() for v in straight.weights]

  before = signal.getsignal(signal.SIGTERM)
  preempted = os.path.join(directory, "preempted")
  with pytest.raises(errors.PreemptedError) as raised:
    loop.train(strategy, _task(sigterm_at=SIGTERM_AT_BATCH), _config(), preempted)
  assert signal.getsignal(signal.SIGTERM) == before  # the default comes back after the run
  stopped = raised.value.step
  # The pipeline reads ahead, so the signal comes while a step <= that batch's trains; the run
  # stops after it. No periodic checkpoint before the end: the one there is the preemption's.
  assert 1 <= stopped <= SIGTERM_AT_BATCH + 1 < TOTAL_STEPS
  assert loop.checkpointed_step(preempted) == stopped
  assert f"step {stopped}/{TOTAL_STEPS}" in str(raised.value) and "rerun" in str(raised.value)

  resumed, history = loop.train(strategy, _task(), _config(), preempted)
  assert history["start_step"] == stopped and history["final_step"] == TOTAL_STEPS
  for want, got in zip(straight, resumed.weights):
    np.testing.assert_array_equal(want, got.numpy())
  print("resumed to identical weights from step", stopped)


def test_sigterm_mid_run_checkpoints_then_resumes_to_identical_weights(tmp_path):
  # In a child process: the signal is real, and if it ever found no handler it would kill the
  # process; here that is a failure showing how the child ended, not a lost test worker.
  program = textwrap.dedent("""
      import faulthandler, sys
      faulthandler.enable()
      from tests.reliability import test_preemption
      test_preemption.preempt_then_resume(sys.argv[1])
      """)
  proc = processes.run_python(program, [str(tmp_path)], check_exit=False)
  ended = (f"killed by signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
           else f"exit {proc.returncode}")
  assert proc.returncode == 0, f"{ended}\n{proc.stdout[-2000:]}\n{proc.stderr[-5000:]}"
  assert "resumed to identical weights from step" in proc.stdout


def test_preempted_binary_exits_75_saying_it_will_resume(tmp_path):
  # A binary (run through the binaries' runner) whose run gets a real SIGTERM mid-step.
  program = textwrap.dedent("""
      import os, signal, sys
      import tensorflow as tf
      from tfexperts.cli import run as run_lib
      from tfexperts.train import preemption
      def main(argv):
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
        with preemption.Watcher(strategy, lambda step: f"ckpt-{step}", "fake", 10) as watcher:
          for step in range(1, 11):
            if step == 4:
              os.kill(os.getpid(), signal.SIGTERM)
            watcher.check(step)
        print("finished")
      sys.modules["__main__"].main = main
      run_lib.run(sys.modules["__main__"])
      """)
  proc = processes.run_python(program, check_exit=False)
  assert proc.returncode == 75, proc.stderr[-3000:]
  assert "finished" not in proc.stdout
  assert ("-c: preempted: [fake] stopped by SIGTERM at step 4/10 after writing the checkpoint "
          "ckpt-4; rerun the same command to resume from step 4.") in proc.stderr
  assert "Traceback" not in proc.stderr
