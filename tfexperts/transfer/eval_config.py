"""What one evaluation (bin/vtab_eval, `transfer.evaluate.run`) needs, checked on construction.

`EvalConfig` validates itself once: the tasks (`vtab` expands to the 19 VTAB-1k tasks), the
report proxies, knn_topk's budget, the selection against the pool (`strategies.get`, with the
module names of local collections), and whatever the selected strategy needs (DAT: its upstream
data), and with `multitask` what training the tasks together needs (`multitask_args`). The
binary maps its flags to an `EvalConfig` and relies on these checks; nothing here
loads TensorFlow, so a bad value fails within a second.
"""
import dataclasses
import os
from typing import Optional

from tfexperts import bounds
from tfexperts import defaults
from tfexperts import errors
from tfexperts import precision as precision_lib
from tfexperts.data import tasks as tasks_lib
from tfexperts.hub import local_pool
from tfexperts.select import proxies as proxies_lib
from tfexperts.transfer import dat_config
from tfexperts.transfer import multitask_args
from tfexperts.transfer import protocol as protocol_lib
from tfexperts.transfer import strategies

TOPK = defaults.TOPK
DatConfig = dat_config.DatConfig
UpstreamSpec = dat_config.UpstreamSpec


@dataclasses.dataclass
class EvalConfig:
  """Everything one evaluation needs (bin/vtab_eval's flags of the same names).

  Attributes:
    tasks: task names or task strings (`tfexperts.data.tasks.get_task`); `["vtab"]`: all 19
      (expanded on construction).
    experts: collection directories, hub handles and/or published collections.
    selection: a strategy of `strategies.STRATEGIES`, or the name of one expert of the pool.
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
    dat, upstream: `DatConfig` and `UpstreamSpec`, for `selection="dat"`.
    precision: compute precision of embedding and fine-tuning (`tfexperts.precision`); None
      takes `protocol.precision`, a value replaces it there.
    multitask: train one patch and head per task together on one expert (`transfer.multitask`):
      needs `protocol.finetune` patch, two or more distinct tasks, mixup off, and `selection`
      naming the expert (or a pool of one).

  Raises UserError naming the field, the value and what is valid.
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
  dat: Optional[DatConfig] = None
  upstream: Optional[UpstreamSpec] = None
  precision: Optional[str] = None
  multitask: bool = False

  def __post_init__(self):
    if self.precision is None:
      self.precision = self.protocol.precision
    elif self.protocol.precision != precision_lib.check(self.precision):
      self.protocol = dataclasses.replace(self.protocol, precision=self.precision)
    self.tasks = list(tasks_lib.VTAB_TASKS) if list(self.tasks) == ["vtab"] else list(self.tasks)
    if not self.tasks:
      raise errors.UserError("`tasks` must name at least one task. Received: tasks=[]")
    for name in self.tasks:
      tasks_lib.get_task(name, self.data_dir)
    if not self.experts:
      raise errors.UserError(f"`experts` must name collections or hub handles. Received: "
                             f"experts={self.experts!r}")
    self.report_proxies = tuple(bounds.all_of("report_proxies", list(self.report_proxies),
                                              sorted(proxies_lib.PROXIES) + [TOPK]))
    bounds.positive_int("topk", self.topk)
    bounds.positive_fraction("topk_steps_fraction", self.topk_steps_fraction)
    bounds.positive_number("topk_learning_rate", self.topk_learning_rate, allow_none=True)
    expert_names = local_pool.module_names(self.experts, "`experts`")
    if bounds.one_of("multitask", self.multitask, (False, True)):
      multitask_args.check(self.tasks, self.protocol.finetune, self.protocol.mixup_alpha)
      multitask_args.check_expert(self.selection, expert_names)
    strategies.get(self.selection, expert_names).configure(self)

  @property
  def dirs(self):
    """`{"results", "work", "cache"}` directories."""
    return {"results": self.results_dir,
            "work": self.workdir or os.path.join(self.results_dir, "runs"),
            "cache": self.cache_dir or os.path.join(self.results_dir, "features")}
