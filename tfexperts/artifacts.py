"""The finished-model record: what training writes beside a finished model and export reads.

A finished model is a directory holding
  model.json          the Keras serialization of the model
  model.weights.h5    its weights
  metadata.json       its `ModelRecord` (`ModelRecord.to_json`)
(written and read by `tfexperts.models.finished`). This module is neutral: training
(`tfexperts.train`) writes records and export (`tfexperts.hub`) reads them, and neither imports the
other. It also defines, once, the kinds of finished models, training stages and hub modules.

The JSON keys are the dataclass fields, exactly: `ModelRecord.from_json` refuses an unknown key
(a misspelling) and a missing one with a `RecordError` naming it, so no reader falls back to a
default silently. Fields only some kinds carry (`experts`, `domains`, `dat_class_weights`) are
left out of the JSON when None; records written before this module existed read unchanged.
"""
import dataclasses
import json
import os
from typing import Optional

from tfexperts import errors

# Training stages of bin/train_experts, in their usual order, and the finished model each leaves.
STAGES = ("baseline", "full", "adapter", "patch", "epn")
BANK_KINDS = ("adapter_bank", "patch_bank")
STAGE_ARTIFACT = {"baseline": "baseline", "full": "full", "adapter": "adapter_bank",
                  "patch": "patch_bank", "epn": "epn"}
# Kinds of finished models (`ModelRecord.kind`); "dat" is Domain Adaptive Transfer's baseline
# fine-tuned on importance-weighted upstream data (`transfer.dat`), not a stage's model.
DAT_KIND = "dat"
ARTIFACT_KINDS = ("baseline", "full") + BANK_KINDS + ("epn", DAT_KIND)
# Kinds of exported hub modules: single experts (a bank's experts are extracted), the EPN, banks,
# and task modules (an expert with what a downstream fine-tune trained: `transfer.reuse`).
EXPERT_KINDS = ("baseline", "full", "adapter", "patch")
TASK_KIND = "task"
MODULE_KINDS = EXPERT_KINDS + ("epn",) + BANK_KINDS + (TASK_KIND,)

MODEL_CONFIG = "model.json"
MODEL_WEIGHTS = "model.weights.h5"
METADATA = "metadata.json"


class RecordError(errors.UserError):
  """A record (a finished model's or a hub module's metadata.json, a results record) has an
  unknown, missing or malformed key."""


def check_keys(cls, data, where):
  """Raises RecordError naming the first unknown key of dict `data` for dataclass `cls`, then the
  first missing required key (a field without a default); `where` (a file, a path in it) leads
  the message."""
  if not isinstance(data, dict):
    raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}.")
  fields = dataclasses.fields(cls)
  names = [f.name for f in fields]
  unknown = sorted(set(data) - set(names))
  if unknown:
    raise RecordError(f"{where}: unknown key {unknown[0]!r} (unknown keys: {unknown}). Valid "
                      f"keys: {names}")
  required = [f.name for f in fields if f.default is dataclasses.MISSING]
  missing = [n for n in required if n not in data]
  if missing:
    raise RecordError(f"{where}: missing key {missing[0]!r} (missing keys: {missing}).")


def _to_json(record):
  return {k: v for k, v in dataclasses.asdict(record).items()
          if v is not None or k not in _OMITTED_WHEN_NONE}


_OMITTED_WHEN_NONE = ("experts", "domains", "dat_class_weights")


class StrictJson:
  """`to_json` / `from_json` of a flat record dataclass whose keys are its fields, exactly."""

  def to_json(self):
    """The JSON-ready dict of this record."""
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data, where=None):
    """The record of dict `data`; raises RecordError naming an unknown or missing key (and
    `where`, e.g. "experts[1]")."""
    check_keys(cls, data, where or cls.__name__)
    return cls(**data)


@dataclasses.dataclass
class ExpertInfo(StrictJson):
  """One expert of a finished model (a full expert, or one expert of a bank).

  Attributes:
    expert_id: its index in the run's expert domains (the bank row it was trained in).
    name: its name (the hierarchy node of its domain).
    node: the hierarchy node of its domain (equal to `name` for every trained expert).
    num_images: upstream images in its slice.
    label_prior: its empirical distribution over the upstream labels (list of floats).
    slices: "semantic" (its domain's images) or "random" (a same-size random control).
  """
  expert_id: int
  name: str
  node: str
  num_images: int
  label_prior: list
  slices: str


@dataclasses.dataclass
class DomainInfo(StrictJson):
  """One expert domain the expert prediction network predicts (its logit names, in order)."""
  expert_id: int
  name: str
  num_images: int


@dataclasses.dataclass
class ModelRecord:
  """What a finished model is (its metadata.json).

  Attributes:
    kind: one of ARTIFACT_KINDS.
    name: the model's name ("baseline", "epn", a bank's name, a full expert's domain).
    upstream_dataset, upstream_split: the tfds dataset and split it was trained on.
    num_upstream_images, num_upstream_classes, upstream_class_names: facts of that data.
    preset, model_overrides: `tfexperts.models.bit.create_model` arguments.
    resolution: training input size (the exported module's `input.resolution`).
    input_range: the range of its input values, [0.0, 1.0].
    steps: training steps.
    multi_label: whether its head was trained multi-label (sigmoid).
    experts: `ExpertInfo` per expert, for banks (in expert index order) and full experts.
    domains: `DomainInfo` per predicted domain, for the EPN.
    dat_class_weights: the per-class importance weights of a DAT model.
  """
  kind: str
  name: str
  upstream_dataset: str
  upstream_split: str
  num_upstream_images: int
  num_upstream_classes: int
  upstream_class_names: list
  preset: str
  model_overrides: dict
  resolution: int
  input_range: list
  steps: int
  multi_label: bool
  experts: Optional[list] = None
  domains: Optional[list] = None
  dat_class_weights: Optional[list] = None

  def __post_init__(self):
    if self.kind not in ARTIFACT_KINDS:
      raise RecordError(f"A finished model's kind must be one of {ARTIFACT_KINDS}. Received: "
                        f"{self.kind!r}")
    # A bank's record lists its experts (its routing indexes them), a full expert's its one
    # expert; a DAT model has its class weights instead.
    if self.kind in BANK_KINDS and not self.experts:
      raise RecordError(f"A {self.kind} record needs 'experts', a list of expert records ("
                        "expert_id, name, node, num_images, label_prior, slices; one per expert "
                        f"index). Received: {self.experts!r}")
    if self.kind == "full" and (not isinstance(self.experts, list) or len(self.experts) != 1):
      raise RecordError("A full record needs 'experts' with its one expert record. Received: "
                        f"{self.experts!r}")
    if (self.kind == DAT_KIND) != (self.dat_class_weights is not None):
      raise RecordError("'dat_class_weights' belongs to (and is needed by) a dat record; this is "
                        f"a {self.kind!r} record with dat_class_weights={self.dat_class_weights!r}")
    self.experts = None if self.experts is None else [
        e if isinstance(e, ExpertInfo) else ExpertInfo.from_json(e, f"experts[{i}]")
        for i, e in enumerate(_as_list("experts", self.experts))]
    self.domains = None if self.domains is None else [
        d if isinstance(d, DomainInfo) else DomainInfo.from_json(d, f"domains[{i}]")
        for i, d in enumerate(_as_list("domains", self.domains))]

  @property
  def expert(self):
    """The one `ExpertInfo` of a full expert."""
    if self.kind != "full":
      raise RecordError(f"A {self.kind} record has no single expert (only full records do).")
    return self.experts[0]

  @property
  def domain_names(self):
    """The EPN's logit names (its domains' names, in order), or None."""
    return None if self.domains is None else [d.name for d in self.domains]

  def to_json(self):
    """The JSON-ready dict written as metadata.json (optional fields left out when None)."""
    return _to_json(self)

  @classmethod
  def from_json(cls, data, where="finished-model record"):
    """A `ModelRecord` from a metadata.json dict.

    Raises RecordError (a UserError) naming the key when one is unknown (misspelt) or a required
    one is missing, or when `kind` is not one of ARTIFACT_KINDS.
    """
    if isinstance(data, dict) and "kind" in data and data["kind"] not in ARTIFACT_KINDS:
      raise RecordError(f"{where}: kind {data['kind']!r} is not one of {ARTIFACT_KINDS}.")
    if (isinstance(data, dict) and data.get("kind") == "full" and not data.get("experts")
        and data.get("dat_class_weights") is not None):
      data = {**data, "kind": DAT_KIND}  # written before DAT had its kind
    check_keys(cls, data, where)
    try:
      return cls(**data)
    except RecordError as e:
      raise RecordError(f"{where}: {e}") from None


def _as_list(name, value):
  if not isinstance(value, list):
    raise RecordError(f"{name!r} must be a list. Received: {type(value).__name__}")
  return value


def record_path(directory):
  """Path of the record (metadata.json) of the finished model at `directory`."""
  return os.path.join(directory, METADATA)


def read_record(directory):
  """The `ModelRecord` of the finished model at `directory` (local or gs://).

  Raises RecordError naming the file and the key when the record is malformed.
  """
  from tfexperts import fileio  # pylint: disable=g-import-not-at-top  (fileio imports TensorFlow)
  path = record_path(directory)
  try:
    data = fileio.read_json(path)
  except json.JSONDecodeError as e:
    raise RecordError(f"{path!r} is not valid JSON: {e}") from e
  return ModelRecord.from_json(data, where=path)


def write_record(directory, record):
  """Writes `record` (a ModelRecord) as the metadata.json of `directory`, atomically."""
  from tfexperts import fileio  # pylint: disable=g-import-not-at-top
  if not isinstance(record, ModelRecord):
    raise TypeError(f"`record` must be a ModelRecord. Received: {type(record).__name__}")
  return fileio.write_json_atomic(record_path(directory), record.to_json())
