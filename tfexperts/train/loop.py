"""A resumable custom training loop under any `tf.distribute` strategy.

One run trains one model for `total_steps` steps of `global_batch_size` examples with SGD +
momentum, BiT's warm-up and decay schedule, optional weight decay, label smoothing and mixup.
Checkpoints (model, optimizer, step) are written every `checkpoint_every` steps and at the end; the
data position is the step itself: the input function is asked for the stream that starts at the
restored step, so a killed run restarted with the same settings continues exactly where its last
checkpoint was. `resumed_input` turns that step into the input pipeline's position: what was
consumed is skipped on the encoded records, before any image is decoded. A run whose checkpoint
already holds `total_steps` is not retrained.

Divergence: a non-finite loss at any step stops the run after the training call in progress
(at most `steps_per_loop` steps, never more than one logging interval) with `errors.DivergedError`
naming the run, the first non-finite step and its learning rate. Weights are checked to be finite
before every checkpoint, so the last finite checkpoint is never replaced by non-finite weights and
no non-finite model is returned. Preemption: on SIGTERM the run checkpoints at its current step
and raises `errors.PreemptedError` (see `preemption`).
"""
import dataclasses
import os
import tempfile
import time
from typing import Callable, Optional

import keras
import tensorflow as tf

from tfexperts import errors
from tfexperts import fileio
from tfexperts.models import finite
from tfexperts.train import loop_config
from tfexperts.train import preemption
from tfexperts.train import schedules
from tfexperts.train import strategy as strategy_lib


LoopConfig = loop_config.LoopConfig


@dataclasses.dataclass
class TrainTask:
  """What one run trains.

  Attributes:
    name: shown in progress lines and summaries.
    num_classes: width of the logits (and of multi-hot labels when multi-label).
    make_model: called under the strategy's scope; returns a built Keras model.
    make_dataset: `(input_context, per_replica_batch_size, start_step) -> tf.data.Dataset` of
      batches `{"image": [b,h,w,3] float32 in [0,1], "label": [b] int or [b,C] multi-hot, ...}`,
      infinite, deterministic, beginning at batch number `start_step` of this replica's stream;
      normally `pipeline.finish(..., **resumed_input(ctx, per_replica_batch_size, start_step))`.
    forward: `(model, batch) -> [b, num_classes] float32 logits`.
    decayed_tensors: `model -> list of tensors` that weight decay applies to (default: every
      trainable kernel). Banks return only the rows of the expert being trained.
  """
  name: str
  num_classes: int
  make_model: Callable[[], keras.Model]
  make_dataset: Callable[[Optional[tf.distribute.InputContext], int, int], tf.data.Dataset]
  forward: Callable[[keras.Model, dict], tf.Tensor]
  decayed_tensors: Optional[Callable[[keras.Model], list]] = None


def resumed_input(input_context, per_replica_batch_size, start_step):
  """Where one input pipeline's stream begins when a run resumes at `start_step`.

  Every run reads one shared, seeded example stream in global batches of
  `per_replica_batch_size * num_replicas_in_sync` examples; input pipeline `i` of `n` reads the
  per-replica batches `i, i + n, ...` of it. After `start_step` steps, exactly the first
  `start_step` global batches were consumed, whatever the number of pipelines, so they are
  skipped as encoded records (nothing is decoded again) and the pipeline's share is then
  picked by batch position, also before decoding.

  Args:
    input_context: the `tf.distribute.InputContext` (None: one pipeline, one replica).
    per_replica_batch_size: examples per replica and step.
    start_step: the step the run resumes at (0 for a fresh run).

  Returns:
    Keyword arguments for `tfexperts.data.pipeline.finish` (and the dataset functions that
    pass them on, e.g. `Task.load`): `batch_size`, `drop_remainder`, `skip`, `shard`.
  """
  for name, value in (("per_replica_batch_size", per_replica_batch_size),
                      ("start_step", start_step)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f"`{name}` must be a non-negative integer. Received: {name}={value!r}")
  replicas, pipelines, index = 1, 1, 0
  if input_context is not None:
    replicas, pipelines = input_context.num_replicas_in_sync, input_context.num_input_pipelines
    index = input_context.input_pipeline_id
  return {"batch_size": per_replica_batch_size, "drop_remainder": True,
          "skip": start_step * per_replica_batch_size * replicas, "shard": (pipelines, index)}


def model_variables(model):
  """`{key: variable}` of every weight of `model`, the model's part of a checkpoint.

  Keras 3 layers held in Python lists (a ResNet's blocks, a bank's adapters) are not trackable
  children for `tf.train.Checkpoint`, so checkpointing the model object would silently miss
  them; an explicit dict of all its variables does not. Keys are variable paths below the
  model's own name (Keras numbers the names of unnamed models made in one process, which must
  not change a checkpoint's keys); a path that repeats (a `TFSMLayer` names variables after the
  SavedModel's, which may coincide) gets its occurrence number appended, in the model's
  deterministic variable order.
  """
  variables, seen = {}, {}
  prefix = model.name + "/"
  for variable in model.weights:
    path = variable.path[len(prefix):] if variable.path.startswith(prefix) else variable.path
    count = seen.get(path, 0)
    seen[path] = count + 1
    variables[path if count == 0 else f"{path}#{count}"] = variable
  return variables


def restore_model(model, checkpoint_path):
  """Restores `model`'s variables (only) from a checkpoint written by `train`; returns `model`."""
  tf.train.Checkpoint(model_variables=model_variables(model)).restore(
      checkpoint_path).expect_partial().assert_existing_objects_matched()
  return model


def _default_decayed_tensors(model):
  return [v for v in model.trainable_variables if v.path.endswith("kernel")]


def _beta_sample(alpha, seed):
  """Beta(alpha, alpha) from two stateless Gamma draws (TF has no stateless Beta)."""
  g = tf.random.stateless_gamma([2], seed=seed, alpha=alpha)
  return g[0] / (g[0] + g[1])


def _format_eta(seconds):
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _Progress:
  """Console progress line and TensorBoard scalars (loss, accuracy, lr, images/s)."""

  def __init__(self, name, total_steps, global_batch, summary_dir, start_step):
    self.name, self.total, self.batch = name, total_steps, global_batch
    self.writer = tf.summary.create_file_writer(summary_dir) if summary_dir else None
    self.last_time, self.last_step = time.perf_counter(), start_step
    self.run_start, self.run_start_step = self.last_time, start_step

  def log(self, step, loss, accuracy, lr):
    now = time.perf_counter()
    images_per_s = (step - self.last_step) * self.batch / max(now - self.last_time, 1e-9)
    steps_per_s = (step - self.run_start_step) / max(now - self.run_start, 1e-9)
    eta = (self.total - step) / max(steps_per_s, 1e-9)
    acc = "" if accuracy is None else f" acc {accuracy:.3f}"
    print(f"[{self.name}] step {step}/{self.total} loss {loss:.4f}{acc} lr {lr:.2e} "
          f"{images_per_s:.1f} img/s ETA {_format_eta(eta)}", flush=True)
    if self.writer:
      with self.writer.as_default(step=step):
        tf.summary.scalar("train/loss", loss)
        tf.summary.scalar("train/lr", lr)
        tf.summary.scalar("train/images_per_second", images_per_s)
        if accuracy is not None:
          tf.summary.scalar("train/accuracy", accuracy)
      self.writer.flush()
    self.last_time, self.last_step = now, step


def _checkpoint_dir(strategy, directory):
  # Every multi-worker replica must save (the save runs collectives); only the chief keeps it.
  if strategy_lib.is_chief(strategy):
    return directory
  return os.path.join(tempfile.gettempdir(), f"tfexperts-worker{strategy_lib.worker_id(strategy)}",
                      os.path.basename(directory.rstrip("/")))


def checkpointed_step(directory):
  """The step stored in the latest checkpoint under `directory` (0 when there is none)."""
  latest = tf.train.latest_checkpoint(directory)
  return checkpoint_step(latest) if latest else 0


def _report_unreached(task_name, variables, gradients, reported):
  """Says once (at trace time) which trainable variables the loss does not reach.

  They keep their values. This is expected for a hub module's own upstream head when only its
  pre-logits are fine-tuned; anything else listed here is a model wiring error worth a look.
  """
  unreached = [getattr(v, "path", v.name) for v, g in zip(variables, gradients) if g is None]
  if unreached and task_name not in reported:
    reported.add(task_name)
    print(f"[{task_name}] {len(unreached)} trainable variables get no gradient from the loss and "
          f"stay as they are: {', '.join(unreached[:6])}{' ...' if len(unreached) > 6 else ''}",
          flush=True)


class StepCache:
  """The optimizer, schedule, step counter and traced step of the caller's latest run.

  A caller that trains one model several times in a row (a fine-tuning sweep: the same model,
  reset between runs) owns one and passes it to every `train` call: a run of the same model
  object under the same strategy, task `forward` and `decayed_tensors` and the same settings
  (all but `total_steps`, `warmup_steps` and the learning rate) reuses the last run's parts with
  the optimizer's state and the step zeroed and the schedule retargeted, so it starts without
  tracing again. Anything else replaces them (only one run's parts are kept). Runs with loss
  scaling are never reused.
  """

  def __init__(self):
    self.key = self.model = self.parts = None

  def clear(self):
    """Forgets the last run's parts (releasing the variables they hold); returns None."""
    self.key = self.model = self.parts = None

  def parts_for(self, strategy, task, config, model):
    """`(optimizer, schedule, step, train_steps)` for a run of `model` at `config`: the last
    run's, reset and retargeted, when they fit; else new ones (kept for the next run)."""
    key = (strategy, task.forward, task.decayed_tensors, task.num_classes,
           config.global_batch_size, config.momentum, config.decay, config.weight_decay,
           config.label_smoothing, config.mixup_alpha, config.multi_label, config.seed)
    reusable = not config.loss_scaling
    if reusable and self.key == key and self.model is model:
      optimizer, schedule, step, _ = self.parts
      schedule.retarget(config.learning_rate, config.total_steps, config.warmup_steps)
      for variable in optimizer.variables:
        variable.assign(tf.zeros_like(variable))
      step.assign(0)
      return self.parts
    self.clear()  # release the previous run's variables first
    parts = _new_parts(strategy, task, config, model, retargetable=reusable)
    if reusable:
      self.key, self.model, self.parts = key, model, parts
    return parts


def _new_parts(strategy, task, config, model, retargetable=False):
  """New `(optimizer, schedule, step, train_steps)` for a run of `model` at `config`."""
  schedule_class = schedules.RetargetableWarmupDecay if retargetable else schedules.WarmupDecay
  schedule = schedule_class(config.learning_rate, config.total_steps, config.warmup_steps,
                            config.decay)
  optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum)
  if config.loss_scaling:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  optimizer.build(model.trainable_variables)
  step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  return optimizer, schedule, step, _train_steps(strategy, task, config, model, optimizer, step)


def _train_steps(strategy, task, config, model, optimizer, step):
  """The traced `(iterator, num_steps) -> (loss, accuracy)` that runs `num_steps` steps."""
  decayed = task.decayed_tensors or _default_decayed_tensors
  global_batch = config.global_batch_size
  reported = set()

  def step_fn(batch, step_value):
    labels = batch["label"]
    if config.multi_label:
      targets = tf.cast(labels, tf.float32)
    else:
      targets = tf.one_hot(labels, task.num_classes)
    if config.label_smoothing:
      targets = targets * (1 - config.label_smoothing) + config.label_smoothing / task.num_classes
    batch = dict(batch)
    if config.mixup_alpha:
      seed = tf.stack([tf.cast(config.seed, tf.int64), step_value])
      mix = _beta_sample(config.mixup_alpha, seed)
      batch["image"] = mix * batch["image"] + (1 - mix) * tf.reverse(batch["image"], [0])
      targets = mix * targets + (1 - mix) * tf.reverse(targets, [0])
    with tf.GradientTape() as tape:
      logits = tf.cast(task.forward(model, batch), tf.float32)
      if config.multi_label:
        per_example = tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits), axis=-1)
      else:
        per_example = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
      loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
      if config.weight_decay:
        penalty = 0.5 * config.weight_decay * tf.add_n(
            [tf.reduce_sum(tf.square(t)) for t in decayed(model)])
        loss += tf.nn.scale_regularization_loss(penalty)
      scaled = optimizer.scale_loss(loss) if config.loss_scaling else loss
    variables = model.trainable_variables
    gradients = tape.gradient(scaled, variables)
    _report_unreached(task.name, variables, gradients, reported)
    optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
    if config.multi_label:
      correct = tf.constant(0.0)
    else:
      correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=labels.dtype),
                                               labels), tf.float32))
    return loss, correct

  def one_step(iterator, first_nonfinite):
    per_replica_loss, per_replica_correct = strategy.run(step_fn, args=(next(iterator), step))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
    correct = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_correct, axis=None)
    step.assign_add(1)
    first_nonfinite = tf.where((first_nonfinite < 0) & ~tf.math.is_finite(loss),
                               step.read_value(), first_nonfinite)
    return loss, correct, first_nonfinite

  # Written without autograph: converting `step_fn` and everything it calls (the model, the
  # restored hub functions) costs seconds per trace, and nothing here needs it.
  @tf.function(autograph=False)
  def train_steps(iterator, num_steps):
    initial = (tf.constant(0.0), tf.constant(0.0), tf.constant(-1, tf.int64))
    loss, correct, first_nonfinite = tf.while_loop(
        lambda i, *_: i < num_steps,
        lambda i, loss, correct, first_nonfinite: (i + 1, *one_step(iterator, first_nonfinite)),
        (tf.constant(0, num_steps.dtype), *initial))[1:]
    return loss, correct / global_batch, first_nonfinite

  return train_steps


def train(strategy, task, config, checkpoint_dir, summary_dir=None, step_cache=None):
  """Runs (or resumes) one training run; returns `(model, history)`.

  Args:
    strategy: a `tf.distribute.Strategy` (see `strategy.make_strategy`).
    task: a `TrainTask`.
    config: a `LoopConfig`.
    checkpoint_dir: where checkpoints live; the latest one is restored first.
    summary_dir: TensorBoard directory (chief only), or None.
    step_cache: the caller's `StepCache` when consecutive runs of one model should share the traced
      step (see `StepCache`); None: this run builds its own.

  Returns:
    The trained model and a dict with `start_step`, `final_step` and `log`, a list of
    `{"step", "loss", "accuracy", "lr"}` for every logged step of this invocation.
  """
  with strategy.scope():
    model = task.make_model()
    if step_cache is None:
      optimizer, schedule, step, train_steps = _new_parts(strategy, task, config, model)
    else:
      optimizer, schedule, step, train_steps = step_cache.parts_for(strategy, task, config, model)
  checkpoint = tf.train.Checkpoint(model_variables=model_variables(model), optimizer=optimizer,
                                   step=step)
  manager = tf.train.CheckpointManager(checkpoint, _checkpoint_dir(strategy, checkpoint_dir),
                                       max_to_keep=2)
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  if latest:
    checkpoint.restore(latest).assert_existing_objects_matched()
  start_step = int(step.numpy())
  history = {"start_step": start_step, "final_step": start_step, "log": []}
  if start_step >= config.total_steps:
    print(f"[{task.name}] already trained ({start_step}/{config.total_steps} steps); skipping.",
          flush=True)
    return model, history
  if latest:
    print(f"[{task.name}] resuming from step {start_step} ({latest})", flush=True)

  global_batch = config.global_batch_size
  progress = _Progress(task.name, config.total_steps, global_batch,
                       summary_dir if strategy_lib.is_chief(strategy) else None, start_step)

  def save(at_step):
    check_finite_weights(model, task.name, at_step, float(schedule(at_step - 1)), checkpoint_dir)
    with fileio.disk_writes(manager.directory, lambda: fileio.variables_nbytes(
        list(model_variables(model).values()) + list(optimizer.variables)), qualifier="about "):
      return manager.save(checkpoint_number=at_step)

  current = start_step
  # Watching starts before the input pipeline does: its read-ahead threads run from `iter`, and a
  # SIGTERM while they start must checkpoint and stop, not kill the process.
  with preemption.Watcher(strategy, save, task.name, config.total_steps) as watcher:
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: task.make_dataset(ctx, ctx.get_per_replica_batch_size(
            config.global_batch_size), start_step))
    iterator = iter(dataset)
    while current < config.total_steps:
      next_checkpoint = (current // config.checkpoint_every + 1) * config.checkpoint_every
      next_log = (current // config.log_every + 1) * config.log_every
      num_steps = min(config.steps_per_loop, next_checkpoint - current, next_log - current,
                      config.total_steps - current)
      loss, accuracy, first_nonfinite = train_steps(iterator, tf.constant(num_steps))
      current = int(step.numpy())
      if int(first_nonfinite) >= 0:
        bad = int(first_nonfinite)
        _raise_diverged(task.name, bad, float(schedule(bad - 1)), "the loss is not finite",
                        checkpoint_dir)
      if current % config.log_every == 0 or current == config.total_steps:
        lr = float(schedule(current - 1))
        entry = {"step": current, "loss": float(loss), "lr": lr,
                 "accuracy": None if config.multi_label else float(accuracy)}
        history["log"].append(entry)
        progress.log(current, entry["loss"], entry["accuracy"], lr)
      if current % config.checkpoint_every == 0 or current == config.total_steps:
        watcher.save_now(current)
      watcher.check(current)
  history["final_step"] = current
  return model, history


def _raise_diverged(name, step, lr, what, checkpoint_dir):
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  kept = (f"The last finite checkpoint (step {checkpoint_step(latest)}, {latest}) is kept; a rerun "
          "with the same settings resumes from it and diverges again." if latest else
          "No checkpoint was written.")
  raise errors.DivergedError(
      f"[{name}] diverged: {what} at step {step} (learning rate {lr:.3g}); nothing non-finite was "
      f"saved. {kept} Lower the learning rate (or lengthen the warm-up).", run=name, step=step,
      learning_rate=lr, checkpoint=latest)


def check_finite_weights(model, name, step, lr, checkpoint_dir):
  """Raises `errors.DivergedError` (naming run `name`, `step`, learning rate `lr` and the last
  checkpoint under `checkpoint_dir`) when a weight of `model` is NaN or infinite; else None."""
  bad = finite.nonfinite_weights(model)
  if bad:
    _raise_diverged(name, step, lr, f"{len(bad)} weights are not finite (e.g. {bad[0]})",
                    checkpoint_dir)


def checkpoint_step(path):
  """The step stored in the checkpoint at `path` (a checkpoint prefix written by `train`)."""
  return int(tf.train.load_checkpoint(path).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
