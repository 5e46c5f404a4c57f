"""The VTAB-1k protocol: sweep on train800 -> val200, retrain the best on train800val200 -> test.

Learning rates are given at batch 512, as in VTAB, and passed through as such: the training loop
scales them linearly to the batch size (`train.loop_config.learning_rate_at`, the one place).
Each sweep point and each final retrain may be repeated with different seeds; the reported test
accuracy is the median of the final repeats (the paper: 3 retrains), with its 95% Wilson interval
on the test size and, with several repeats, their spread. The per-example test correctness of the
median run is kept (packed) so that two experts can be compared on the same examples.

A run that diverges (non-finite loss or weights) is recorded, not raised: a sweep point with a
diverged repeat is `diverged` and cannot be chosen (its val accuracy is None); if every point
diverges, or a final retrain does, the result is `diverged` with `test_accuracy` None.

`short_run` is the budget-limited fine-tune of `--selection=knn_topk`: one learning rate, a
fraction of the sweep's steps, train800 -> val200.
"""
import dataclasses
import os
import statistics

from tfexperts import bounds
from tfexperts import defaults
from tfexperts import lazy
from tfexperts import precision as precision_lib
from tfexperts.transfer import stats

# Lazy: `ProtocolConfig` is built by the binaries' flag checks, before TensorFlow loads.
metadata_lib = lazy.LazyModule("tfexperts.hub.metadata")
finetune = lazy.LazyModule("tfexperts.transfer.finetune")

# What each final run's row keeps of its `finetune.run` result: the mode's cost (`cost`).
COST_FIELDS = ("trained_parameters", "artifact_bytes", "images_per_second", "train_seconds")


def _check_finetune(finetune):
  return bounds.one_of("finetune", finetune, defaults.FINETUNE_MODES)


@dataclasses.dataclass
class ProtocolConfig:
  """Sweep and retrain settings (defaults: VTAB's {0.01, 0.001} x {2500, 10000} at batch 512).

  `resolution=None` fine-tunes each module at `hub.metadata.input_resolution` (its metadata's
  `input.resolution`, else 224); an integer overrides that for every module. `precision`
  (`tfexperts.precision`: float32, bfloat16 or float16) is the compute precision of every
  fine-tune; runs at a reduced one live in directories of their own (suffix `_<precision>`).

  `finetune` (`transfer.modes`: full, patch, adapter, head) is what trains besides the head; runs
  of the other modes than full live in directories of their own (suffix `_<mode>`, before the
  precision's). `learning_rates=None` takes the mode's sweep, `defaults.LEARNING_RATES`:
  full {0.01, 0.001} at batch 512, as BiT and VTAB; patch, adapter and head {0.1, 0.01}: with
  the backbone frozen only a small, partly zero-initialised part of the network moves, and
  linear probes and patches commonly need about 10x full fine-tuning's rates. `quick` takes
  `defaults.QUICK_LEARNING_RATES` (full {0.1, 0.03}, the others {1.0, 0.3}). Given rates override.
  """
  learning_rates: tuple = None
  steps: tuple = (2500, 10000)
  batch_size: int = 512
  resolution: int = None
  sweep_repeats: int = 1
  final_repeats: int = 3
  decay: str = "step"
  mixup_alpha: float = 0.0
  seed: int = 0
  precision: str = precision_lib.DEFAULT
  finetune: str = defaults.FINETUNE

  def __post_init__(self):
    precision_lib.check(self.precision)
    _check_finetune(self.finetune)
    if self.learning_rates is None:
      self.learning_rates = defaults.LEARNING_RATES[self.finetune]
    if not self.learning_rates or not self.steps:
      raise ValueError("The sweep needs at least one learning rate and one step count. Received: "
                       f"learning_rates={self.learning_rates!r}, steps={self.steps!r}")
    for name in ("batch_size", "resolution", "sweep_repeats", "final_repeats"):
      value = getattr(self, name)
      if name == "resolution" and value is None:
        continue
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")

  @classmethod
  def quick(cls, **overrides):
    """A CPU-sized preset: small batch and few steps, one sweep repeat, one final run, and the
    mode's quick learning rates (`defaults.QUICK_LEARNING_RATES`) unless `overrides` give some."""
    finetune = _check_finetune(overrides.get("finetune", defaults.FINETUNE))
    return cls(**{"learning_rates": defaults.QUICK_LEARNING_RATES[finetune], "steps": (150,),
                  "batch_size": 32, "sweep_repeats": 1, "final_repeats": 1, "decay": "cosine",
                  **{k: v for k, v in overrides.items() if v is not None}})

  def with_finetune(self, finetune):
    """This config in mode `finetune`; learning rates that are the current mode's VTAB or quick
    grid become the new mode's same grid, others (given by the user) stay."""
    rates = self.learning_rates
    for grids in (defaults.LEARNING_RATES, defaults.QUICK_LEARNING_RATES):
      if tuple(rates) == grids[self.finetune]:
        rates = grids[_check_finetune(finetune)]
        break
    return dataclasses.replace(self, finetune=finetune, learning_rates=rates)


def module_resolution(config, expert):
  """The image size `expert` (an `ExpertRef`) is fine-tuned at: `config.resolution`, else its
  metadata's rule."""
  if config.resolution is not None:
    return config.resolution
  return metadata_lib.input_resolution(expert.metadata)


def splits(phase):
  """`(train split, eval split)` of a protocol phase: "final" trains on train800val200 and tests;
  the sweep (and short runs) train on train800 and evaluate on val200."""
  return ("train800val200", "test") if phase == "final" else ("train800", "val200")


def run_name(config, phase, lr, steps, seed):
  """The directory name of one run: phase, learning rate (at batch 512), steps, seed, and the
  mode and precision when not full / float32."""
  return f"{phase}_lr{lr:g}_steps{steps}_seed{seed}" + (
      "" if config.finetune == "full" else f"_{config.finetune}") + (
      "" if config.precision == "float32" else f"_{config.precision}")


def _spec(config, expert, task, phase, lr, steps, repeat, directory, data_dir):
  train, evaluate = splits(phase)
  seed = config.seed + repeat
  return finetune.RunSpec(
      expert=expert, task=task, train_split=train, eval_split=evaluate,
      learning_rate=lr, steps=steps,
      batch_size=config.batch_size, resolution=module_resolution(config, expert), seed=seed,
      directory=os.path.join(directory, run_name(config, phase, lr, steps, seed)),
      data_dir=data_dir, decay=config.decay, mixup_alpha=config.mixup_alpha,
      precision=config.precision, finetune=config.finetune)


def run_protocol(expert, task, config, directory, strategy, data_dir=None, cache=None):
  """Runs the sweep and the final retrains of one expert on one task.

  Every run goes through one `finetune.ModelCache`: the expert is loaded and its training step
  traced once. `cache`: the caller's, e.g. holding the expert from knn_topk's short run (None:
  one owned by this call, released when the protocol returns).

  Args:
    expert: the expert's `hub.expert_ref.ExpertRef`.
    task: a `tfexperts.data.tasks.Task`.
    config: a `ProtocolConfig`.
    directory: where this expert's runs for this task live (resumable).
    strategy: a tf.distribute strategy.
    data_dir: tfds data dir.

  Returns:
    A dict: `sweep` (one row per run: lr at batch 512, steps, seed, val accuracy; `diverged`
    rows have None), `best` ({learning_rate, steps, val_accuracy} among the points that did not
    diverge), `final` (rows with test accuracy), `test_accuracy` (median of the final runs),
    `diverged` and `seconds` (sum over runs), and the mode's cost (`cost`: finetune,
    trained_parameters, artifact_bytes, images_per_second, train_seconds). When every sweep
    point or a final retrain diverged: `diverged` True, `diverged_in` ("sweep" or "final"), `message`, and `test_accuracy` None
    (`best` None too when the whole sweep diverged).
  """
  finetune.check_mode(expert, config.finetune)
  cache = finetune.ModelCache() if cache is None else cache
  sweep = []
  for lr in config.learning_rates:
    for steps in config.steps:
      for repeat in range(config.sweep_repeats):
        result = finetune.run(_spec(config, expert, task, "sweep", lr, steps, repeat, directory,
                                    data_dir), strategy, cache)
        row = {"learning_rate": lr, "steps": steps, "seed": result["seed"],
               "val_accuracy": result["accuracy"], "seconds": result["seconds"]}
        if finetune.diverged(result):
          row.update(diverged=True, diverged_at_step=result.get("diverged_at_step"))
        sweep.append(row)
  points = {}
  for row in sweep:
    points.setdefault((row["learning_rate"], row["steps"]), []).append(row)
  finite_points = {key: [r["val_accuracy"] for r in rows] for key, rows in points.items()
                   if not any(r.get("diverged") for r in rows)}
  seconds = sum(r["seconds"] for r in sweep)
  if not finite_points:
    return {"sweep": sweep, "best": None, "final": [], "test_accuracy": None,
            "diverged": True, "diverged_in": "sweep", "seconds": seconds,
            "message": f"every sweep point diverged (learning rates "
                       f"{list(config.learning_rates)} x steps {list(config.steps)})"}
  (best_lr, best_steps), best_accs = max(finite_points.items(),
                                         key=lambda item: statistics.mean(item[1]))
  final = []
  for repeat in range(config.final_repeats):
    result = finetune.run(_spec(config, expert, task, "final", best_lr, best_steps, repeat,
                                directory, data_dir), strategy, cache)
    row = {"seed": result["seed"], "test_accuracy": result["accuracy"],
           "test_size": result.get("num_eval_examples"), "seconds": result["seconds"],
           "precision": result.get("precision", "float32"),
           "correct_bits": result.get("correct_bits"),
           **{k: result.get(k) for k in COST_FIELDS}}
    if finetune.diverged(result):
      row.update(diverged=True, diverged_at_step=result.get("diverged_at_step"))
    final.append(row)
  output = {"sweep": sweep,
            "best": {"learning_rate": best_lr, "steps": best_steps,
                     "val_accuracy": statistics.mean(best_accs)},
            "final": final, "diverged": False,
            "seconds": seconds + sum(r["seconds"] for r in final),
            **cost(config.finetune, final)}
  if any(r.get("diverged") for r in final):
    output.update(test_accuracy=None, diverged=True, diverged_in="final",
                  message=f"the final retrain at learning rate {best_lr:g}, {best_steps} steps "
                          f"diverged ({sum(bool(r.get('diverged')) for r in final)} of "
                          f"{len(final)} repeats)")
    return output
  output["test_accuracy"] = statistics.median(r["test_accuracy"] for r in final)
  output.update(test_statistics(final))
  return output


def cost(finetune, final):
  """Mode `finetune`'s cost over the final runs (rows with the `COST_FIELDS`): `finetune`,
  `trained_parameters` and `artifact_bytes` (what one task stores), `images_per_second` (their mean training throughput) and
  `train_seconds` (their training loops' wall time; `seconds` adds loading and evaluation).
  Values runs written before the fields existed lack are None."""
  rates = [r["images_per_second"] for r in final if r.get("images_per_second")]
  loops = [r["train_seconds"] for r in final if r.get("train_seconds") is not None]
  return {"finetune": finetune,
          "trained_parameters": final[0].get("trained_parameters") if final else None,
          "artifact_bytes": final[0].get("artifact_bytes") if final else None,
          "images_per_second": statistics.mean(rates) if rates else None,
          "train_seconds": sum(loops) if loops else None}


def test_statistics(final):
  """Interval, spread and paired-comparison data of the final runs (rows of `run_protocol`).

  Returns `test_size`, `test_interval` (95% Wilson of the median accuracy on the test size),
  `test_spread` ([min, max] over the repeats) and `test_correct` (the packed per-example
  correctness of the median run; with an even number of repeats the lower middle one), or {}
  for rows without a test size.
  """
  if not final or any(r.get("test_size") is None for r in final):
    return {}
  size = final[0]["test_size"]
  median = statistics.median(r["test_accuracy"] for r in final)
  ordered = sorted(final, key=lambda r: r["test_accuracy"])
  middle = ordered[(len(ordered) - 1) // 2]
  return {"test_size": size,
          "test_interval": list(stats.wilson_interval(round(median * size), size)),
          "test_spread": [ordered[0]["test_accuracy"], ordered[-1]["test_accuracy"]],
          "test_correct": {"seed": middle["seed"], "bits": middle.get("correct_bits")}}


def short_run(expert, task, config, learning_rate, steps, directory, strategy, data_dir=None,
              cache=None):
  """One budget-limited fine-tune (train800 -> val200) of `knn_topk`; returns its result dict.

  The learning rate is at batch 512 like the sweep's; the run lives (and resumes) in
  `directory/short_lr{lr}_steps{steps}_seed{seed}`. `cache`: the caller's `finetune.ModelCache`
  (None: the run loads its expert for itself).
  """
  finetune.check_mode(expert, config.finetune)
  return finetune.run(_spec(config, expert, task, "short", learning_rate, steps, 0, directory,
                            data_dir), strategy, cache)
