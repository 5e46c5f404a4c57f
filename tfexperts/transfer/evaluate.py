"""The evaluation policy of bin/vtab_eval as a library: select, fine-tune, record, per task.

`run(EvalConfig(...))` is what `bin/vtab_eval` does after parsing its flags (and what the demo
calls in-process). For each task it scores the pool with the reported proxies, picks the experts
the selection asks for, fine-tunes them with the VTAB-1k protocol, and writes a JSON record (and a
row of results.csv):

  selection       fine-tuned experts
  a proxy name    the proxy's pick (`defaults.SELECTION_PROXIES`)
  knn_topk        kNN's top `topk` get short fine-tunes; the best on val200 gets the protocol
  dat             Domain Adaptive Transfer's task-specific model (`transfer.dat`), with the cost
                  of kNN selection beside it (`evaluate_dat`)
  all_experts     every expert: the oracle, each strategy's accuracy, regret and Kendall's tau
  all_proxies     the baseline and every expert some reported proxy picks
  an expert name  that expert
"""
import dataclasses
import json
import os
import platform
import time
from typing import Optional

import tensorflow as tf

from tfexperts import defaults
from tfexperts import errors
from tfexperts import fileio
from tfexperts import precision as precision_lib
from tfexperts.data import tasks as tasks_lib
from tfexperts.select import proxies as proxies_lib
from tfexperts.select import selection
from tfexperts.transfer import dat as dat_lib
from tfexperts.transfer import protocol as protocol_lib
from tfexperts.transfer import report
from tfexperts.transfer import topk as topk_lib

SELECTIONS = defaults.SELECTIONS
TOPK = defaults.TOPK
FINE_TUNE_SEVERAL = defaults.FINE_TUNE_SEVERAL


@dataclasses.dataclass
class UpstreamSpec:
  """The baseline's upstream data, for `selection="dat"` (as bin/train_experts names it)."""
  dataset: str
  hierarchy: Optional[str] = None
  data_dir: Optional[str] = None
  split: str = "train"
  image_key: str = "image"
  label_key: str = "label"

  def open(self):
    """The `tfexperts.data.upstream.Upstream` this spec names."""
    from tfexperts.data import offline  # pylint: disable=g-import-not-at-top
    return offline.open_upstream(self.dataset, self.hierarchy, self.data_dir, split=self.split,
                                 image_key=self.image_key, label_key=self.label_key)


@dataclasses.dataclass
class EvalConfig:
  """Everything one evaluation needs (bin/vtab_eval's flags of the same names).

  Attributes:
    tasks: task names or task strings (`tfexperts.data.tasks.get_task`); `["vtab"]`: all 19.
    experts: collection directories, hub handles and/or published collections.
    selection: one of SELECTIONS, or the name of one expert of the pool.
    report_proxies: proxies scored and recorded for every task (TOPK included: all_experts /
      all_proxies also run knn_topk).
    topk, topk_steps_fraction, topk_learning_rate: knn_topk's budget (see `transfer.topk`).
    protocol: the `protocol_lib.ProtocolConfig` of every fine-tune.
    data_dir: the tasks' tfds data dir.
    results_dir: records, results.csv, summary; workdir (fine-tuning checkpoints) and cache_dir
      (features) default to RESULTS_DIR/runs and RESULTS_DIR/features.
    seed: seed of the proxies that take one.
    engine: the engine embedding the pool for selection ("tensorflow" or "openvino", see
      `select.selection.FeatureSource`); fine-tuning always runs in TensorFlow.
    dat, upstream: `dat_lib.DatConfig` and `UpstreamSpec`, for `selection="dat"`.
    precision: compute precision of embedding and fine-tuning (`tfexperts.precision`); None
      takes `protocol.precision`, a value replaces it there.
  """
  tasks: list
  experts: list
  selection: str = "knn"
  report_proxies: tuple = defaults.REPORT_PROXIES
  topk: int = 3
  topk_steps_fraction: float = 0.25
  topk_learning_rate: Optional[float] = None
  protocol: protocol_lib.ProtocolConfig = dataclasses.field(
      default_factory=protocol_lib.ProtocolConfig)
  data_dir: Optional[str] = None
  results_dir: str = "results"
  workdir: Optional[str] = None
  cache_dir: Optional[str] = None
  seed: int = 0
  engine: str = "tensorflow"
  dat: Optional[dat_lib.DatConfig] = None
  upstream: Optional[UpstreamSpec] = None
  precision: Optional[str] = None

  def __post_init__(self):
    if self.precision is None:
      self.precision = self.protocol.precision
    elif self.protocol.precision != precision_lib.check(self.precision):
      self.protocol = dataclasses.replace(self.protocol, precision=self.precision)
    unknown = [p for p in self.report_proxies if p not in proxies_lib.PROXIES and p != TOPK]
    if unknown:
      raise errors.UserError(f"report_proxies: unknown {unknown}. Valid: "
                             f"{sorted(proxies_lib.PROXIES) + [TOPK]}")
    if not 0.0 < self.topk_steps_fraction <= 1.0:
      raise errors.UserError(f"topk_steps_fraction: {self.topk_steps_fraction!r} must be in "
                             "(0, 1].")
    if self.selection == "dat" and self.dat is None:
      self.dat = dat_lib.DatConfig(seed=self.seed)
    if self.selection == "dat" and self.upstream is None:
      raise errors.UserError("selection='dat' fine-tunes the baseline on its upstream data: name "
                             "it (upstream / --upstream_dataset).")

  @property
  def dirs(self):
    """`{"results", "work", "cache"}` directories."""
    return {"results": self.results_dir,
            "work": self.workdir or os.path.join(self.results_dir, "runs"),
            "cache": self.cache_dir or os.path.join(self.results_dir, "features")}

  def task_names(self):
    """The task names asked for (`["vtab"]`: the 19 VTAB-1k tasks)."""
    return list(tasks_lib.VTAB_TASKS) if list(self.tasks) == ["vtab"] else list(self.tasks)


def versions():
  """Versions of tfexperts and the stack it runs on (recorded with every result)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  return {"tfexperts": metadata.version("tfexperts"), "tensorflow": tf.__version__,
          "keras": keras.__version__, "tensorflow_datasets": tfds.__version__,
          "tensorflow_hub": hub.__version__, "python": platform.python_version()}


def _protocol_dict(config):
  """The record's `config`: the protocol's fields, `finetune` left out at full (so records from
  before the field existed compare equal: `oracle_regret`)."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in config.__dict__.items()
          if not (k == "finetune" and v == defaults.FINETUNE)}


def _topk(task, by_name, knn_scores, config, strategy):
  return topk_lib.select({n: e.handle for n, e in by_name.items()}, knn_scores, task,
                         config.protocol, os.path.join(config.dirs["work"], task.name), strategy,
                         k=config.topk, steps_fraction=config.topk_steps_fraction,
                         learning_rate=config.topk_learning_rate, data_dir=config.data_dir)


def oracle_regret(results_dir, task, config_dict, accuracy):
  """Regret of `accuracy` against an all_experts record of the same task and protocol (the dict
  of its `ProtocolConfig`) in `results_dir`, or None when there is none."""
  path = report.record_path(results_dir, task.name, "all_experts")
  if not tf.io.gfile.exists(path):
    return None
  oracle = fileio.read_json(path)
  if oracle.get("config") != config_dict or "oracle" not in oracle.get("strategy_accuracy", {}):
    return None
  return oracle["strategy_accuracy"]["oracle"] - accuracy


def evaluate_dat(task, candidates, upstream, config, strategy):
  """selection="dat": Domain Adaptive Transfer for one task, with kNN selection's cost beside it.

  Takes the task, the pool (`selection.Candidates`), the opened upstream data, the `EvalConfig`
  and the strategy. Returns the record (also written): the DAT model's protocol result, its
  weights summary, the cost of each DAT step, and the ratio of DAT's upstream fine-tuning to kNN
  selection over the pool, both measured in this run (kNN embeds with the feature cache off, so
  it is timed whole).
  """
  dirs = config.dirs
  start = time.perf_counter()
  source = selection.FeatureSource(task, "train800", config.data_dir, config.protocol.resolution)
  scores, _ = selection.score(candidates, source, ["knn"])
  knn_seconds = time.perf_counter() - start
  result = dat_lib.run(task, candidates.baseline, upstream, config.dat, config.protocol,
                       os.path.join(dirs["work"], task.name, "dat"), strategy, config.data_dir,
                       dirs["cache"])
  name = f"dat_{task.name}"
  protocol_result = result["protocol"]
  cost = result["cost"]
  ratio = cost["upstream_training"]["seconds"] / knn_seconds
  print(f"   dat: {_accuracy_text(protocol_result)}; upstream fine-tuning "
        f"{cost['upstream_training']['seconds']:.1f}s vs kNN selection over "
        f"{len(candidates.experts)} experts {knn_seconds:.1f}s (x{ratio:.1f})", flush=True)
  record = {"task": task.name, "task_spec": task.spec or task.name,
            "splits": task.describe_splits(config.data_dir), "group": task.group,
            "selection": "dat", "chosen": [name],
            "proxy_scores": scores, "picks": {"knn": selection.best(scores["knn"])},
            "per_expert": {name: protocol_result}, "test_accuracy": result["test_accuracy"],
            **_diverged_fields({name: protocol_result}, [name]),
            "test_interval": protocol_result.get("test_interval"),
            "test_size": protocol_result.get("test_size"),
            "config": _protocol_dict(config.protocol),
            "dat": {"handle": result["handle"], "weights": result["weights"], "cost": cost,
                    "config": dataclasses.asdict(config.dat),
                    "knn_selection": {"seconds": knn_seconds, "num_experts": len(
                        candidates.experts), "images_embedded": source.stats.images_embedded},
                    "upstream_training_over_knn": ratio},
            "times": {"selection_seconds": cost["label_distribution"]["seconds"]
                      + cost["upstream_training"]["seconds"],
                      "finetune_seconds": protocol_result["seconds"]},
            "images_embedded": source.stats.images_embedded, "versions": versions(),
            "num_experts": len(candidates.experts)}
  report.write_record(dirs["results"], record)
  return record


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
  fields = {"diverged": bool(reported) and all(name in why for name in reported)}
  if why:
    fields["diverged_experts"] = why
  return fields


def _chosen(selection_name, by_name, picks, baseline, task):
  """The experts a selection fine-tunes (names), from the proxies' picks."""
  if selection_name == "all_experts":
    return list(by_name)
  if selection_name == "all_proxies":
    return [n for n in by_name if n == baseline or n in picks.values()]
  if selection_name in SELECTIONS:
    if picks.get(selection_name) is None:
      raise errors.UserError(f"--selection={selection_name} could not score any expert on "
                             f"{task.name} (does the collection have what it needs?).")
    return [picks[selection_name]]
  return [selection_name]


def _strategy_block(record, selection_name, scores, picks, per_expert, accuracies, baseline,
                    best_name):
  """Adds each strategy's accuracy, interval, paired comparisons and (all_experts) the oracle's
  regret and Kendall's tau to a multi-expert `record`."""
  strategy_picks = {p: e for p, e in picks.items() if e in accuracies}
  if baseline in accuracies:
    strategy_picks["baseline"] = baseline
  strategy_accuracy = {p: accuracies.get(picks[p]) for p in picks}
  if baseline in accuracies:
    strategy_accuracy["baseline"] = accuracies[baseline]
  if selection_name == "all_experts" and best_name is not None:
    strategy_picks["oracle"] = best_name
    strategy_accuracy["oracle"] = accuracies[best_name]
    record["regret"] = {p: strategy_accuracy["oracle"] - a
                        for p, a in strategy_accuracy.items() if a is not None}
    record["kendall_tau"] = {p: report.kendall_tau(scores[p], accuracies) for p in scores}
  record["strategy_accuracy"] = strategy_accuracy
  record["strategy_interval"] = {p: per_expert[e].get("test_interval")
                                 for p, e in strategy_picks.items()}
  record["comparisons"] = report.paired_comparisons(per_expert, strategy_picks)


def evaluate_task(task, candidates, config, strategy):
  """Selects, fine-tunes and reports one task with `config.selection` (any but "dat").

  Takes the task, the pool (`selection.Candidates`), the `EvalConfig` and the strategy; returns
  the record (also written to disk).
  """
  selection_name = config.selection
  dirs = config.dirs
  by_name = {selection.expert_key(e): e for e in candidates.experts}
  start = time.perf_counter()
  source = selection.FeatureSource(task, "train800", config.data_dir, config.protocol.resolution,
                                   cache_dir=dirs["cache"], strategy=strategy,
                                   engine=config.engine, precision=config.precision)
  print(f"\n== {task.name}: {source.describe_resolution(candidates.experts)}; precision "
        f"{config.precision}", flush=True)
  want_topk = selection_name == TOPK or (selection_name in FINE_TUNE_SEVERAL
                                         and TOPK in config.report_proxies)
  scoring = [p for p in config.report_proxies if p != TOPK]
  if want_topk and "knn" not in scoring:
    scoring.append("knn")
  scores, proxy_seconds = selection.score(candidates, source, scoring, seed=config.seed)
  picks = {proxy: selection.best(values) for proxy, values in scores.items()}
  selection_seconds = time.perf_counter() - start
  topk_block = None
  if want_topk:
    topk_block = _topk(task, by_name, scores["knn"], config, strategy)
    picks[TOPK] = topk_block["pick"]
    topk_block["cost"] = {
        "seconds": proxy_seconds["features"] + proxy_seconds["knn"] + topk_block["seconds"],
        # kNN embeds train800 once per expert (cached features cost nothing in this run).
        "images": len(by_name) * task.num_examples("train800", config.data_dir)
                  + topk_block["images"]}
    if selection_name == TOPK:
      selection_seconds += topk_block["seconds"]
  baseline = next((n for n, e in by_name.items() if e.kind == "baseline"), None)
  chosen = _chosen(selection_name, by_name, picks, baseline, task)
  splits = task.describe_splits(config.data_dir)
  print(f"\n== {task.name}: selection={selection_name} -> fine-tuning {chosen} "
        f"(selection took {selection_seconds:.1f}s); splits {splits}", flush=True)
  per_expert = {}
  for name in chosen:
    per_expert[name] = protocol_lib.run_protocol(
        by_name[name].handle, task, config.protocol, os.path.join(dirs["work"], task.name, name),
        strategy, config.data_dir)
    best = per_expert[name]["best"]
    print(f"   {name}: {_accuracy_text(per_expert[name])}" + (f" (best {best})" if best else ""),
          flush=True)
  accuracies = {name: r["test_accuracy"] for name, r in per_expert.items()
                if r.get("test_accuracy") is not None}
  if selection_name in FINE_TUNE_SEVERAL:
    best_name = max(accuracies, key=accuracies.get) if accuracies else None
  else:
    best_name = chosen[0]
  best_result = per_expert.get(best_name) or {}
  config_dict = _protocol_dict(config.protocol)
  record = {"task": task.name, "task_spec": task.spec or task.name, "splits": splits,
            "group": task.group, "selection": selection_name,
            "chosen": chosen, "proxy_scores": scores, "picks": picks,
            "proxy_seconds": proxy_seconds, "per_expert": per_expert,
            "test_accuracy": accuracies.get(best_name),
            **_diverged_fields(per_expert, [best_name] if best_name else chosen),
            "test_interval": best_result.get("test_interval"),
            "test_size": best_result.get("test_size"),
            "config": config_dict,
            "times": {"selection_seconds": selection_seconds,
                      "finetune_seconds": sum(r["seconds"] for r in per_expert.values())},
            "images_embedded": source.stats.images_embedded, "versions": versions()}
  record["num_experts"] = len(by_name)
  record["resolution"] = {name: source.resolution_of(e) for name, e in by_name.items()}
  record["precision"] = {"requested": config.precision,
                         "embedded": {name: source.precision_of(e) for name, e in by_name.items()},
                         "fine_tuned": {name: sorted({r.get("precision", "float32") for r in (
                             per_expert[name].get("final") or [])} or {config.precision})
                                        for name in per_expert}}
  if topk_block is not None:
    record["topk"] = topk_block
    record["times"]["topk_seconds"] = topk_block["seconds"]
  if selection_name == TOPK and record["test_accuracy"] is not None:
    regret = oracle_regret(dirs["results"], task, config_dict, record["test_accuracy"])
    if regret is not None:
      record["regret"] = {TOPK: regret}
  if selection_name in FINE_TUNE_SEVERAL:
    _strategy_block(record, selection_name, scores, picks, per_expert, accuracies, baseline,
                    best_name)
  report.write_record(dirs["results"], record)
  return record


def run(config, strategy=None):
  """Evaluates every task of `config` (an `EvalConfig`); returns their records, in task order.

  Loads the tasks and the pool, checks the selection against the pool's expert names, then runs
  `evaluate_task` (or `evaluate_dat`) per task, printing one JSON line per task and, at the end,
  the summary of `config.results_dir`. `strategy` defaults to `make_strategy()` (one device, or
  the visible GPUs). Raises UserError naming a bad task, expert or selection.
  """
  task_list = [tasks_lib.get_task(n, config.data_dir) for n in config.task_names()]
  candidates = selection.load_candidates(config.experts)
  if config.selection not in SELECTIONS and config.selection not in candidates.names():
    raise errors.UserError(f"--selection: {config.selection!r} is neither one of "
                           f"{', '.join(SELECTIONS)} nor an expert of the pool "
                           f"({', '.join(candidates.names())}).")
  if strategy is None:
    from tfexperts.train import strategy as strategy_lib  # pylint: disable=g-import-not-at-top
    strategy = strategy_lib.make_strategy()
  upstream = config.upstream.open() if config.selection == "dat" else None
  records = []
  for task in task_list:
    if upstream is not None:
      record = evaluate_dat(task, candidates, upstream, config, strategy)
    else:
      record = evaluate_task(task, candidates, config, strategy)
    print(json.dumps({"task": task.name, "selection": config.selection,
                      "chosen": record["chosen"], "test_accuracy": record["test_accuracy"]}),
          flush=True)
    records.append(record)
  print(report.summarize(config.results_dir))
  return records
