"""Domain Adaptive Transfer (Ngiam et al., 2018) as a selection strategy: one task-specific model.

For a task:
  1. the baseline's upstream head predicts upstream labels on the task's training images; their
     mean is p_T(y) (`dat_weights.task_label_distribution`);
  2. each upstream class gets weight p_T(y) / p_S(y), p_S the upstream label frequency;
  3. the baseline is fine-tuned on the upstream data resampled by those weights
     (`train_upstream`: bin/train_experts' loop, strategy, checkpoints and resume);
  4. that model is exported as a hub module and fine-tuned on the task with the VTAB-1k protocol.
Everything lives under one directory per task and resumes after a kill: the weights are saved,
training resumes from its checkpoints, a finished export is reused, and protocol runs resume.
The cost of each step (seconds, images processed) is recorded; steps finished by an earlier
invocation keep the cost measured then. Its settings are `transfer.dat_config`; the strategy
that runs it per task and records its model and cost is `transfer.strategies.Dat`.
"""
import os
import time

import numpy as np
import tensorflow as tf

from tfexperts import artifacts
from tfexperts import errors
from tfexperts import fileio
from tfexperts.errors import UserError
from tfexperts.hub import export as export_lib
from tfexperts.hub import keras_baseline
from tfexperts.hub import load as hub_load
from tfexperts.hub import metadata as metadata_lib
from tfexperts.models import finished
from tfexperts.select import selection
from tfexperts.train import loop
from tfexperts.train import stages
from tfexperts.transfer import dat_weights
from tfexperts.transfer import protocol

WEIGHTS_FILE = "dat_weights.json"
COST_FILE = "dat_upstream_cost.json"
TRAIN_PREPROCESS = "resize({res})|flip_lr|value_range(0, 1)"


def _label_probs(baseline, source):
  """Per-image upstream label distributions of the task's images, and the `Features` behind."""
  logits = source.logits(baseline)
  values = logits.features.astype(np.float64)
  if baseline.metadata.multi_label:
    probs = 1.0 / (1.0 + np.exp(-values))
  else:
    values = values - values.max(axis=1, keepdims=True)
    probs = np.exp(values)
  return probs / probs.sum(axis=1, keepdims=True), logits


def class_weights_for_task(baseline, upstream, source, directory):
  """Steps 1-2: DAT's class weights for the task `source` reads, saved in `directory` and reused.

  Returns `(weights [C], summary dict, cost dict)`. Raises UserError when the baseline's head
  does not match the upstream dataset's classes.
  """
  path = os.path.join(directory, WEIGHTS_FILE)
  if tf.io.gfile.exists(path):
    saved = fileio.read_json(path)
    return np.asarray(saved["class_weights"]), saved["summary"], saved["cost"]
  start = time.perf_counter()
  probs, logits = _label_probs(baseline, source)
  if probs.shape[1] != upstream.num_classes:
    raise UserError(f"The baseline {baseline.handle!r} predicts {probs.shape[1]} upstream "
                    f"classes, the upstream dataset {upstream.name!r} has {upstream.num_classes}: "
                    "--upstream_dataset must be the data the baseline was trained on.")
  names = baseline.metadata.logit_names
  if names and list(names) != list(upstream.class_names):
    raise UserError(f"The baseline {baseline.handle!r} was trained on other classes than "
                    f"{upstream.name!r} has (first differences: "
                    f"{[(a, b) for a, b in zip(names, upstream.class_names) if a != b][:3]}).")
  task_seconds = time.perf_counter() - start
  start = time.perf_counter()
  counts = upstream.label_counts()
  weights = dat_weights.class_weights(dat_weights.task_label_distribution(probs), counts)
  summary = dat_weights.summary(weights, counts, upstream.class_names)
  cost = {"label_distribution": {"seconds": task_seconds, "images": int(len(probs)),
                                 "images_embedded": int(logits.images_embedded)},
          "upstream_label_count": {"seconds": time.perf_counter() - start,
                                   "images": int(upstream.num_images)}}
  fileio.write_json_atomic(path, {"class_weights": weights.tolist(), "summary": summary,
                                  "cost": cost})
  return weights, summary, cost


def train_upstream(make_baseline, upstream, class_weights, config, resolution, directory,
                   strategy, name):
  """Step 3: fine-tunes the baseline on upstream data resampled by `class_weights`.

  Runs `config.steps` steps of the training loop (checkpoints in `directory`/ckpt, resumed after a
  kill) and saves the finished model in `directory`/final, which a rerun reuses.

  Args:
    make_baseline: returns the built baseline Keras model (with its upstream head).
    upstream: the `tfexperts.data.upstream.Upstream` the baseline was trained on.
    class_weights: `[num_classes]` weights (see `dat_weights.class_weights`).
    config: `transfer.dat_config.DatConfig`.
    resolution: the training resolution.
    directory: this upstream run's directory.
    strategy: the tf.distribute strategy.
    name: the model's name in its record.

  Returns:
    The finished model's directory.
  """
  final = os.path.join(directory, "final")
  if stages.is_finished(directory):
    return final
  loop_config = loop.LoopConfig.taking(
      config, total_steps=config.steps, global_batch_size=config.batch_size,
      warmup_steps=min(config.warmup_steps, config.steps - 1),
      multi_label=upstream.spec.kind != "single")
  source = lambda **kw: upstream.weighted_dataset(class_weights, **kw)  # noqa: E731
  dataset_fn = stages.upstream_dataset_fn(upstream, source, TRAIN_PREPROCESS.format(
      res=resolution), config.seed)
  task = loop.TrainTask(f"dat/{name}", upstream.num_classes, make_baseline, dataset_fn,
                        stages.logits)
  model, _ = stages.train_in(strategy, task, loop_config, directory)
  record = stages.model_record(upstream, artifacts.DAT_KIND, name, config.steps, resolution,
                               dat_class_weights=np.asarray(class_weights, np.float64).tolist())
  stages.save_final_on_chief(strategy, model, final, record)
  return final


def train_and_export(baseline, upstream, weights, config, directory, strategy, name):
  """Steps 3-4a: fine-tunes the baseline on the resampled upstream data and exports it.

  Returns `(handle of the exported module, cost dict of the upstream training)`. Raises
  `errors.DivergedError` naming `--dat_lr` when the upstream fine-tuning diverges.
  """
  resolution = config.resolution or baseline.metadata.input.resolution
  if not resolution:
    raise UserError(f"The baseline {baseline.handle!r} declares no input resolution; pass "
                    "--dat_resolution.")
  handle = os.path.join(directory, "module", "1")
  cost_path = os.path.join(directory, COST_FILE)
  if tf.io.gfile.exists(os.path.join(handle, tf.saved_model.SAVED_MODEL_FILENAME_PB)) and (
      tf.io.gfile.exists(cost_path)):
    return handle, fileio.read_json(cost_path)
  upstream_dir = os.path.join(directory, "upstream")
  start = time.perf_counter()
  try:
    final = train_upstream(lambda: keras_baseline.rebuild(baseline), upstream, weights, config,
                           resolution, upstream_dir, strategy, name)
  except errors.DivergedError as e:
    raise errors.DivergedError(
        f"DAT's upstream fine-tuning of the baseline for {name!r} diverged at base_lr "
        f"{config.base_lr:g} (--dat_lr): {e} To retry with a lower --dat_lr, delete "
        f"{upstream_dir} first (its checkpoints hold this learning rate's run).", run=e.run,
        step=e.step, learning_rate=e.learning_rate, checkpoint=e.checkpoint) from e
  train_seconds = time.perf_counter() - start
  model, record = finished.load_final(final)
  start = time.perf_counter()
  module_meta = metadata_lib.build("full", name, model, module=name,
                                   num_images=upstream.num_images, resolution=resolution,
                                   source=record)
  export_lib.export_expert(model, handle, module_meta, overwrite=True)
  cost = {"seconds": train_seconds, "images": config.steps * config.batch_size,
          "steps": config.steps, "batch_size": config.batch_size,
          "export_seconds": time.perf_counter() - start}
  fileio.write_json_atomic(cost_path, cost)
  return handle, cost


def protocol_images(result, config):
  """Training images a `protocol.run_protocol` result processed (sum of steps x batch)."""
  steps = [row["steps"] for row in result["sweep"]]
  steps += [(result["best"] or {}).get("steps", 0)] * len(result["final"])
  return int(sum(steps) * config.batch_size)


def run(task, baseline, upstream, dat_config, protocol_config, directory, strategy,
        data_dir=None, cache_dir=None):
  """Runs DAT for one task end to end.

  Args:
    task: a `tfexperts.data.tasks.Task`.
    baseline: the `hub.load.Expert` of a tfexperts baseline module (with `logits`).
    upstream: the `tfexperts.data.upstream.Upstream` the baseline was trained on.
    dat_config: `transfer.dat_config.DatConfig` (upstream fine-tuning).
    protocol_config: `protocol.ProtocolConfig` (the task fine-tuning).
    directory: this task's DAT directory (weights, upstream run, module, protocol runs).
    strategy: the tf.distribute strategy for training and fine-tuning.
    data_dir, cache_dir: tfds data dir of the task; feature cache (None: no cache).

  Returns:
    A JSON-ready dict: `handle`, `weights` (summary), `protocol` (the run_protocol result),
    `test_accuracy`, and `cost` with `label_distribution`, `upstream_training` and `transfer`
    (seconds and images each).
  """
  if baseline is None:
    raise UserError("DAT needs the collection's baseline module (with its upstream head); the "
                    "pool has none.")
  name = f"dat_{task.name}"
  source = selection.FeatureSource(task, "train800", data_dir, protocol_config.resolution,
                                   cache_dir=cache_dir)
  weights, summary, weight_cost = class_weights_for_task(baseline, upstream, source, directory)
  print(f"   DAT weights for {task.name}: effective sample size "
        f"{summary['effective_sample_size']:.0f} of {summary['num_upstream_images']} upstream "
        f"images; top classes {[c['class'] for c in summary['top_classes']]}", flush=True)
  handle, train_cost = train_and_export(baseline, upstream, weights, dat_config, directory,
                                        strategy, name)
  start = time.perf_counter()
  # The module DAT just exported enters here: its handle is resolved once, like a pool's.
  result = protocol.run_protocol(hub_load.reference(handle), task, protocol_config,
                                 os.path.join(directory, "transfer"), strategy, data_dir)
  transfer = {"seconds": result["seconds"], "wall_seconds": time.perf_counter() - start,
              "images": protocol_images(result, protocol_config)}
  return {"handle": handle, "weights": summary, "protocol": result,
          "test_accuracy": result["test_accuracy"],
          "cost": {**weight_cost, "upstream_training": train_cost, "transfer": transfer}}
