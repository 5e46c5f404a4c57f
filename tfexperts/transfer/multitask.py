"""Multi-task patches (issue 29 item 3; "K for the price of 1", simultaneous transfer): one patch
and one head per task trained together on one frozen expert (`transfer.multitask_model`), in the
VTAB-1k protocol, each task's accuracy reported beside its single-task patch run.

Mixing: every step takes `batch_size` examples of *each* task (the global batch is tasks x
batch_size), each task's stream being exactly its single-task run's (same seed, batch, crops and
flips); each example's labels go to its own task's head; the loss is the mean over the whole
batch. The protocol's rates are at batch 512 and the training loop scales them linearly to the
global batch (`train.loop_config.learning_rate_at`), so each task's patch and head take the steps
its single-task run takes (the mean over T tasks'
examples divides its gradient by T; the rate multiplies it by T). With the expert frozen the tasks
share no trained parameter, so what the joint run changes is the protocol: one sweep point (the
best *mean* val accuracy over the tasks) for all of them, one run and one expert in memory. In
float32 the joint and single-task updates differ by rounding (summation order, batch size); a
stable rate keeps that small (tiny model, lr 0.1, 150 steps: same accuracies, parameters within
0.7%), an unstable one (the quick grid's 1.0, whose loss rises) amplifies it into different runs.

Protocol: one `finetune.ModelCache` (the caller's, else one owned by `run_protocol`) holds the
model, its traced steps and its per-task views across the runs. The sweep (the mode's learning
rates x steps x sweep repeats) trains on train800 and evaluates every task on val200; the final retrains (final repeats) train on train800val200 and
test every task; a task's test accuracy is the median over the retrains, with its Wilson interval.
Each run lives in `<directory>/multitask_<tasks>/<expert>/<run name>/` (the single-task runs'
names), resumes through `loop.train` checkpoints, stores `result.json` (a finished run is neither
retrained nor re-evaluated) and one artifact per task (`artifact/<task>/`, the format of a
single-task patch run, so `transfer.apply` takes it), then drops its checkpoint. The single-task
patch runs are `protocol.run_protocol`'s in `<directory>/<task>/<expert>/` (vtab_eval's layout):
runs present there are read, missing ones run.

Each task's multi-task result has the shape of a `protocol.run_protocol` result (test accuracy,
interval, packed correctness, best point, the cost fields), so `transfer.evaluate` records it as
mode `records.MULTITASK` beside the single-task patch record and the report pairs the two.
"""
import dataclasses
import os
import statistics
import time

import tensorflow as tf

from tfexperts import fileio
from tfexperts.data import tasks as tasks_lib
from tfexperts.select import selection
from tfexperts.transfer import artifact as artifact_lib
from tfexperts.transfer import finetune
from tfexperts.transfer import modes
from tfexperts.transfer import multitask_args
from tfexperts.transfer import multitask_model
from tfexperts.transfer import protocol
from tfexperts.transfer import records
from tfexperts.transfer import report
from tfexperts.transfer import stats
from tfexperts.train import loop
from tfexperts.train import seeding

MIXING = ("every step trains batch_size examples of each task (global batch = tasks x "
          "batch_size), each task's labels to its own head, the loss the mean over the batch; the "
          "learning rate at batch 512 is scaled with the global batch")
# What a task's multi-task result keeps of its run's fields (besides its own accuracy and cost).
RUN_COST_FIELDS = ("images_per_second", "train_seconds")


@dataclasses.dataclass
class MultitaskRunSpec(finetune.RunSpec):
  """One multi-task patch run: a `finetune.RunSpec` whose `task` is None and `tasks` lists the
  tasks (`tfexperts.data.tasks.Task`) in task-id order; `finetune` is patch and `mixup_alpha` 0.

  `batch_size` is per task (a step trains `len(tasks) * batch_size` examples) and
  `learning_rate` the rate at batch 512 (the loop scales it to the global batch)."""
  tasks: list = None

  @property
  def global_batch_size(self):
    return len(self.tasks) * self.batch_size


def _dataset_fn(spec):
  """`loop.TrainTask.make_dataset`: batches of `batch_size` examples per task, task after task,
  with `task` ids; each task's stream as in its single-task run (resumed at the same step)."""
  count = len(spec.tasks)

  def make(ctx, per_replica_batch, start_step):
    per_task = per_replica_batch // count
    streams = tuple(task.load(spec.train_split, spec.data_dir, image_size=spec.resolution,
                              augment=True, shuffle_buffer=1000, repeat=True, seed=spec.seed,
                              **loop.resumed_input(ctx, per_task, start_step))
                    for task in spec.tasks)
    ids = tf.repeat(tf.range(count, dtype=tf.int32), per_task)

    def mix(*batches):
      return {"image": tf.concat([images for images, _ in batches], 0),
              "label": tf.concat([tf.cast(labels, tf.int32) for _, labels in batches], 0),
              "task": ids}
    return tf.data.Dataset.zip(streams).map(mix)
  return make


def _forward(model, batch):
  return model(batch["image"], batch["task"], training=True)


def _key(spec):
  return ("multitask_patch", spec.expert.handle, tuple(t.num_classes for t in spec.tasks),
          spec.precision)


def _settings(spec):
  return {"handle": spec.expert.handle, "tasks": [t.name for t in spec.tasks],
          "train_split": spec.train_split, "eval_split": spec.eval_split,
          "learning_rate": spec.learning_rate, "steps": spec.steps,
          "batch_size_per_task": spec.batch_size, "global_batch_size": spec.global_batch_size,
          "seed": spec.seed, "resolution": spec.resolution, "precision": spec.precision,
          "finetune": multitask_args.MODE, "multitask": True}


def _task_result(cache, index, spec, strategy):
  """Task `index`'s evaluation and artifact fields of a finished run of `cache.model`."""
  task = spec.tasks[index]
  correct = finetune.evaluate_correct(multitask_model.task_view(cache, index), task,
                                      spec.eval_split, spec.data_dir, spec.resolution,
                                      spec.eval_batch_size, strategy, cache)
  single = multitask_model.task_model(cache, index)
  directory = os.path.join(spec.directory, artifact_lib.DIRECTORY,
                           multitask_args.label([task.name]))
  nbytes = artifact_lib.save(single, directory, task=task.name, resolution=spec.resolution,
                             settings={**_settings(spec), "task": task.name})
  return {"accuracy": float(correct.mean()), "num_eval_examples": int(correct.size),
          "num_correct": int(correct.sum()), "correct_bits": stats.pack_correct(correct),
          "trained_parameters": modes.count(modes.trained_variables(single)),
          "artifact": directory, "artifact_bytes": nbytes}


def run(spec, strategy, cache):
  """Trains `spec`'s tasks together and evaluates each on `spec.eval_split`.

  `cache` is the caller's `finetune.ModelCache`: consecutive runs passed the same cache reuse
  the model, its traced steps and its per-task views.

  Returns the run's result dict: the settings, `per_task` ({task name: accuracy, examples,
  packed correctness, trained parameters, artifact and its bytes}), `mean_accuracy`,
  `trained_parameters` (all tasks), `images_per_second` and seconds. A run whose `result.json`
  exists returns it without training; a run that diverges returns (and records) `diverged` with
  no accuracies instead of raising.
  """
  result_path = os.path.join(spec.directory, finetune.RESULT)
  if tf.io.gfile.exists(result_path):
    return fileio.read_json(result_path)
  start = time.perf_counter()
  config = finetune.loop_config(spec, spec.global_batch_size)

  def build():
    model = multitask_model.MultitaskPatchModel(
        spec.expert, [t.num_classes for t in spec.tasks], precision=spec.precision)
    model.build((None, None, None, 3))
    return model

  def make_model():
    seeding.set_seed(spec.seed)
    return cache.reuse_or_build(_key(spec), spec.expert, strategy, build)

  expert_dir, run_dir = os.path.split(os.path.normpath(spec.directory))
  train_task = loop.TrainTask(
      f"{os.path.basename(os.path.dirname(expert_dir))}/{os.path.basename(expert_dir)}/{run_dir}",
      max(t.num_classes for t in spec.tasks), make_model, _dataset_fn(spec), _forward)
  trained = finetune.train_or_record(strategy, train_task, config, spec.directory, start,
                                     {**_settings(spec), "mean_accuracy": None, "per_task": None},
                                     cache.steps)
  if trained.diverged:
    return trained.diverged
  model, history, train_seconds = trained.model, trained.history, trained.seconds
  per_task = {task.name: _task_result(cache, i, spec, strategy)
              for i, task in enumerate(spec.tasks)}
  trained_images = (history["final_step"] - history["start_step"]) * spec.global_batch_size
  result = {**_settings(spec), "diverged": False, "per_task": per_task,
            "mean_accuracy": statistics.mean(r["accuracy"] for r in per_task.values()),
            "trained_parameters": modes.count(modes.trained_variables(model)),
            "images_per_second": trained_images / train_seconds if trained_images else None,
            "train_seconds": train_seconds, "seconds": time.perf_counter() - start}
  fileio.write_json_atomic(result_path, result)
  checkpoint_dir = os.path.join(spec.directory, finetune.CHECKPOINTS)
  if tf.io.gfile.exists(checkpoint_dir):
    tf.io.gfile.rmtree(checkpoint_dir)  # the artifacts hold what the run trained
  return result


def _spec(tasks, expert, config, phase, lr, steps, repeat, directory, data_dir):
  train, evaluate = protocol.splits(phase)
  seed = config.seed + repeat
  return MultitaskRunSpec(
      expert=expert, task=None, tasks=tasks, train_split=train, eval_split=evaluate,
      learning_rate=lr, steps=steps,
      batch_size=config.batch_size, resolution=protocol.module_resolution(config, expert),
      seed=seed, directory=os.path.join(directory, protocol.run_name(config, phase, lr, steps,
                                                                      seed)),
      data_dir=data_dir, decay=config.decay, precision=config.precision,
      finetune=multitask_args.MODE)


def _sweep(tasks, expert, config, directory, strategy, data_dir, cache):
  rows = []
  for lr in config.learning_rates:
    for steps in config.steps:
      for repeat in range(config.sweep_repeats):
        result = run(_spec(tasks, expert, config, "sweep", lr, steps, repeat, directory,
                           data_dir), strategy, cache)
        row = {"learning_rate": lr, "steps": steps, "seed": result["seed"],
               "val_accuracy": {name: r["accuracy"] for name, r in (
                   result["per_task"] or {}).items()} or None,
               "mean_val_accuracy": result["mean_accuracy"], "seconds": result["seconds"]}
        if finetune.diverged(result):
          row.update(diverged=True, diverged_at_step=result.get("diverged_at_step"))
        rows.append(row)
  return rows


def _best_point(sweep):
  """`(learning_rate, steps, mean val accuracy)` of the sweep point whose mean (over repeats) of
  the tasks' mean val accuracy is highest, among points with no diverged repeat; None if none."""
  points = {}
  for row in sweep:
    points.setdefault((row["learning_rate"], row["steps"]), []).append(row)
  finite = {key: statistics.mean(r["mean_val_accuracy"] for r in rows)
            for key, rows in points.items() if not any(r.get("diverged") for r in rows)}
  if not finite:
    return None
  (lr, steps), accuracy = max(finite.items(), key=lambda item: item[1])
  return lr, steps, accuracy


def _task_summary(task, index, sweep, best, final, seconds):
  """Task `task`'s (number `index` of the joint runs') result in the shape of a
  `protocol.run_protocol` result, finetune `records.MULTITASK`: its val accuracy at the `best`
  point, its test accuracy (median over the `final` runs) with interval, spread and the median
  run's packed correctness and artifact, and the cost (`protocol.cost`): its own trained
  parameters and bytes, the joint runs' images/s, and its share (1 / tasks) of their training
  and total (`seconds`) wall time."""
  count = len(final[0]["per_task"])
  at_best = [r["val_accuracy"][task.name] for r in sweep
             if (r["learning_rate"], r["steps"]) == (best["learning_rate"], best["steps"])]
  rows = [{"seed": r["seed"], "test_accuracy": mine["accuracy"],
           "test_size": mine["num_eval_examples"], "seconds": r["seconds"] / count,
           "precision": r["precision"], "correct_bits": mine["correct_bits"],
           "artifact": mine["artifact"], "trained_parameters": mine["trained_parameters"],
           "artifact_bytes": mine["artifact_bytes"], "images_per_second": r["images_per_second"],
           "train_seconds": r["train_seconds"] / count}
          for r in final for mine in [r["per_task"][task.name]]]
  summary = {"task": task.name, "task_index": index, "num_classes": task.num_classes,
             "best": {"learning_rate": best["learning_rate"], "steps": best["steps"],
                      "val_accuracy": statistics.mean(at_best)},
             "final": rows, "diverged": False, "seconds": seconds / count,
             "test_accuracy": statistics.median(r["test_accuracy"] for r in rows),
             **protocol.test_statistics(rows), **protocol.cost(records.MULTITASK, rows)}
  summary["artifact"] = next(r["artifact"] for r in rows
                             if r["seed"] == summary["test_correct"]["seed"])
  return summary


def run_protocol(tasks, expert, config, directory, strategy, data_dir=None, cache=None):
  """The VTAB-1k protocol of one multi-task patch model of `tasks` (Task objects, two or more)
  on `expert` (a `hub.expert_ref.ExpertRef`), its runs in `directory` (resumable).

  Takes the tasks, the expert, a `ProtocolConfig` in mode patch, the directory, a
  tf.distribute strategy, the tfds data dir and the caller's `finetune.ModelCache` (None: one
  owned by this call, released when it returns). Returns a dict: `sweep` (rows with each task's
  val accuracy and their mean), `best` ({learning_rate, steps, mean_val_accuracy}), `final` (the
  retrains' results without their per-task parts), `per_task` (per task, a protocol-shaped
  result: `_task_summary`), `diverged`, `seconds`. When every sweep point or a final retrain
  diverged, `diverged` is True with `diverged_in` and `message`, and `per_task` is None.
  """
  multitask_args.check([t.name for t in tasks], config.finetune, config.mixup_alpha)
  finetune.check_mode(expert, config.finetune)
  cache = cache or finetune.ModelCache()
  sweep = _sweep(tasks, expert, config, directory, strategy, data_dir, cache)
  seconds = sum(r["seconds"] for r in sweep)
  best = _best_point(sweep)
  if best is None:
    return {"sweep": sweep, "best": None, "final": [], "per_task": None, "diverged": True,
            "diverged_in": "sweep", "seconds": seconds,
            "message": f"every sweep point diverged (learning rates "
                       f"{list(config.learning_rates)} x steps {list(config.steps)})"}
  lr, steps, accuracy = best
  final = [run(_spec(tasks, expert, config, "final", lr, steps, repeat, directory, data_dir),
               strategy, cache) for repeat in range(config.final_repeats)]
  seconds += sum(r["seconds"] for r in final)
  output = {"sweep": sweep, "best": {"learning_rate": lr, "steps": steps,
                                     "mean_val_accuracy": accuracy},
            "final": [{k: v for k, v in r.items() if k != "per_task"} for r in final],
            "seconds": seconds, "diverged": False}
  if any(finetune.diverged(r) for r in final):
    return {**output, "per_task": None, "diverged": True, "diverged_in": "final",
            "message": f"a final retrain at learning rate {lr:g}, {steps} steps diverged"}
  output["per_task"] = [_task_summary(task, i, sweep, output["best"], final, seconds)
                        for i, task in enumerate(tasks)]
  return output


def _with_artifact(result, config, directory):
  """A single-task protocol `result` (runs in `directory`) with `artifact`: the directory of its
  median retrain's artifact (read from its result.json), None when it has none."""
  correct = result.get("test_correct") or {}
  artifact = None
  if result.get("best") and correct.get("seed") is not None:
    name = protocol.run_name(config, "final", result["best"]["learning_rate"],
                             result["best"]["steps"], correct["seed"])
    artifact = fileio.read_json(os.path.join(directory, name, finetune.RESULT)).get("artifact")
  return {**result, "artifact": artifact}


def comparison(multi, single):
  """How task's multi-task result `multi` compares with its single-task patch result `single`
  (both protocol-shaped): `within_single_interval` (the multi-task accuracy inside the single
  run's Wilson interval), `outside_by` (how far outside, 0 inside) and `paired` (the paired
  comparison on the same test examples, `report.compare_results`); None where either lacks it."""
  if multi.get("test_accuracy") is None or single.get("test_interval") is None:
    return {"within_single_interval": None, "outside_by": None, "paired": None}
  low, high = single["test_interval"]
  accuracy = multi["test_accuracy"]
  outside = max(low - accuracy, accuracy - high, 0.0)
  return {"within_single_interval": outside == 0.0, "outside_by": outside,
          "paired": report.compare_results(multi, single)}


def choose_expert(candidates, selection_name):
  """`(name, ExpertRef)` of the one expert a multi-task run trains on: the expert of the pool
  `candidates` (`select.selection.Candidates`) named `selection_name`, else the pool's only
  expert. Raises UserError naming the selection and the pool's experts otherwise."""
  by_name = {selection.expert_key(e): e for e in candidates.experts}
  if selection_name in by_name:
    return selection_name, by_name[selection_name].ref
  if len(by_name) == 1:
    return next(iter(by_name)), candidates.experts[0].ref
  return multitask_args.check_expert(selection_name, list(by_name))


def evaluate(tasks, expert, config, directory, strategy, data_dir=None, expert_name=None):
  """Multi-task patches of `tasks` on `expert` (an `ExpertRef`), each task beside its single-task patch run.

  Takes task names or `Task`s (two or more, distinct), the expert, a
  `ProtocolConfig` with `finetune="patch"` (mixup off), the work directory (runs go to
  `directory/multitask_<tasks>/<expert>/...` and `directory/<task>/<expert>/...`), a
  tf.distribute strategy, the tfds data dir and the expert's name (default: its module name).
  Returns the result (JSON-ready; `write_result` stores it): `tasks`, `expert`, `mixing`,
  `config`, the multi-task protocol (`sweep`, `best`, `final`), `per_task` (one row per task:
  `multitask` and `single_task`, protocol-shaped results, and their `comparison`),
  `trained_parameters`, `artifact_bytes` and `seconds` of both. Raises UserError for another
  mode, fewer than two tasks, a repeated task, mixup, or a module tfexperts cannot rebuild.
  """
  tasks = [t if isinstance(t, tasks_lib.Task) else tasks_lib.get_task(t, data_dir) for t in tasks]
  names = multitask_args.check([t.name for t in tasks], config.finetune, config.mixup_alpha)
  finetune.check_mode(expert, config.finetune)
  expert_name = expert_name or selection.expert_key(expert)
  multi = run_protocol(tasks, expert, config,
                       os.path.join(directory, f"multitask_{multitask_args.label(names)}",
                                    expert_name), strategy, data_dir)
  multi_by_task = {row["task"]: row for row in multi["per_task"] or []}
  per_task = []
  for task in tasks:
    single_dir = os.path.join(directory, task.name, expert_name)
    single = _with_artifact(
        protocol.run_protocol(expert, task, config, single_dir, strategy, data_dir), config,
        single_dir)
    mine = multi_by_task.get(task.name) or {
        "finetune": records.MULTITASK, "diverged": True, "test_accuracy": None,
        "best": None, "final": [], "seconds": multi["seconds"] / len(tasks),
        "message": multi.get("message")}
    per_task.append({"task": task.name, "num_classes": task.num_classes, "multitask": mine,
                     "single_task": single, **comparison(mine, single)})

  def total(run_kind, field):
    return sum(r[run_kind].get(field) or 0 for r in per_task)
  return {"tasks": names, "expert": {"name": expert_name, "handle": expert.handle},
          "finetune": multitask_args.MODE, "mixing": MIXING,
          "config": {k: list(v) if isinstance(v, tuple) else v
                     for k, v in dataclasses.asdict(config).items()},
          **{k: multi.get(k) for k in ("sweep", "best", "final", "diverged", "diverged_in",
                                       "message")},
          "per_task": per_task,
          **{field: {kind: total(kind, field) for kind in ("multitask", "single_task")}
             for field in ("trained_parameters", "artifact_bytes", "seconds")}}


def write_result(results_dir, result):
  """Writes `result` (of `evaluate`) atomically to `multitask_args.result_path`; returns it."""
  path = multitask_args.result_path(results_dir, result["tasks"])
  fileio.write_json_atomic(path, result)
  return path


def _accuracy(block):
  if block.get("test_accuracy") is None:
    return "diverged"
  low, high = block.get("test_interval") or (None, None)
  interval = "" if low is None else f" [{100 * low:.1f}, {100 * high:.1f}]"
  return f"{100 * block['test_accuracy']:.1f}%{interval}"


def table(result):
  """The result as a text table: per task the multi-task and single-task accuracy with 95%
  Wilson intervals, whether the first is inside the second's interval (else by how much it is
  not), the paired verdict, trained parameters and artifact bytes; then both runs' totals."""
  lines = [f"multi-task patches on {result['expert']['name']}: {', '.join(result['tasks'])}",
           f"mixing: {result['mixing']}",
           f"best sweep point (mean val accuracy over tasks): {result.get('best')}", "",
           f"{'task':<22} {'multi-task':<24} {'single-task':<24} {'inside':<14} "
           f"{'paired verdict':<26} {'params':>9} {'bytes':>9}"]
  for row in result["per_task"]:
    multi, single = row["multitask"], row["single_task"]
    inside = {True: "yes", False: f"no (by {100 * (row['outside_by'] or 0):.1f})",
              None: "-"}[row["within_single_interval"]]
    verdict = (row["paired"] or {}).get("verdict", "-")
    lines.append(f"{row['task']:<22} {_accuracy(multi):<24} {_accuracy(single):<24} "
                 f"{inside:<14} {verdict:<26} {multi.get('trained_parameters') or 0:>9} "
                 f"{multi.get('artifact_bytes') or 0:>9}")
  params, nbytes, seconds = (result["trained_parameters"], result["artifact_bytes"],
                             result["seconds"])
  lines.append(f"total: multi-task {params['multitask']} parameters, {nbytes['multitask']} bytes, "
               f"{seconds['multitask']:.1f}s; single-task runs {params['single_task']} "
               f"parameters, {nbytes['single_task']} bytes, {seconds['single_task']:.1f}s")
  return "\n".join(lines)
