"""Preemption: on SIGTERM a run writes a checkpoint at its current step and stops.

TPU VMs and spot GPU machines send SIGTERM shortly before they stop. While a `Watcher` is open
(`loop.train` opens one per run), that signal no longer kills the process: after the step in
progress, the run saves a checkpoint at the current step (through the `save(step)` it was given)
and `check` raises `errors.PreemptedError`; the binaries then exit with status 75 and rerunning
the same command resumes from that checkpoint.

Two mechanisms:
* TensorFlow's `tf.distribute.experimental.PreemptionCheckpointHandler` where it supports the
  strategy and platform: MultiWorkerMirroredStrategy (it agrees across workers on the step to save
  at, so every worker saves the same step) and TPUStrategy on platforms where TensorFlow can see the
  preemption notice. On GCE TPU and CPU VMs it does nothing (TensorFlow says so), and it raises
  NotImplementedError for other set-ups: there, and for one device and MirroredStrategy,
* a plain SIGTERM handler sets a flag that `check` reads after every call of the training step
  (with several workers the flag is combined over all of them, so they stop at the same step).
Signal handlers can only be installed from the main thread; elsewhere SIGTERM keeps its default.
"""
import signal
import tempfile
import threading

import tensorflow as tf
from absl import logging

from tfexperts import errors

try:  # private: tells the platforms where TensorFlow's handler does nothing
  from tensorflow.python.distribute.failure_handling import failure_handling_util
except ImportError:
  failure_handling_util = None

# strategy -> PreemptionCheckpointHandler: TensorFlow's handler keeps cluster-wide keys in the
# coordination service that can be set once per process, so one handler serves every run.
_HANDLERS = {}
_ACTIVE = []  # the open Watcher the shared handler saves for


def _is_multi_worker(strategy):
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
      strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def _handler_supported(strategy):
  """Whether TensorFlow's handler does something for `strategy` on this platform."""
  if not isinstance(strategy, (tf.distribute.MultiWorkerMirroredStrategy,
                               tf.distribute.TPUStrategy)):
    return False
  if failure_handling_util is None:
    return True
  # TensorFlow's own platform probe (it asks the GCE metadata server, 5 s at most).
  platform = failure_handling_util.detect_platform()
  return platform not in (failure_handling_util.PlatformDevice.GCE_TPU,
                          failure_handling_util.PlatformDevice.GCE_CPU)


def _save_for_active(step):
  return _ACTIVE[-1].save_now(step)


def _exit_for_active():
  _ACTIVE[-1].handler_exited = True


def _tensorflow_handler(strategy):
  """The process's `PreemptionCheckpointHandler` for `strategy`, or None where unsupported."""
  if strategy in _HANDLERS:
    return _HANDLERS[strategy]
  handler = None
  if _handler_supported(strategy):
    config = tf.distribute.experimental.TerminationConfig(exit_fn=_exit_for_active,
                                                          save_fn=_save_for_active)
    try:
      # Its own checkpoint is empty (runs save theirs through save_fn), in a fresh local
      # directory, so it restores nothing over what the run restored.
      handler = tf.distribute.experimental.PreemptionCheckpointHandler(
          strategy.cluster_resolver, tf.train.Checkpoint(),
          tempfile.mkdtemp(prefix="tfexperts-preemption-"), termination_config=config)
    except NotImplementedError as e:
      logging.info("PreemptionCheckpointHandler unsupported here (%s); plain SIGTERM handler.", e)
  _HANDLERS[strategy] = handler
  return handler


class Watcher:
  """Watches for SIGTERM during one run; a context manager.

  Args:
    strategy: the run's `tf.distribute.Strategy`.
    save: `step -> checkpoint path`, writes (or returns the already written) checkpoint at `step`.
    name: the run's name for messages (stage or sweep point).
    total_steps: the run's length, for messages.
  """

  def __init__(self, strategy, save, name, total_steps):
    self.strategy, self.save, self.name, self.total_steps = strategy, save, name, total_steps
    self.handler = None
    self.handler_exited = False
    self.requested = False
    self._step = None
    self._saved = None
    self._previous = None
    self._installed = False

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self
    if _is_multi_worker(self.strategy) or isinstance(self.strategy, tf.distribute.TPUStrategy):
      self.handler = _tensorflow_handler(self.strategy)
    if self.handler is None:  # (TensorFlow's handler installed its own, once per process)
      self._previous = signal.getsignal(signal.SIGTERM)
      signal.signal(signal.SIGTERM, self._on_sigterm)
      self._installed = True
    _ACTIVE.append(self)
    return self

  def __exit__(self, *exc_info):
    if self in _ACTIVE:
      _ACTIVE.remove(self)
    if self._installed:
      signal.signal(signal.SIGTERM, self._previous)
      self._installed = False
    return False

  def _on_sigterm(self, signum, frame):
    del signum, frame
    self.requested = True

  def save_now(self, step):
    """Writes the checkpoint at `step` (once); returns its path."""
    if self._saved is None or self._saved[0] != step:
      self._saved = (step, self.save(step))
    return self._saved[1]

  def _stop_requested(self):
    if self.handler is not None:
      self.handler.save_checkpoint_if_preempted(self._step)
      return self.handler_exited
    requested = self.requested
    if _is_multi_worker(self.strategy):  # stop together: any worker's SIGTERM stops all
      flags = self.strategy.run(lambda: tf.constant(int(requested), tf.int32))
      requested = int(self.strategy.reduce(tf.distribute.ReduceOp.SUM, flags, axis=None)) > 0
    return requested

  def check(self, step):
    """Called after every training call at `step`; on SIGTERM saves and raises PreemptedError."""
    self._step = step
    if not self._stop_requested():
      return
    path = self.save_now(step)
    raise errors.PreemptedError(
        f"[{self.name}] stopped by SIGTERM at step {step}/{self.total_steps} after writing the "
        f"checkpoint {path}; rerun the same command to resume from step {step}.",
        run=self.name, step=step, checkpoint=path)
