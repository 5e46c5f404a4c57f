"""Fine-tuning a hub expert on a task: a new zero-initialised head, and the expert's weights
(`full`), its GroupNorms (`patch`), new adapters (`adapter`) or nothing more (`head`): see
`transfer.modes`.

The expert is wrapped with `keras.layers.TFSMLayer`, which trains the SavedModel's variables from
Keras 3 (our modules' `serve`/`train` endpoints; modules without them, such as the published BiT
experts, through `__call__`: BiT has no batch norm or dropout, so one endpoint serves both).
Each run goes through `loop.train` (checkpoints, resume, progress) and stores its evaluation in
`result.json` (accuracy, and which eval examples it got right, packed: see `stats.pack_correct`),
so a finished run is neither retrained nor re-evaluated. A run whose loss or weights became
non-finite is finished too: its `result.json` says `diverged` (with the step, learning rate and
message) and has no accuracy.

A non-`full` run stores what it trained as a per-task artifact (`transfer.artifact`, in the run's
`artifact/` directory) and then drops its training checkpoint, so a task costs the artifact's
bytes, not the model's. Every result records `finetune`, `trained_parameters`, `artifact`,
`artifact_bytes` (full: the fine-tuned model's variables, which its checkpoint holds) and the
training throughput `images_per_second` (images trained / wall seconds of the training loop,
model load and trace included).
"""
import collections
import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfexperts import errors
from tfexperts import fileio
from tfexperts import precision as precision_lib
from tfexperts import replicated
from tfexperts.hub import expert_ref as hub_expert_ref
from tfexperts.hub import native
from tfexperts.hub import third_party
from tfexperts.models import inputs
from tfexperts.transfer import artifact as artifact_lib
from tfexperts.transfer import modes
from tfexperts.transfer import stats
from tfexperts.train import loop
from tfexperts.train import seeding

RESULT = "result.json"
CHECKPOINTS = "ckpt"  # a run's training checkpoints, inside its directory


_ENDPOINTS = (("serve", "train"), ("serve", None), ("__call__", None), ("serving_default", None))


def expert_layer(expert):
  """A trainable Keras 3 layer computing the `[b, d]` pre-logits of module `expert` (an
  `ExpertRef`) from images.

  Tries our modules' `serve`/`train` endpoints, then `serve` alone (Keras 3 exports), `__call__`
  (reusable SavedModels such as the published BiT experts) and the `serving_default` signature.
  The images it takes are in the module's own range (see `TransferModel`).
  """
  for call, train in _ENDPOINTS:
    try:
      return keras.layers.TFSMLayer(expert.location, call_endpoint=call, call_training_endpoint=train,
                                    trainable=True, name="expert")
    except ValueError:  # endpoint missing: try the next
      continue
  raise ValueError(f"Hub handle {expert.handle!r} has none of the endpoints {_ENDPOINTS} to "
                   "fine-tune.")


class ModelCache:
  """The transfer model of the caller's latest `run` and its traced training step, reused by the
  next run of the same module and task.

  A protocol fine-tunes one expert several times in a row (the sweep, then the final retrains).
  Loading the module again for each run would make TensorFlow derive the gradient of its restored
  functions again, and a new model would make the training loop trace its step again: together
  as much as a few hundred small training steps. The caller (`protocol.run_protocol`, knn_topk's
  short runs) owns one cache and passes it to each `run`: it keeps the model, its variables'
  values at creation, the loop's `steps` (`loop.StepCache`: optimizer, schedule and traced
  step), its traced prediction steps (`prediction_step`) and what callers derive from the model
  (`derived`: a multi-task model's per-task views). Only one model is kept (memory stays one
  model), keyed on the module's content, what the model is (classes, precision, mode) and the
  strategy its variables were created under; every variable (the expert's and the
  zero-initialised head's) is reset to its value at creation before every reuse.
  """

  def __init__(self):
    self.key = self.strategy = self.model = self.initial_values = None
    self.steps = loop.StepCache()
    self.derived_objects = {}  # key -> object made from `model`, dropped with it

  def derived(self, key, build):
    """An object made from the cached model (a traced step, a view of the model): `build()`'s
    value the first time `key` is asked while this model is cached, the same object after."""
    if key not in self.derived_objects:
      self.derived_objects[key] = build()
    return self.derived_objects[key]

  def holds(self, model):
    """True when `model` is the cached model or one derived from it (`derived`)."""
    return model is self.model or any(model is v for v in self.derived_objects.values())

  def prediction_step(self, strategy, model=None):
    """The traced top-1 prediction step under `strategy` of `model` (the cached model or one
    derived from it; None: the cached model), built once while the model is cached."""
    model = self.model if model is None else model
    return self.derived(("prediction_step", strategy, id(model)),
                        lambda: _prediction_step(model, strategy))

  def fresh(self, expert, num_classes, strategy, precision="float32", finetune="full"):
    """A built `TransferModel` of `expert` (an `ExpertRef`) at `precision` in mode `finetune` with the module's
    weights, fresh adapters (adapter mode) and a zero head: the cached one, reset, when it is
    of the same module, classes, precision, mode and strategy."""
    def build():
      model = TransferModel(expert, num_classes, precision=precision, finetune=finetune)
      model.build((None, None, None, 3))
      return model
    return self.reuse_or_build((expert.handle, num_classes, precision, finetune), expert,
                               strategy, build)

  def reuse_or_build(self, key, expert, strategy, build):
    """The cached model reset to its values at creation when it was made for `key` (a tuple
    saying what the model is, e.g. `transfer.multitask`'s) on module `expert`'s (an
    `ExpertRef`'s) content under `strategy`; else `build()`'s (a built Keras model), cached in
    its place."""
    key = (expert.identity,) + tuple(key)
    if self.key == key and self.strategy is strategy:
      for variable, value in zip(self.model.variables, self.initial_values):
        variable.assign(value)
      return self.model
    # Release the previous module (and the loop's parts holding its variables) first.
    self.key = self.strategy = self.model = self.initial_values = None
    self.steps.clear()
    self.derived_objects = {}
    model = build()
    self.key, self.strategy, self.model = key, strategy, model
    self.initial_values = [variable.numpy() for variable in model.variables]
    return model


def check_mode(expert, finetune):
  """Raises UserError naming module `expert` (an `ExpertRef`) when mode `finetune` needs the
  expert rebuilt (patch, adapter) and its metadata says it cannot be (a third-party module, a
  bank); cheap: looks at the metadata only. Returns `finetune`."""
  if modes.check(finetune) in modes.NATIVE_ONLY:
    if not native.may_run_natively(expert.metadata) or expert.has_options:
      raise modes.rebuild_error(finetune, expert.handle, third_party=expert.metadata.is_absent)
  return finetune


def native_expert(expert, precision, finetune="full"):
  """The module `expert` (an `ExpertRef`) rebuilt as a trainable Keras model computing at `precision`
  (`hub.native.trainable_model`), or None when it cannot be rebuilt: then it runs at float32
  from its SavedModel (one notice line when `precision` is not float32). Raises UserError
  naming the module when `finetune` (patch, adapter) needs the rebuilt model."""
  model = None
  if native.may_run_natively(expert.metadata) and not expert.has_options:
    model = native.trainable_model(expert, precision)
  if model is None and finetune in modes.NATIVE_ONLY:
    raise modes.rebuild_error(finetune, expert.handle, third_party=expert.metadata.is_absent)
  if model is None and precision != "float32":
    print(f"notice: {expert.handle} cannot be rebuilt at {precision} (only tfexperts' own expert "
          "modules can); fine-tuning it at float32.", flush=True)
  return model


class TransferModel(keras.Model):
  """Hub expert + zero-initialised dense head: `call(images) -> [b, num_classes]` logits.

  Full fine-tuning at float32 trains the expert's SavedModel (`expert_layer`); at bfloat16 /
  float16, and in the other modes (`finetune`, see `transfer.modes`), the expert is the module
  rebuilt under that mixed policy (`native_expert`; `head` falls back to the frozen SavedModel
  when it cannot be rebuilt), with float32 variables; the head and the logits stay float32.
  `precision` is the precision that runs; only the mode's variables are trainable. The module is
  an `ExpertRef` (`expert_ref`; `handle` is its handle string).
  """

  def __init__(self, expert_ref, num_classes, name="transfer", precision="float32",
               finetune="full", **kwargs):
    super().__init__(name=name, **kwargs)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
      raise ValueError(f"`num_classes` must be a positive integer. Received: {num_classes!r}")
    self.expert_ref = hub_expert_ref.check(expert_ref, "TransferModel")
    self.handle, self.num_classes = expert_ref.handle, num_classes
    self.precision = precision_lib.check(precision)
    self.finetune = modes.check(finetune)
    expert = None
    if precision != "float32" or finetune != modes.FULL:
      expert = native_expert(expert_ref, precision, finetune)
    if expert is None:
      self.precision = "float32"
      expert = expert_layer(expert_ref)
    self.expert = modes.prepare(expert, finetune, self.precision)
    self.input_range = expert_ref.input_range
    self.head = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="head",
                                   dtype="float32")

  def _features(self, images, training=False):
    images = third_party.rescale(tf.cast(inputs.prepare(images), tf.float32), self.input_range)
    features = self.expert(images, training=training)
    if isinstance(features, dict):
      features = features["pre_logits"] if "pre_logits" in features else (
          next(iter(features.values())) if len(features) == 1 else features["pre_logits"])
    return tf.cast(features, tf.float32)

  def _feature_dim(self):
    dim = self.expert_ref.metadata.feature_dim
    if dim:
      return int(dim)
    probe = tf.zeros([1, 32, 32, 3])
    if not tf.distribute.has_strategy():
      return int(self._features(probe).shape[-1])
    strategy = tf.distribute.get_strategy()
    outputs = strategy.run(tf.function(self._features), args=(probe,))
    return int(strategy.experimental_local_results(outputs)[0].shape[-1])

  def build(self, input_shape):
    """Builds the head for the expert's feature size, without calling the model.

    Under a MirroredStrategy the restored SavedModel functions only run in a replica context,
    while Keras would build by tracing `call` in the cross-replica one.
    """
    self.head.build((None, self._feature_dim()))

  def call(self, images, training=False):
    return self.head(self._features(images, training))

  def outputs(self, images, training=False):
    """`{"pre_logits": [b, d], "logits": [b, num_classes]}` float32 of `images`."""
    features = self._features(images, training)
    return {"pre_logits": features, "logits": self.head(features)}


@dataclasses.dataclass
class RunSpec:
  """One fine-tuning run: data splits, hyperparameters and where it lives.

  `learning_rate` is the rate at batch 512 (as the VTAB sweep names it); the run trains at it
  scaled to `batch_size` (`loop_config.learning_rate_at`).
  """
  expert: object  # tfexperts.hub.expert_ref.ExpertRef
  task: object  # tfexperts.data.tasks.Task
  train_split: str
  eval_split: str
  learning_rate: float
  steps: int
  batch_size: int
  resolution: int
  seed: int
  directory: str
  data_dir: str = None
  decay: str = "step"
  mixup_alpha: float = 0.0
  warmup_fraction: float = 0.1
  eval_batch_size: int = 128
  precision: str = "float32"
  finetune: str = "full"


def _dataset_fn(spec):
  def make(ctx, per_replica_batch, start_step):
    ds = spec.task.load(spec.train_split, spec.data_dir, image_size=spec.resolution, augment=True,
                        shuffle_buffer=1000, repeat=True, seed=spec.seed,
                        **loop.resumed_input(ctx, per_replica_batch, start_step))
    return ds.map(lambda images, labels: {"image": images, "label": labels})
  return make


def _prediction_step(model, strategy):
  """A new `replicated.OrderedStep` of `model`'s top-1 predictions under `strategy`."""
  def predict(example):
    images, labels = example
    return tf.argmax(model(images, training=False), axis=-1, output_type=tf.int32), labels
  return replicated.OrderedStep(strategy, predict)


def evaluate_correct(model, task, split, data_dir, resolution, batch_size=128, strategy=None,
                     cache=None):
  """Per-example top-1 correctness of `model` (images -> logits) on a task split, in the split's
  (deterministic) order: a bool array, the same examples for every model of the task.

  Runs under `strategy` (None: the default strategy) like the training that made `model`: global
  batches of `batch_size` split over the replicas, the last one padded, every example counted
  exactly once (checked against the split's size). `cache`: the `ModelCache` that holds `model`
  (or a model derived from its model), so a model reused across runs is evaluated through one
  traced step (None: a new step).
  """
  strategy = strategy or tf.distribute.get_strategy()
  examples = task.load(split, data_dir, image_size=resolution)
  expected = task.num_examples(split, data_dir)
  if expected == 0:
    raise ValueError(f"Split {split!r} of task {task.name!r} is empty.")
  step = (cache.prediction_step(strategy, model) if cache is not None and cache.holds(model)
          else _prediction_step(model, strategy))
  predictions, labels = replicated.ordered_outputs(strategy, step, examples, batch_size,
                                                   num_examples=expected)
  return predictions == labels.astype(np.int32)


def evaluate(model, task, split, data_dir, resolution, batch_size=128, strategy=None):
  """Top-1 accuracy of `model` (images -> logits) on a task split; returns (accuracy, count)."""
  correct = evaluate_correct(model, task, split, data_dir, resolution, batch_size, strategy)
  return float(correct.mean()), int(correct.size)


def _forward(model, batch):
  return model(batch["image"], training=True)


def _result_settings(spec):
  return {"handle": spec.expert.handle, "task": spec.task.name, "train_split": spec.train_split,
          "eval_split": spec.eval_split, "learning_rate": spec.learning_rate,
          "steps": spec.steps, "batch_size": spec.batch_size, "seed": spec.seed,
          "resolution": spec.resolution}


def loop_config(spec, global_batch_size):
  """The `loop.LoopConfig` of fine-tuning run `spec` (a `RunSpec`) training `global_batch_size`
  examples a step: the spec's decay, mixup and seed (`LoopConfig.taking`), its steps, its rate
  at batch 512 (the loop scales it to the global batch), its warm-up fraction, loss scaling at
  float16, checkpointing every quarter of the run and logging every fifth."""
  return loop.LoopConfig.taking(spec, total_steps=spec.steps, global_batch_size=global_batch_size,
                                base_lr=spec.learning_rate,
                                warmup_steps=int(spec.steps * spec.warmup_fraction),
                                checkpoint_every=max(spec.steps // 4, 1),
                                log_every=max(spec.steps // 5, 1),
                                loss_scaling=spec.precision == "float16")


def diverged(result):
  """True when a run's result dict (or a protocol result) records divergence (no accuracy)."""
  return bool((result or {}).get("diverged"))


def run(spec, strategy, cache=None):
  """Fine-tunes `spec.expert` on `spec.train_split` and evaluates on `spec.eval_split`.

  `cache` is the caller's `ModelCache`: consecutive runs of one module and task passed the same
  cache reuse its model and traced step; None: this run loads its own.

  Returns the run's result dict (accuracy, examples, seconds, hyperparameters); a run whose
  `result.json` exists returns it without training. A run that diverges (`errors.DivergedError`)
  returns (and records) `diverged: True` with `accuracy` None instead of raising.
  """
  result_path = os.path.join(spec.directory, RESULT)
  if tf.io.gfile.exists(result_path):
    return fileio.read_json(result_path)
  start = time.perf_counter()
  config = loop_config(spec, spec.batch_size)
  cache = cache or ModelCache()

  def make_model():
    seeding.set_seed(spec.seed)
    return cache.fresh(spec.expert, spec.task.num_classes, strategy, spec.precision,
                       spec.finetune)

  # Runs live in <work>/<task>/<expert>/<phase...>: the label names the expert of the run.
  expert_dir, run_dir = os.path.split(os.path.normpath(spec.directory))
  task = loop.TrainTask(f"{spec.task.name}/{os.path.basename(expert_dir)}/{run_dir}",
                        spec.task.num_classes, make_model, _dataset_fn(spec), _forward)
  trained = train_or_record(strategy, task, config, spec.directory, start, {
      **_result_settings(spec), "precision": spec.precision, "finetune": spec.finetune,
      "accuracy": None}, cache.steps)
  if trained.diverged:
    return trained.diverged
  model, history, train_seconds = trained.model, trained.history, trained.seconds
  checkpoint_dir = os.path.join(spec.directory, CHECKPOINTS)
  correct = evaluate_correct(model, spec.task, spec.eval_split, spec.data_dir, spec.resolution,
                             spec.eval_batch_size, strategy, cache)
  accuracy, count = float(correct.mean()), int(correct.size)
  trained_images = (history["final_step"] - history["start_step"]) * spec.batch_size
  result = {**_result_settings(spec), "precision": model.precision, "diverged": False,
            "accuracy": accuracy, "num_eval_examples": count, "num_correct": int(correct.sum()),
            "correct_bits": stats.pack_correct(correct), **_stored(model, spec),
            "images_per_second": trained_images / train_seconds if trained_images else None,
            "train_seconds": train_seconds, "seconds": time.perf_counter() - start}
  fileio.write_json_atomic(result_path, result)
  if spec.finetune != modes.FULL and tf.io.gfile.exists(checkpoint_dir):
    tf.io.gfile.rmtree(checkpoint_dir)  # the artifact holds what the run trained
  return result


Trained = collections.namedtuple("Trained", "model history seconds diverged")


def train_or_record(strategy, task, config, directory, start, diverged_fields, step_cache):
  """Runs (or resumes) `loop.train` of `task` (a `loop.TrainTask`) with `config` for the
  fine-tuning run in `directory` (checkpoints in its `ckpt/`) through the caller's `step_cache`
  (a `loop.StepCache`, e.g. its `ModelCache.steps`); `start` is the run's `time.perf_counter()`
  at its start.

  Returns `Trained(model, history, seconds of training, diverged=None)`; when the run diverges,
  `Trained(None, None, None, diverged=result)` after writing that result to the run's
  result.json: `diverged_fields` (the run's settings, its accuracy fields None) with `diverged`,
  the step, learning rate and message, and the seconds spent.
  """
  try:
    train_start = time.perf_counter()
    model, history = loop.train(strategy, task, config, os.path.join(directory, CHECKPOINTS),
                                step_cache=step_cache)
    return Trained(model, history, time.perf_counter() - train_start, None)
  except errors.DivergedError as e:
    print(f"{e} Recorded as diverged.", flush=True)
    result = {**diverged_fields, "diverged": True, "diverged_at_step": e.step,
              "diverged_learning_rate": e.learning_rate, "message": str(e),
              "seconds": time.perf_counter() - start}
    fileio.write_json_atomic(os.path.join(directory, RESULT), result)
    return Trained(None, None, None, result)


def _stored(model, spec):
  """The result fields of what a run keeps: `finetune`, `trained_parameters`, `artifact` (its
  directory, None for full) and `artifact_bytes`."""
  trained = modes.trained_variables(model)
  fields = {"finetune": spec.finetune, "trained_parameters": modes.count(trained)}
  if spec.finetune == modes.FULL:
    return {**fields, "artifact": None, "artifact_bytes": fileio.variables_nbytes(model.variables)}
  directory = os.path.join(spec.directory, artifact_lib.DIRECTORY)
  nbytes = artifact_lib.save(model, directory, task=spec.task.name, resolution=spec.resolution,
                             settings=_result_settings(spec))
  return {**fields, "artifact": directory, "artifact_bytes": nbytes}
