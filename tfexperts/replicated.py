"""A function over every example of a finite dataset under a `tf.distribute` strategy, in order.

Evaluation and feature extraction run where training runs (TPU cores, GPUs, workers). Examples are
numbered, grouped into full global batches (the last one padded with examples numbered -1, so
shapes stay static on TPUs and every replica gets the same number of examples), split over the
replicas, and the outputs gathered to every worker and put back in dataset order by number. The
numbers are checked to be exactly 0..n-1: every example is counted once, never dropped or doubled.
"""
import functools

import numpy as np
import tensorflow as tf

PADDING = -1


def _zeros(spec):
  if not spec.shape.is_fully_defined():
    raise ValueError("Distributed evaluation pads the last batch and needs examples of static "
                     f"shape (e.g. images resized to one size). Received an element of shape "
                     f"{spec.shape} ({spec.dtype.name}).")
  return tf.zeros(spec.shape, spec.dtype)


def padded_batches(examples, global_batch_size):
  """Numbered, full batches of an unbatched dataset.

  Args:
    examples: a finite `tf.data.Dataset` of single examples (nested tensors of static shape).
    global_batch_size: examples per batch.

  Returns:
    A dataset of `(numbers [global_batch_size] int64, batched examples)`; padding examples (all
    zeros) in the last batch are numbered `PADDING`. There are ceil(n / global_batch_size)
    batches for n examples.
  """
  if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int) or (
      global_batch_size <= 0):
    raise ValueError(f"`global_batch_size` must be a positive integer. Received: "
                     f"{global_batch_size!r}")
  padding = tf.nest.map_structure(_zeros, examples.element_spec)
  padding = tf.data.Dataset.from_tensors((tf.constant(PADDING, tf.int64), padding))
  numbered = examples.enumerate()
  return numbered.concatenate(padding.repeat(global_batch_size - 1)).batch(
      global_batch_size, drop_remainder=True)


def _gathered_step(strategy, fn, numbers, batch):
  def replica_fn(replica_numbers, replica_batch):
    return replica_numbers, fn(replica_batch)

  outputs = strategy.run(replica_fn, args=(numbers, batch))
  return tf.nest.map_structure(lambda value: strategy.gather(value, axis=0), outputs)


class OrderedStep:
  """The traced step of `ordered_outputs` for one `fn` under one strategy, reusable across calls.

  Building it once per model (e.g. for every evaluation of a model reused across fine-tuning
  runs) traces it once per input shape instead of once per call.
  """

  def __init__(self, strategy, fn):
    """Takes a `tf.distribute.Strategy` (None: the default one) and the per-replica `fn`."""
    self.strategy = strategy or tf.distribute.get_strategy()
    self.fn = fn
    # A partial has no __code__, so TensorFlow's frequent-retracing detector keys on this step
    # alone rather than on the code every step shares (which made each new step count as a
    # retrace of the last one). No autograph: `fn` needs none, and converting it (a model, restored
    # hub functions) costs seconds per trace.
    self._step = tf.function(functools.partial(_gathered_step, self.strategy, fn),
                             autograph=False)

  def __call__(self, numbers, batch):
    return self._step(numbers, batch)


def ordered_outputs(strategy, fn, examples, global_batch_size, num_examples=None,
                    on_batch=None):
  """Runs `fn` on every example of `examples` under `strategy`; returns the outputs in order.

  Args:
    strategy: a `tf.distribute.Strategy` (None: the default strategy). Variables `fn` reads should
      have been created under its scope.
    fn: per-replica function `batch of examples -> nested [b, ...] tensors`; `b` may be any size;
      or an `OrderedStep` built for it under the same strategy (reused, not traced again).
    examples: a finite `tf.data.Dataset` of single examples with static shapes.
    global_batch_size: examples per step over all replicas, rounded up to a multiple of them.
    num_examples: when given, the number of examples the dataset must hold.
    on_batch: optional callable receiving the number of real examples of each step.

  Returns:
    `fn`'s outputs (same nesting) as numpy arrays `[n, ...]` in dataset order, with the padding
    removed. Raises ValueError when the dataset is not counted exactly once (or differs from
    `num_examples`).
  """
  strategy = strategy or tf.distribute.get_strategy()
  if isinstance(fn, OrderedStep):
    if fn.strategy is not strategy:
      raise ValueError(f"The OrderedStep was built for {fn.strategy!r}; this call runs under "
                       f"{strategy!r}.")
    step = fn
  else:
    step = OrderedStep(strategy, fn)
  replicas = strategy.num_replicas_in_sync
  global_batch_size = -(-global_batch_size // replicas) * replicas
  batches = padded_batches(examples, global_batch_size)
  options = tf.data.Options()
  # Every worker reads the (small) dataset and takes its part of each batch: file sharding would
  # need at least one file per worker.
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  distributed = strategy.experimental_distribute_dataset(batches.with_options(options))

  numbers, outputs = [], []
  for batch_numbers, batch in distributed:
    gathered_numbers, gathered = step(batch_numbers, batch)
    gathered_numbers = gathered_numbers.numpy()
    numbers.append(gathered_numbers)
    outputs.append(tf.nest.map_structure(lambda t: t.numpy(), gathered))
    if on_batch is not None:
      on_batch(int((gathered_numbers != PADDING).sum()))
  if not numbers:
    raise ValueError("The dataset to evaluate yielded no examples.")
  numbers = np.concatenate(numbers)
  real = numbers != PADDING
  order = np.argsort(numbers[real], kind="stable")
  count = int(real.sum())
  if not np.array_equal(numbers[real][order], np.arange(count)):
    raise ValueError(f"Distributed evaluation did not see every example exactly once: {count} "
                     f"outputs for example numbers {np.unique(numbers[real]).size} distinct.")
  if num_examples is not None and count != num_examples:
    raise ValueError(f"Distributed evaluation counted {count} examples; the dataset has "
                     f"{num_examples}.")
  return tf.nest.map_structure(lambda *parts: np.concatenate(parts)[real][order], *outputs)
