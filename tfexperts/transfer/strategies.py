"""Selection strategies of bin/vtab_eval as a registry, like `select.proxies.PROXIES`.

A strategy says which experts it fine-tunes and what it adds to the task's record
(`records.ResultRecord`); `transfer.evaluate` runs any of them the same way:

  strategy        fine-tuned experts                             its part of the record
  knn, label_matching, domain, random (`SELECTION_PROXIES`)
                  the proxy's pick                               -
  knn_topk        kNN's top k get short fine-tunes; the best on  topk, regret (against an
                  val200 gets the protocol (`transfer.topk`)     all_experts record)
  dat             Domain Adaptive Transfer's task-specific       dat (its cost against kNN
                  model (`transfer.dat`)                         selection's)
  all_experts     every expert: the oracle                       strategy_accuracy/_interval,
                                                                 comparisons, regret, kendall_tau
  all_proxies     the baseline and every reported proxy's pick   strategy_accuracy/_interval,
                                                                 comparisons
  an expert name  that expert (`NamedExpert`)                    -

`get(name, expert_names)` is the one check of a selection name. This module loads nothing heavy
(configs resolve their strategy before TensorFlow loads); the fine-tuning modules load on use.
"""
import dataclasses
import os
from typing import Optional

from tfexperts import defaults
from tfexperts import errors
from tfexperts import lazy
from tfexperts.transfer import dat_config
from tfexperts.transfer import records

dat_lib = lazy.LazyModule("tfexperts.transfer.dat")
protocol = lazy.LazyModule("tfexperts.transfer.protocol")
report = lazy.LazyModule("tfexperts.transfer.report")
topk_lib = lazy.LazyModule("tfexperts.transfer.topk")

TOPK = defaults.TOPK


@dataclasses.dataclass
class TaskRun:
  """One task's evaluation as the strategies see it (filled in by `transfer.evaluate`).

  Attributes:
    task: the `tasks.Task`; config: the `EvalConfig`; candidates: the pool
      (`select.selection.Candidates`); tf_strategy: the tf.distribute strategy.
    prepared: what the strategy's `prepare` returned (once per evaluation).
    source: the `FeatureSource` the pool was embedded with; scores, picks, proxy_seconds: the
      scoring's; scoring_seconds: its wall time.
    topk: knn_topk's `records.TopkResult` when the strategy runs it.
    per_expert: {expert: protocol result} of the fine-tunes.
    details: a strategy's own results of this task (e.g. DAT's model and cost).
    loaded: {expert: `finetune.ModelCache`} of models selection already loaded (knn_topk's
      pick), taken by that expert's fine-tune instead of loading it again.
  """
  task: object
  config: object
  candidates: object
  tf_strategy: object = None
  prepared: object = None
  source: object = None
  scores: dict = dataclasses.field(default_factory=dict)
  picks: dict = dataclasses.field(default_factory=dict)
  proxy_seconds: dict = dataclasses.field(default_factory=dict)
  scoring_seconds: float = 0.0
  topk: Optional[records.TopkResult] = None
  per_expert: dict = dataclasses.field(default_factory=dict)
  details: dict = dataclasses.field(default_factory=dict)
  loaded: dict = dataclasses.field(default_factory=dict)

  @property
  def by_name(self):
    """`{expert name: hub.load.Expert}` of the pool."""
    from tfexperts.select import selection  # pylint: disable=g-import-not-at-top
    return {selection.expert_key(e): e for e in self.candidates.experts}

  @property
  def baseline(self):
    """The name of the pool's baseline expert, or None."""
    return next((n for n, e in self.by_name.items() if e.kind == "baseline"), None)

  def directory(self, *parts):
    """A directory of this task's fine-tuning runs (under the config's workdir)."""
    return os.path.join(self.config.dirs["work"], self.task.name, *parts)


class Strategy:
  """The default behaviour: score the report proxies, fine-tune pool experts with the protocol,
  report the first chosen expert, add nothing to the record. Subclasses override a part and
  have a `name` (the selection's)."""
  cached_features = True  # embed the pool through the feature cache

  def configure(self, config):
    """Checks and completes an `EvalConfig` for this strategy (raises UserError)."""
    del config

  def prepare(self, config):
    """What every task of an evaluation shares (opened once, before the tasks); None here."""
    del config

  def runs_topk(self, report_proxies):
    """Whether knn_topk's short fine-tunes run (its pick is recorded)."""
    del report_proxies
    return False

  def scored(self, report_proxies):
    """The proxies scored on the pool: the reported ones (and kNN when knn_topk runs)."""
    proxies = [p for p in report_proxies if p != TOPK]
    if self.runs_topk(report_proxies) and "knn" not in proxies:
      proxies.append("knn")
    return proxies

  def chosen(self, picks, names, baseline, task_name):
    """The names of the experts fine-tuned, from `picks` {proxy: expert}, the pool's `names`, its
    `baseline` (a name or None) and the task's name."""
    raise NotImplementedError

  def fine_tune(self, run, name):
    """Fine-tunes chosen expert `name` with the VTAB-1k protocol; returns the protocol result."""
    return protocol.run_protocol(run.by_name[name].ref, run.task, run.config.protocol,
                                 run.directory(name), run.tf_strategy, run.config.data_dir,
                                 run.loaded.pop(name, None))

  def reported(self, chosen, accuracies):
    """The expert whose test accuracy the record reports (None: none to report)."""
    del accuracies
    return chosen[0]

  def selection_seconds(self, run):
    """The seconds this strategy spent selecting (recorded as times.selection_seconds)."""
    return run.scoring_seconds

  def record_parts(self, run, accuracies, reported):
    """This strategy's fields of the task's `ResultRecord` (a dict; {} here)."""
    del run, accuracies, reported
    return {}


@dataclasses.dataclass(frozen=True)
class ProxyPick(Strategy):
  """A proxy's pick: the expert it scores best."""
  name: str

  def chosen(self, picks, names, baseline, task_name):
    """`[picks[proxy]]`; UserError when the proxy scored no expert."""
    if picks.get(self.name) is None:
      raise errors.UserError(f"--selection={self.name} could not score any expert on "
                             f"{task_name} (does the collection have what it needs?).")
    return [picks[self.name]]


@dataclasses.dataclass(frozen=True)
class NamedExpert(Strategy):
  """One expert of the pool, named by the user (e.g. baseline)."""
  name: str

  def chosen(self, picks, names, baseline, task_name):
    """`[name]`."""
    return [self.name]


class KnnTopk(Strategy):
  """knn_topk: the best on val200 of short fine-tunes of kNN's top k (`transfer.topk`)."""
  name = TOPK

  def runs_topk(self, report_proxies):
    """Always."""
    return True

  def chosen(self, picks, names, baseline, task_name):
    """`[picks["knn_topk"]]`."""
    return [picks[TOPK]]

  @staticmethod
  def short_runs(run):
    """Runs the short fine-tunes of kNN's top `config.topk` (`topk.select`); returns their
    `records.TopkResult`, with the cost of the whole strategy (kNN selection and the runs)."""
    config = run.config
    by_name = run.by_name
    block = topk_lib.select({n: e.ref for n, e in by_name.items()}, run.scores["knn"],
                            run.task, config.protocol, run.directory(), run.tf_strategy,
                            k=config.topk, steps_fraction=config.topk_steps_fraction,
                            learning_rate=config.topk_learning_rate, data_dir=config.data_dir,
                            kept=run.loaded)
    block["cost"] = {
        "seconds": run.proxy_seconds["features"] + run.proxy_seconds["knn"] + block["seconds"],
        # kNN embeds train800 once per expert (cached features cost nothing in this run).
        "images": len(by_name) * run.task.num_examples("train800", config.data_dir)
                  + block["images"]}
    return records.TopkResult.from_json(block, "topk")

  def selection_seconds(self, run):
    """Scoring plus the short runs."""
    return run.scoring_seconds + run.topk.seconds

  def record_parts(self, run, accuracies, reported):
    """`regret` against an all_experts record of the task and protocol, when there is one."""
    if reported not in accuracies:
      return {}
    regret = oracle_regret(run.config.results_dir, run.task, protocol_dict(run.config.protocol),
                           accuracies[reported])
    return {} if regret is None else {"regret": {TOPK: regret}}


@dataclasses.dataclass(frozen=True)
class FineTuneSeveral(Strategy):
  """all_experts (every expert: the oracle) or all_proxies (the baseline and every reported
  proxy's pick); the record compares the strategies whose experts were fine-tuned."""
  name: str
  oracle: bool

  def runs_topk(self, report_proxies):
    """When knn_topk is a reported proxy."""
    return TOPK in report_proxies

  def chosen(self, picks, names, baseline, task_name):
    """Every name (oracle), else the baseline and the picked ones, in pool order."""
    if self.oracle:
      return list(names)
    return [n for n in names if n == baseline or n in picks.values()]

  def reported(self, chosen, accuracies):
    """The most accurate expert (ties to the first), None when every fine-tune diverged."""
    return max(accuracies, key=accuracies.get) if accuracies else None

  def record_parts(self, run, accuracies, reported):
    """Each strategy's accuracy and interval, paired comparisons, and (oracle) each strategy's
    regret and Kendall's tau."""
    return strategy_comparison(run.scores, run.picks, run.per_expert, accuracies, run.baseline,
                               reported if self.oracle else None)


class Dat(Strategy):
  """dat: the baseline fine-tuned on upstream data reweighted for the task (`transfer.dat`),
  then the protocol; kNN over the pool is timed (feature cache off) to compare its cost."""
  name = "dat"
  cached_features = False

  def configure(self, config):
    """Requires `config.upstream`; `config.dat` defaults to `DatConfig(seed=config.seed)`."""
    if config.upstream is None:
      raise errors.UserError("selection='dat' fine-tunes the baseline on its upstream data: name "
                             "it (upstream / --upstream_dataset).")
    if config.dat is None:
      config.dat = dat_config.DatConfig(seed=config.seed)

  def prepare(self, config):
    """The opened upstream data."""
    return config.upstream.open()

  def scored(self, report_proxies):
    """kNN only: the selection DAT is compared with."""
    del report_proxies
    return ["knn"]

  def chosen(self, picks, names, baseline, task_name):
    """The task's DAT model, `dat_<task>`."""
    return [f"dat_{task_name}"]

  def fine_tune(self, run, name):
    """Runs DAT end to end (`dat.run`); returns the protocol result of its model."""
    run.details[name] = dat_lib.run(run.task, run.candidates.baseline, run.prepared,
                                    run.config.dat, run.config.protocol, run.directory("dat"),
                                    run.tf_strategy, run.config.data_dir,
                                    run.config.dirs["cache"])
    return run.details[name]["protocol"]

  def selection_seconds(self, run):
    """DAT's selection: the task's label distribution and the upstream fine-tuning."""
    cost = run.details[f"dat_{run.task.name}"]["cost"]
    return cost["label_distribution"]["seconds"] + cost["upstream_training"]["seconds"]

  def record_parts(self, run, accuracies, reported):
    """`dat`: the model's handle, weights summary, cost, config and its cost against kNN."""
    result = run.details[reported]
    training = result["cost"]["upstream_training"]["seconds"]
    ratio = training / run.scoring_seconds
    print(f"   dat: upstream fine-tuning {training:.1f}s vs kNN selection over "
          f"{len(run.candidates.experts)} experts {run.scoring_seconds:.1f}s (x{ratio:.1f})",
          flush=True)
    return {"dat": records.DatResult(
        handle=result["handle"], weights=result["weights"], cost=result["cost"],
        config=dataclasses.asdict(run.config.dat),
        knn_selection={"seconds": run.scoring_seconds, "num_experts": len(run.candidates.experts),
                       "images_embedded": run.source.stats.images_embedded},
        upstream_training_over_knn=ratio)}


def protocol_dict(config):
  """The record's `config`: the protocol's fields, `finetune` left out at full (so records from
  before the field existed compare equal: `oracle_regret`)."""
  return {k: list(v) if isinstance(v, tuple) else v for k, v in config.__dict__.items()
          if not (k == "finetune" and v == "full")}


def strategy_comparison(scores, picks, per_expert, accuracies, baseline, oracle=None):
  """The record fields comparing strategies whose experts were fine-tuned.

  Takes the proxies' `scores` and `picks`, the fine-tuned experts' protocol results and test
  accuracies (`{expert: accuracy}`, diverged ones left out), the baseline's name (or None) and the
  oracle's expert (all_experts; None for no oracle). Returns `strategy_accuracy`,
  `strategy_interval`, `comparisons` and, with an oracle, `regret` and `kendall_tau`.
  """
  strategy_picks = {p: e for p, e in picks.items() if e in accuracies}
  strategy_accuracy = {p: accuracies.get(e) for p, e in picks.items()}
  if baseline in accuracies:
    strategy_picks["baseline"] = baseline
    strategy_accuracy["baseline"] = accuracies[baseline]
  fields = {}
  if oracle is not None:
    strategy_picks["oracle"] = oracle
    strategy_accuracy["oracle"] = accuracies[oracle]
    fields["regret"] = {p: accuracies[oracle] - a for p, a in strategy_accuracy.items()
                        if a is not None}
    fields["kendall_tau"] = {p: report.kendall_tau(scores[p], accuracies) for p in scores}
  fields["strategy_accuracy"] = strategy_accuracy
  fields["strategy_interval"] = {p: per_expert[e].get("test_interval")
                                 for p, e in strategy_picks.items()}
  fields["comparisons"] = report.paired_comparisons(per_expert, strategy_picks)
  return fields


def oracle_regret(results_dir, task, config_dict, accuracy):
  """Regret of `accuracy` against the all_experts record of the same task and protocol (the dict
  of its `ProtocolConfig`) in `results_dir`, or None when there is none."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = report.record_path(results_dir, task.name, "all_experts",
                            config_dict.get("finetune", "full"))
  if not tf.io.gfile.exists(path):
    return None
  oracle = records.read(path)
  if oracle.config != config_dict or "oracle" not in (oracle.strategy_accuracy or {}):
    return None
  return oracle.strategy_accuracy["oracle"] - accuracy


STRATEGIES = {}


def register(strategy):
  """Adds `strategy` (a `Strategy`) to STRATEGIES under its name; returns it."""
  STRATEGIES[strategy.name] = strategy
  return strategy


for _proxy in defaults.SELECTION_PROXIES:
  register(ProxyPick(_proxy))
register(KnnTopk())
register(Dat())
register(FineTuneSeveral("all_experts", oracle=True))
register(FineTuneSeveral("all_proxies", oracle=False))


def get(name, expert_names=None):
  """The strategy `name` selects: a registered one, else the pool's expert of that name.

  `expert_names`: the pool's expert names, or None when they are not known yet (then any other
  name is taken for an expert's). Raises UserError naming `name`, the strategies and the experts
  (and the closest of them).
  """
  if name in STRATEGIES:
    return STRATEGIES[name]
  if expert_names is None or name in expert_names:
    return NamedExpert(name)
  raise errors.UserError(
      f"selection: {name!r} is neither one of {', '.join(STRATEGIES)} nor an expert of the pool "
      f"({', '.join(expert_names)}).{errors.did_you_mean(name, list(STRATEGIES) + expert_names)}")
