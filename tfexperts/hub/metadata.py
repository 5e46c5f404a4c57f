"""Module metadata: `ModuleMetadata`, the record in `assets/metadata.json` of every exported module.

The JSON keys are the record's fields, exactly (as `artifacts.ModelRecord`, whose names it keeps:
one vocabulary from training to export to selection); absent information is null:
  format                METADATA_FORMAT
  name                  the expert's name (its domain's name; "baseline", "epn", or the bank's name)
  module                the module's directory name in its collection
  kind                  one of MODULE_KINDS
  node                  hierarchy node of the expert's domain
  expert_id             for an expert extracted from a bank, its row there (its domain's
                        `expert_id` in the training run); null otherwise
  num_images            upstream images the expert was trained on
  slices                "semantic" (the domain's images) or "random" (a same-size random control)
  upstream_dataset, upstream_split, num_upstream_images, num_upstream_classes
  label_prior           the expert's prior over upstream labels (list of floats)
  multi_label           whether the head was trained multi-label (sigmoid) rather than softmax
  architecture          `models.architecture.Architecture`
  input                 `InputSpec`: {"resolution", "range": [0.0, 1.0], "dtype", "layout"}
  feature_dim           size of the pre-logits
  outputs               `Outputs`: {"pre_logits": feature_dim, "logits": classes or null}
  logit_names           names of the logits' classes (upstream labels, or the EPN's domains)
  experts               for banks: an `artifacts.ExpertInfo` per bank row; null otherwise
  steps                 steps of the training run, when recorded
  task                  for a task module (kind "task": an expert with a per-task artifact
                        applied, `transfer.reuse`), a `TaskInfo`; null otherwise
`ModuleMetadata.from_json` refuses an unknown or a missing key with an `artifacts.RecordError`
naming it (and the file, through `read`). Modules exported before this record (format
`tfexperts.hub.module/1`) read through `_from_format_1`, the one reader of older files.

Modules without tfexperts metadata (published BiT experts, third-party SavedModels) are
`ModuleMetadata.absent()`: format None, nothing known but what a published collection lists.
"""
import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tfexperts import artifacts
from tfexperts import defaults
from tfexperts import fileio
from tfexperts.models import architecture as architecture_lib

METADATA_FORMAT = "tfexperts.hub.module/2"
FORMAT_1 = "tfexperts.hub.module/1"  # until ModuleMetadata: other key names (`_from_format_1`)
METADATA_ASSET = "metadata.json"
ASSETS_DIR = "assets"

EXPERT_KINDS = artifacts.EXPERT_KINDS
MODULE_KINDS = artifacts.MODULE_KINDS
BANK_KINDS = artifacts.BANK_KINDS
INPUT_RANGE = [0.0, 1.0]
DEFAULT_RESOLUTION = defaults.RESOLUTION  # published hub experts carry no tfexperts metadata
RecordError = artifacts.RecordError


@dataclasses.dataclass
class InputSpec(artifacts.StrictJson):
  """What a module takes: images of `resolution` (None: unknown, fed at DEFAULT_RESOLUTION), values
  in `range`, of `dtype`, in `layout`."""
  resolution: Optional[int]
  range: list
  dtype: str
  layout: str

  def __post_init__(self):
    r = self.resolution
    if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r <= 0):
      raise RecordError(f"input resolution must be a positive integer or null. Received: {r!r}")


@dataclasses.dataclass
class Outputs(artifacts.StrictJson):
  """Sizes of a module's outputs: `pre_logits` features, and `logits` classes (None: no head)."""
  pre_logits: int
  logits: Optional[int]


@dataclasses.dataclass
class TaskInfo(artifacts.StrictJson):
  """What a task module adds to its expert: the downstream `task`, the `finetune` mode whose
  artifact it applies, the task's `num_classes`, the `artifact` directory, the artifact's
  `trained_parameters`, and the `expert` it was trained on ({"path", "identity"})."""
  task: str
  finetune: str
  num_classes: int
  artifact: str
  trained_parameters: int
  expert: dict


@dataclasses.dataclass
class ModuleMetadata(artifacts.StrictJson):
  """A hub module's metadata (see the module docstring for each field)."""
  format: Optional[str]
  name: Optional[str]
  module: Optional[str]
  kind: Optional[str]
  node: Optional[str]
  expert_id: Optional[int]
  num_images: Optional[int]
  slices: Optional[str]
  upstream_dataset: Optional[str]
  upstream_split: Optional[str]
  num_upstream_images: Optional[int]
  num_upstream_classes: Optional[int]
  label_prior: Optional[list]
  multi_label: Optional[bool]
  architecture: Optional[architecture_lib.Architecture]
  input: InputSpec
  feature_dim: Optional[int]
  outputs: Optional[Outputs]
  logit_names: Optional[list]
  experts: Optional[list]
  steps: Optional[int]
  task: Optional[TaskInfo]

  def __post_init__(self):
    if self.format not in (METADATA_FORMAT, None):
      raise RecordError(f"format must be {METADATA_FORMAT!r}. Received: {self.format!r}")
    if (self.kind is not None or not self.is_absent) and self.kind not in MODULE_KINDS:
      raise RecordError(f"kind must be one of {MODULE_KINDS}. Received: {self.kind!r}")
    if isinstance(self.task, dict):
      self.task = TaskInfo.from_json(self.task, "task")
    if (self.task is None) == (self.kind == artifacts.TASK_KIND):
      raise RecordError(f"'task' must be a TaskInfo object exactly for kind "
                        f"{artifacts.TASK_KIND!r}. Received kind {self.kind!r}, task {self.task!r}")
    parts = {"architecture": architecture_lib.Architecture, "input": InputSpec,
             "outputs": Outputs}
    for name, cls in parts.items():
      value = getattr(self, name)
      if isinstance(value, dict):
        setattr(self, name, cls.from_json(value, name))
      elif value is None and not self.is_absent:
        raise RecordError(f"{name!r} must be a {cls.__name__} object. Received: null")
    if self.experts is not None:
      if not isinstance(self.experts, list):
        raise RecordError(f"'experts' must be a list or null. Received: {self.experts!r}")
      self.experts = [e if isinstance(e, artifacts.ExpertInfo) else
                      artifacts.ExpertInfo.from_json(e, f"experts[{i}]")
                      for i, e in enumerate(self.experts)]

  @property
  def is_absent(self):
    """True for a module without tfexperts metadata (`absent`)."""
    return self.format is None

  @classmethod
  def absent(cls, module=None, name=None, kind=None, node=None, resolution=DEFAULT_RESOLUTION):
    """The metadata of a module without tfexperts metadata: all unknown (None) but what a
    published collection lists (its `module` / `name`, `kind`, `node`) and the input contract
    every hub image module shares, at `resolution` (default DEFAULT_RESOLUTION)."""
    unknown = {f.name: None for f in dataclasses.fields(cls)}
    return cls(**{**unknown, "module": module, "name": name, "kind": kind, "node": node,
                  "input": InputSpec(resolution, list(INPUT_RANGE), "float32", "NHWC")})

  def to_json(self):
    """The JSON-ready dict written as `assets/metadata.json`; ValueError for `absent` metadata,
    which is never written."""
    if self.is_absent:
      raise ValueError(f"Metadata of a module without tfexperts metadata ({self.module!r}) is "
                       "not written.")
    return plain({**dataclasses.asdict(self), "architecture": self.architecture.to_json()})

  @classmethod
  def from_json(cls, data, where="module metadata"):
    """The `ModuleMetadata` of dict `data` in METADATA_FORMAT. Raises RecordError naming `where`
    and the key when one is unknown or missing (or holds a malformed value)."""
    artifacts.check_keys(cls, data, where)
    if data["format"] != METADATA_FORMAT:
      raise RecordError(f"{where}: format must be {METADATA_FORMAT!r}. Received: "
                        f"{data['format']!r}")
    try:
      return cls(**data)
    except RecordError as e:
      raise RecordError(f"{where}: {e}") from None


# Format 1's keys that ModuleMetadata names as `artifacts.ModelRecord` does (`_from_format_1`).
_FORMAT_1_NAMES = {"expert_index": "expert_id", "upstream_num_images": "num_upstream_images",
                   "upstream_num_classes": "num_upstream_classes", "training_steps": "steps"}


def _from_format_1(data, where):
  """The reader of older files: the `ModuleMetadata` of a dict in FORMAT_1, the format every
  module was exported in before this record.

  Format 1 held the same facts under other names (`_FORMAT_1_NAMES`; a bank's experts had `index`
  for `expert_id`) and left `outputs.logits` out when the module has no head: this fills it in as
  None (the one default). A key format 1 did not have, or one it always wrote and `data` lacks,
  is an error naming it, as for the current format.
  """
  current = {f.name for f in dataclasses.fields(ModuleMetadata)} - {"task"}  # new in format 2
  old_to_new = {k: _FORMAT_1_NAMES.get(k, k)
                for k in (current - set(_FORMAT_1_NAMES.values())) | set(_FORMAT_1_NAMES)}
  unknown = sorted(set(data) - set(old_to_new))
  if unknown:
    raise RecordError(f"{where}: unknown key {unknown[0]!r} for format {FORMAT_1!r} (unknown "
                      f"keys: {unknown}). Valid keys: {sorted(old_to_new)}")
  missing = sorted(set(old_to_new) - set(data))
  if missing:
    raise RecordError(f"{where}: missing key {missing[0]!r} (missing keys: {missing}).")
  upgraded = {old_to_new[k]: v for k, v in data.items()}
  upgraded["format"], upgraded["task"] = METADATA_FORMAT, None
  if isinstance(data["outputs"], dict):
    upgraded["outputs"] = {"logits": None, **data["outputs"]}
  if isinstance(data["experts"], list):
    upgraded["experts"] = [{("expert_id" if k == "index" else k): v for k, v in e.items()}
                           if isinstance(e, dict) else e for e in data["experts"]]
  return ModuleMetadata.from_json(upgraded, where)


def from_json(data, where="module metadata"):
  """The `ModuleMetadata` of a metadata dict in METADATA_FORMAT or an older format (FORMAT_1).

  Raises RecordError naming `where`, the format or the key when `data` is not a module metadata
  object, its format is unknown, or a key is unknown or missing.
  """
  if not isinstance(data, dict):
    raise RecordError(f"{where}: module metadata must be a JSON object. Received: "
                      f"{type(data).__name__}")
  if "format" not in data:
    raise RecordError(f"{where}: missing key 'format'.")
  if data["format"] == FORMAT_1:
    return _from_format_1(data, where)
  return ModuleMetadata.from_json(data, where)


def input_resolution(metadata, override=None):
  """The image size a module is fed at, the one rule of select_expert, vtab_eval and the API.

  Takes the module's `ModuleMetadata` and an optional override (the binaries' `--resolution`).
  Returns `override` when given, else the metadata's `input.resolution` (the size the expert was
  trained at), else DEFAULT_RESOLUTION (224).
  """
  if override is not None:
    return override
  return metadata.input.resolution or DEFAULT_RESOLUTION


def plain(value):
  """Returns `value` with numpy arrays and scalars (also inside dicts and lists) as plain Python."""
  if isinstance(value, dict):
    return {str(k): plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [plain(v) for v in value]
  if isinstance(value, np.ndarray):
    return plain(value.tolist())
  if isinstance(value, np.generic):
    return value.item()
  return value


def build(kind, name, model, *, module=None, node=None, expert_id=None, num_images=None,
          label_prior=None, slices=None, resolution=None, with_logits=False, logit_names=None,
          experts=None, source=None):
  """The `ModuleMetadata` of one module (see the module docstring for the fields).

  Args:
    kind: one of MODULE_KINDS.
    name: the expert's (or bank's) name.
    model: the exported Keras model (gives architecture, feature and logit sizes).
    module: the module's directory name in its collection.
    node, expert_id, num_images, label_prior, slices: the expert's domain, as known.
    resolution: input resolution the model was trained at (None when unknown).
    with_logits: whether the module exports the head as `logits`.
    logit_names: names of the head's classes.
    experts: for banks, an `artifacts.ExpertInfo` per bank row.
    source: the finished model's `tfexperts.artifacts.ModelRecord` (None when unknown); gives the
      upstream dataset, split, size and class count, the preset, whether the head is multi-label
      and the training steps.

  Returns:
    A `ModuleMetadata`. Raises RecordError on an unknown `kind`, TypeError on another `source`.
  """
  if source is not None and not isinstance(source, artifacts.ModelRecord):
    raise TypeError("`source` must be a tfexperts.artifacts.ModelRecord or None. Received: "
                    f"{type(source).__name__}")
  backbone = getattr(model, "backbone", model)
  known = source is not None
  return ModuleMetadata(
      format=METADATA_FORMAT, name=name, module=module, kind=kind, node=node,
      expert_id=plain(expert_id), num_images=plain(num_images), slices=slices,
      upstream_dataset=source.upstream_dataset if known else None,
      upstream_split=source.upstream_split if known else None,
      num_upstream_images=source.num_upstream_images if known else None,
      num_upstream_classes=source.num_upstream_classes if known else None,
      label_prior=plain(label_prior),
      multi_label=source.multi_label if known and with_logits else None,
      architecture=architecture_lib.describe(model, source.preset if known else None),
      input=InputSpec(plain(resolution), list(INPUT_RANGE), "float32", "NHWC"),
      feature_dim=backbone.feature_dim,
      outputs=Outputs(backbone.feature_dim, backbone.num_classes if with_logits else None),
      logit_names=plain(logit_names) if with_logits else None,
      experts=experts, steps=source.steps if known else None, task=None)


def asset_path(module_dir):
  """Path of the metadata asset inside a module directory."""
  return os.path.join(module_dir, ASSETS_DIR, METADATA_ASSET)


def write(module_dir, metadata):
  """Writes `metadata` (a ModuleMetadata) to `module_dir/assets/metadata.json` (atomically);
  returns the path."""
  if not isinstance(metadata, ModuleMetadata):
    raise TypeError(f"`metadata` must be a ModuleMetadata. Received: {type(metadata).__name__}")
  return fileio.write_json_atomic(asset_path(module_dir), metadata.to_json())


def read(module_dir):
  """The `ModuleMetadata` of the module at `module_dir`; `ModuleMetadata.absent()` when it has
  none (published hub modules, e.g. the BiT experts on tfhub.dev, carry no tfexperts metadata).

  Raises RecordError naming the file (and the key) when it exists but is not valid JSON, not a
  module metadata object, or has an unknown or missing key.
  """
  path = asset_path(module_dir)
  if not tf.io.gfile.exists(path):
    return ModuleMetadata.absent()
  try:
    data = fileio.read_json(path)
  except ValueError as e:
    raise RecordError(f"Module metadata {path!r} is not valid JSON: {e}") from e
  return from_json(data, where=path)
