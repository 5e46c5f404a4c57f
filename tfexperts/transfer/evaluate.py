"""The evaluation policy of bin/vtab_eval as a library: select, fine-tune, record, per task.

`run(EvalConfig(...))` is what `bin/vtab_eval` does after parsing its flags (and what the demo
calls in-process). For each task it embeds the pool and scores it with the proxies the selection
strategy asks for, fine-tunes the experts the strategy chooses with the VTAB-1k protocol, and
writes one `records.ResultRecord` (and a row of results.csv), assembled here whatever the
strategy: each strategy (`transfer.strategies`) says which experts it fine-tunes and adds its own
part to the record.

With `EvalConfig.multitask`, the tasks' patches train together on one expert
(`transfer.multitask.evaluate`) and each task gets two records: its single-task patch run
(finetune patch) and its multi-task one (finetune `records.MULTITASK`, with the `multitask`
part), both of selection = the expert's name, so the report pairs them (`report.REFERENCE_MODES`).
"""
import json
import platform
import time

import tensorflow as tf

from tfexperts.data import tasks as tasks_lib
from tfexperts.select import selection
from tfexperts.transfer import eval_config
from tfexperts.transfer import records
from tfexperts.transfer import report
from tfexperts.transfer import strategies

EvalConfig = eval_config.EvalConfig
UpstreamSpec = eval_config.UpstreamSpec


def versions():
  """Versions of tfexperts and the stack it runs on (recorded with every result)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return {"tfexperts": metadata.version("tfexperts"), "tensorflow": tf.__version__,
          "keras": keras.__version__, "tensorflow_datasets": tfds.__version__,
          "tensorflow_hub": hub.__version__, "python": platform.python_version()}


def _accuracy_text(result):
  """`test accuracy 0.8123`, or `diverged (<why>)` for a protocol result without accuracy."""
  if result.get("test_accuracy") is None:
    return f"diverged ({result.get('message', 'no accuracy')})"
  return f"test accuracy {result['test_accuracy']:.4f}"


def _diverged_fields(per_expert, reported):
  """The record's `diverged` flag (the reported experts all diverged: no accuracy) and, for every
  fine-tuned expert that diverged, `diverged_experts` {expert: why}."""
  why = {name: r.get("message", "diverged") for name, r in per_expert.items()
         if r.get("diverged")}
  return {"diverged": bool(reported) and all(name in why for name in reported),
          "diverged_experts": why or None}


def _score(run, strategy):
  """Embeds the pool and scores it with the strategy's proxies (and knn_topk's short runs when
  the strategy runs them); fills `run`'s source, scores, picks and timings."""
  config = run.config
  start = time.perf_counter()
  run.source = selection.FeatureSource(
      run.task, "train800", config.data_dir, config.protocol.resolution,
      cache_dir=config.dirs["cache"] if strategy.cached_features else None,
      strategy=run.tf_strategy, engine=config.engine, precision=config.precision)
  print(f"\n== {run.task.name}: {run.source.describe_resolution(run.candidates.experts)}; "
        f"precision {config.precision}", flush=True)
  run.scores, run.proxy_seconds = selection.score(
      run.candidates, run.source, strategy.scored(config.report_proxies), seed=config.seed)
  run.picks = {proxy: selection.best(values) for proxy, values in run.scores.items()}
  run.scoring_seconds = time.perf_counter() - start
  if strategy.runs_topk(config.report_proxies):
    run.topk = strategies.KnnTopk.short_runs(run)
    run.picks[strategies.TOPK] = run.topk.pick


def _precision(run):
  """The record's `precision`: requested, embedded per pool expert, fine-tuned per expert."""
  return {"requested": run.config.precision,
          "embedded": {name: run.source.precision_of(e) for name, e in run.by_name.items()},
          "fine_tuned": {name: sorted({r.get("precision", "float32") for r in (
              result.get("final") or [])} or {run.config.precision})
                         for name, result in run.per_expert.items()}}


def _record(run, strategy, chosen):
  """The task's `ResultRecord`: the fields every strategy has, then the strategy's own part."""
  task, config, per_expert = run.task, run.config, run.per_expert
  accuracies = {name: r["test_accuracy"] for name, r in per_expert.items()
                if r.get("test_accuracy") is not None}
  reported = strategy.reported(chosen, accuracies)
  reported_result = per_expert.get(reported) or {}
  times = {"selection_seconds": strategy.selection_seconds(run),
           "finetune_seconds": sum(r["seconds"] for r in per_expert.values())}
  if run.topk is not None:
    times["topk_seconds"] = run.topk.seconds
  return records.ResultRecord(
      task=task.name, task_spec=task.spec or task.name,
      splits=task.describe_splits(config.data_dir), group=task.group,
      selection=config.selection, finetune=config.protocol.finetune, chosen=chosen, proxy_scores=run.scores, picks=run.picks,
      per_expert=per_expert, test_accuracy=accuracies.get(reported),
      **_diverged_fields(per_expert, [reported] if reported else chosen),
      test_interval=reported_result.get("test_interval"),
      test_size=reported_result.get("test_size"),
      config=strategies.protocol_dict(config.protocol), times=times,
      images_embedded=run.source.stats.images_embedded, versions=versions(),
      num_experts=len(run.candidates.experts), proxy_seconds=run.proxy_seconds,
      resolution={name: run.source.resolution_of(e) for name, e in run.by_name.items()},
      precision=_precision(run), topk=run.topk,
      **strategy.record_parts(run, accuracies, reported))


def _multitask_record(task, config, expert, result, num_experts, multitask_part=None):
  """The `ResultRecord` of one task of a multi-task evaluation: `result` (protocol-shaped: the
  single-task patch run's, or the task's multi-task result with `multitask_part`, a
  `records.MultitaskResult`) of `expert` in a pool of `num_experts`; no proxies were scored."""
  return records.ResultRecord(
      task=task.name, task_spec=task.spec or task.name,
      splits=task.describe_splits(config.data_dir), group=task.group, selection=expert,
      finetune=result["finetune"], chosen=[expert], proxy_scores={}, picks={},
      per_expert={expert: result}, test_accuracy=result.get("test_accuracy"),
      **_diverged_fields({expert: result}, [expert]),
      test_interval=result.get("test_interval"), test_size=result.get("test_size"),
      config=strategies.protocol_dict(config.protocol),
      times={"selection_seconds": 0.0, "finetune_seconds": result["seconds"]},
      images_embedded=0, versions=versions(), num_experts=num_experts, proxy_seconds=None,
      resolution=None,
      precision={"requested": config.precision, "embedded": {}, "fine_tuned": {
          expert: sorted({r.get("precision", config.precision) for r in result.get("final") or []}
                         or {config.precision})}},
      multitask=multitask_part)


def run_multitask(config, task_list, candidates, strategy):
  """Trains the patches of `task_list` (`config.multitask`) together on the expert
  `config.selection` names (or the pool's only one) beside each task's single-task patch run;
  writes the joint result (`multitask.write_result`), prints its table, and writes two records per
  task (`_multitask_record`). Returns the records, two per task (patch, then patch_multitask)."""
  from tfexperts.transfer import multitask  # pylint: disable=g-import-not-at-top
  name, expert = multitask.choose_expert(candidates, config.selection)
  result = multitask.evaluate(task_list, expert, config.protocol, config.dirs["work"], strategy,
                              config.data_dir, expert_name=name)
  path = multitask.write_result(config.results_dir, result)
  print("\n" + multitask.table(result) + f"\n\nwritten: {path}", flush=True)
  out = []
  for task, row in zip(task_list, result["per_task"]):
    part = records.MultitaskResult(
        tasks=result["tasks"], handle=expert.handle, mixing=result["mixing"], best=result["best"],
        within_single_interval=row["within_single_interval"], outside_by=row["outside_by"])
    for record in (_multitask_record(task, config, name, row["single_task"],
                                     len(candidates.experts)),
                   _multitask_record(task, config, name, row["multitask"],
                                     len(candidates.experts), part)):
      report.write_record(config.results_dir, record)
      out.append(record)
  return out


def evaluate_task(run, strategy):
  """Selects, fine-tunes and records one task (`run`, a `strategies.TaskRun`) with `strategy`.

  Returns the `records.ResultRecord` (also written to the results dir).
  """
  _score(run, strategy)
  chosen = strategy.chosen(run.picks, list(run.by_name), run.baseline, run.task.name)
  print(f"\n== {run.task.name}: selection={run.config.selection} -> fine-tuning {chosen} "
        f"(selection took {run.scoring_seconds:.1f}s); splits "
        f"{run.task.describe_splits(run.config.data_dir)}", flush=True)
  for name in chosen:
    run.per_expert[name] = result = strategy.fine_tune(run, name)
    best = result["best"]
    print(f"   {name}: {_accuracy_text(result)}" + (f" (best {best})" if best else ""),
          flush=True)
  run.loaded.clear()  # a model selection loaded that no fine-tune took
  record = _record(run, strategy, chosen)
  report.write_record(run.config.results_dir, record)
  return record


def run(config, strategy=None):
  """Evaluates every task of `config` (an `EvalConfig`); returns their records, in task order
  (with `config.multitask`: `run_multitask`'s, two per task).

  Loads the tasks and the pool, resolves the selection against the pool's expert names
  (`strategies.get`), then runs `evaluate_task` per task, printing one JSON line per task and, at
  the end, the summary of `config.results_dir`. `strategy` defaults to `make_strategy()` (one
  device, or the visible GPUs). Raises UserError naming a bad task, expert or selection.
  """
  task_list = [tasks_lib.get_task(n, config.data_dir) for n in config.tasks]
  candidates = selection.load_candidates(config.experts)
  selection_strategy = strategies.get(config.selection, candidates.names())
  if strategy is None:
    from tfexperts.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    strategy = strategy_lib.make_strategy()
  if config.multitask:
    results = run_multitask(config, task_list, candidates, strategy)
    print(report.summarize(config.results_dir))
    return results
  prepared = selection_strategy.prepare(config)
  results = []
  for task in task_list:
    record = evaluate_task(strategies.TaskRun(task, config, candidates, strategy, prepared),
                           selection_strategy)
    print(json.dumps({"task": task.name, "selection": config.selection,
                      "chosen": record.chosen, "test_accuracy": record.test_accuracy}),
          flush=True)
    results.append(record)
  print(report.summarize(config.results_dir))
  return results
