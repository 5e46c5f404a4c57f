"""The results record: what bin/vtab_eval writes per task and selection, and what reads it back.

One JSON file per task and selection (`report.record_path`), beside a row of results.csv. Like
the finished-model record (`tfexperts.artifacts.ModelRecord`), the JSON keys are the dataclass
fields, exactly: `ResultRecord.from_json` refuses an unknown key and a missing one with a
`RecordError` naming it and the file, and checks each field's type. Records are assembled in one
place (`transfer.evaluate`); each selection strategy (`transfer.strategies`) fills its own
optional part: `topk` (knn_topk's short runs), `dat` (Domain Adaptive Transfer's model and
cost), `strategy_accuracy`, `strategy_interval`, `comparisons`, `regret` and `kendall_tau` (the
strategies compared by all_experts / all_proxies; knn_topk's regret), and a multi-task patch run
(`transfer.multitask`) its `multitask` part. Optional parts are left out of the JSON when None.

A record's `finetune` is one of `RECORD_MODES`: the fine-tuning modes (`defaults.FINETUNE_MODES`)
and `MULTITASK`, a task's patch trained together with other tasks' (its per-expert result has
the shape of a single-task protocol result; its `multitask` part names the tasks and how the
task compares with its single-task patch run).

Records carry `format`. Files without it were written before this module existed: the one reader
of older files (`_upgrade_older`) gives the keys such files may lack their value of that time
(`diverged` False; `precision`, and in DAT's records `proxy_seconds` and `resolution`, None), so
every results directory written since then still loads. Records of format result/2 (before
fine-tuning modes) read with `finetune` "full", the only mode there was. No other reader falls
back to a default.
"""
import dataclasses
import typing
from typing import Optional

from tfexperts import artifacts
from tfexperts import defaults
from tfexperts.artifacts import RecordError

FORMAT = "tfexperts.transfer.result/3"
MULTITASK = "patch_multitask"  # the mode of a record of a multi-task patch run's task
RECORD_MODES = tuple(defaults.FINETUNE_MODES) + (MULTITASK,)
# The one reader of older files: keys a record written before `format` existed may lack, with
# the value they stand for (`diverged` and `precision` came with divergence and --precision; DAT's
# records had no proxy timings or resolutions; every run fine-tuned the whole expert).
OLDER_DEFAULTS = {"diverged": False, "precision": None, "proxy_seconds": None, "resolution": None,
                  "finetune": defaults.FINETUNE}
# Format result/2 had every key of today's but `finetune` (issue 29's modes).
RESULT_2 = "tfexperts.transfer.result/2"
RESULT_2_DEFAULTS = {"finetune": defaults.FINETUNE}


def _type_name(kind):
  return getattr(kind, "__name__", str(kind))


def _check_types(record, where):
  """Raises RecordError naming the first field whose value is not of its declared type (int
  counts as float; Optional fields may be None)."""
  for name, kind in typing.get_type_hints(type(record)).items():
    value = getattr(record, name)
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union:
      if value is None:
        continue
      kind = next(a for a in args if a is not type(None))
    kind = typing.get_origin(kind) or kind
    allowed = (int, float) if kind is float else (kind,)
    if not isinstance(value, allowed) or (isinstance(value, bool) and kind is not bool):
      raise RecordError(f"{where}: key {name!r} must be {_type_name(kind)}. Received: "
                        f"{value!r}")


class _Block(artifacts.StrictJson):
  """A strategy's part of a record: strict keys, typed fields."""

  def __post_init__(self):
    _check_types(self, type(self).__name__)

  @classmethod
  def from_json(cls, data, where=None):
    """The block of dict `data`; raises RecordError naming an unknown, missing or mistyped key."""
    artifacts.check_keys(cls, data, where or cls.__name__)
    try:
      return cls(**data)
    except RecordError as e:
      raise RecordError(f"{where}: {e}") from None


@dataclasses.dataclass
class TopkResult(_Block):
  """knn_topk's short fine-tunes (`transfer.topk.select`) and their cost.

  Attributes:
    k, learning_rate, steps, batch_size: the short runs' budget.
    candidates: kNN's top k in kNN order: expert, knn, val_accuracy (None when diverged),
      seconds, val_size (and `diverged`).
    pick: the candidate with the best val accuracy.
    seconds, images: of the short runs.
    cost: {seconds, images} of the whole strategy (kNN selection and the short runs).
  """
  k: int
  learning_rate: float
  steps: int
  batch_size: int
  candidates: list
  pick: str
  seconds: float
  images: int
  cost: dict


@dataclasses.dataclass
class DatResult(_Block):
  """Domain Adaptive Transfer's model and cost (`transfer.dat`).

  Attributes:
    handle: the exported task-specific module.
    weights: the summary of its upstream class weights (`dat_weights.summary`).
    cost: seconds and images of each step (label_distribution, upstream_label_count,
      upstream_training, transfer).
    config: the `DatConfig` as a dict.
    knn_selection: {seconds, num_experts, images_embedded} of kNN over the pool in this run.
    upstream_training_over_knn: upstream fine-tuning seconds over kNN selection's.
  """
  handle: str
  weights: dict
  cost: dict
  config: dict
  knn_selection: dict
  upstream_training_over_knn: float


@dataclasses.dataclass
class MultitaskResult(_Block):
  """The multi-task part of a `MULTITASK` record (`transfer.multitask.evaluate`).

  Attributes:
    tasks: every task the patches trained together, in task-id order.
    handle: the expert they trained on.
    mixing: how a step mixed the tasks (`multitask.MIXING`).
    best: the joint sweep's point ({learning_rate, steps, mean_val_accuracy}).
    within_single_interval: this task's accuracy inside its single-task patch run's 95% Wilson
      interval (None without both); outside_by: how far outside (0 inside).
  """
  tasks: list
  handle: str
  mixing: str
  best: Optional[dict]
  within_single_interval: Optional[bool]
  outside_by: Optional[float]


_BLOCKS = {"topk": TopkResult, "dat": DatResult, "multitask": MultitaskResult}
_OMITTED_WHEN_NONE = ("diverged_experts", "topk", "dat", "strategy_accuracy", "strategy_interval",
                      "comparisons", "regret", "kendall_tau", "multitask")


@dataclasses.dataclass
class ResultRecord:
  """One task evaluated under one selection (a record file).

  Attributes:
    task, task_spec, splits, group: the task, the string it was given as, its split names and
      its VTAB group.
    selection: the strategy's name (`transfer.strategies`), or the expert the user named.
    finetune: the fine-tuning mode of every run of the record (`RECORD_MODES`: full, patch,
      adapter, head, patch_multitask); each `per_expert` result also holds its `trained_parameters`,
      `artifact_bytes` and `images_per_second` (`protocol.run_protocol`).
    chosen: the fine-tuned experts, in order.
    proxy_scores: {proxy: {expert: score}}; picks: {proxy or knn_topk: expert}.
    per_expert: {expert: `protocol.run_protocol` result}.
    test_accuracy: of the reported expert (the strategy's; all_experts: the best), None when its
      fine-tuning diverged (`diverged`; `diverged_experts` {expert: why} lists every diverged one).
    test_interval, test_size: its 95% Wilson interval and test size (None when diverged).
    config: the `ProtocolConfig` as a dict.
    times: selection_seconds, finetune_seconds (and topk_seconds).
    images_embedded: images embedded for selection in this run (cached features cost none).
    versions: tfexperts and its stack (`evaluate.versions`).
    num_experts: size of the pool.
    proxy_seconds: {"features" or proxy: seconds} of the scoring.
    resolution: {expert: embedding resolution}.
    precision: {"requested", "embedded": {expert: ...}, "fine_tuned": {expert: [...]}}.
    topk, dat, strategy_accuracy, strategy_interval, comparisons, regret, kendall_tau: the
      strategies' optional parts (module docstring); multitask: a `MULTITASK` record's part.
    format: FORMAT.
  """
  task: str
  task_spec: str
  splits: dict
  group: str
  selection: str
  finetune: str
  chosen: list
  proxy_scores: dict
  picks: dict
  per_expert: dict
  test_accuracy: Optional[float]
  diverged: bool
  test_interval: Optional[list]
  test_size: Optional[int]
  config: dict
  times: dict
  images_embedded: int
  versions: dict
  num_experts: int
  proxy_seconds: Optional[dict]
  resolution: Optional[dict]
  precision: Optional[dict]
  diverged_experts: Optional[dict] = None
  topk: Optional[TopkResult] = None
  dat: Optional[DatResult] = None
  strategy_accuracy: Optional[dict] = None
  strategy_interval: Optional[dict] = None
  comparisons: Optional[list] = None
  regret: Optional[dict] = None
  kendall_tau: Optional[dict] = None
  multitask: Optional[MultitaskResult] = None
  format: str = FORMAT

  def __post_init__(self):
    for name, block in _BLOCKS.items():
      value = getattr(self, name)
      if isinstance(value, dict):
        setattr(self, name, block.from_json(value, name))
    _check_types(self, "results record")
    if self.finetune not in RECORD_MODES:
      raise RecordError(f"results record: key 'finetune' must be one of "
                        f"{list(RECORD_MODES)}. Received: {self.finetune!r}")
    if (self.finetune == MULTITASK) != (self.multitask is not None):
      raise RecordError(f"results record: key 'multitask' comes with finetune {MULTITASK!r} "
                        f"and only with it. Received: finetune={self.finetune!r}, multitask="
                        f"{'present' if self.multitask is not None else 'missing'}")
    if self.format != FORMAT:
      raise RecordError(f"results record: format {self.format!r} is not {FORMAT!r} (written by "
                        "another version of tfexperts).")

  def to_json(self):
    """The JSON-ready dict written as the record file (optional parts left out when None)."""
    return {k: v for k, v in dataclasses.asdict(self).items()
            if v is not None or k not in _OMITTED_WHEN_NONE}

  @classmethod
  def from_json(cls, data, where="results record"):
    """A `ResultRecord` from a record file's dict (older files through `_upgrade_older`).

    Raises RecordError (a UserError) naming `where` and the key when one is unknown, missing or
    of the wrong type.
    """
    if isinstance(data, dict) and data.get("format", RESULT_2) == RESULT_2:
      data = _upgrade_older(data)
    elif isinstance(data, dict) and data["format"] != FORMAT:  # before its keys: they differ
      raise RecordError(f"{where}: format {data['format']!r} is not {FORMAT!r} (written by "
                        "another version of tfexperts).")
    artifacts.check_keys(cls, data, where)
    try:
      return cls(**data)
    except RecordError as e:
      raise RecordError(f"{where}: {e}") from None


def _upgrade_older(data):
  """The one reader of older files: a record written before `format` (with OLDER_DEFAULTS for
  the keys it lacks) or in format result/2 (RESULT_2_DEFAULTS); every other missing key stays
  missing, an error."""
  older = RESULT_2_DEFAULTS if "format" in data else OLDER_DEFAULTS
  return {**{k: v for k, v in older.items() if k not in data}, **data, "format": FORMAT}


def read(path):
  """The `ResultRecord` of the record file at `path` (local or gs://).

  Raises `RecordError` naming the file when it is not JSON (corrupt or cut short) or a key is
  unknown, missing or mistyped.
  """
  from tfexperts import fileio  # pylint: disable=g-import-not-at-top  (fileio imports TensorFlow)
  try:
    data = fileio.read_json(path)
  except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
    raise RecordError(f"Results record {path!r} is not valid JSON ({e}); it is corrupt or was "
                      "cut short: delete it (rerun its task) or move it out of the results "
                      "dir.") from e
  return ResultRecord.from_json(data, where=path)

