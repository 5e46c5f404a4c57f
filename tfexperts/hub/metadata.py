"""Module metadata: the JSON written to `assets/metadata.json` of every exported hub module.

Keys (absent information is null):
  format              METADATA_FORMAT
  name                the expert's name (its domain's name; "baseline", "epn", or the bank's name)
  module              the module's directory name in its collection
  kind                one of MODULE_KINDS
  node                hierarchy node of the expert's domain
  expert_index        the expert's index in the bank it was trained in (adapter / patch experts)
  num_images          upstream images the expert was trained on
  slices              "semantic" (the domain's images) or "random" (a same-size random control)
  upstream_dataset, upstream_split, upstream_num_images, upstream_num_classes
  label_prior         the expert's prior over upstream labels (list of floats)
  multi_label         whether the head was trained multi-label (sigmoid) rather than softmax
  architecture        {"family", "preset", "units", "width", "groups", "adapters", "patch_experts"}
  input               {"resolution", "range": [0.0, 1.0], "dtype": "float32", "layout": "NHWC"}
  feature_dim         size of the pre-logits
  outputs             {"pre_logits": feature_dim, "logits": classes} ("logits" only with a head)
  logit_names         names of the logits' classes (upstream labels, or the EPN's domains)
  experts             for banks: [{index, name, node, num_images, label_prior}, ...]
  training_steps      steps of the training run, when recorded
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf

from tfexperts import artifacts
from tfexperts import defaults
from tfexperts import fileio

METADATA_FORMAT = "tfexperts.hub.module/1"
METADATA_ASSET = "metadata.json"
ASSETS_DIR = "assets"

EXPERT_KINDS = artifacts.EXPERT_KINDS
MODULE_KINDS = artifacts.MODULE_KINDS
BANK_KINDS = artifacts.BANK_KINDS
INPUT_RANGE = [0.0, 1.0]
DEFAULT_RESOLUTION = defaults.RESOLUTION  # published hub experts carry no tfexperts metadata


def input_resolution(metadata, override=None):
  """The image size a module is fed at, the one rule of select_expert, vtab_eval and the API.

  Takes the module's metadata dict (empty for modules without tfexperts metadata) and an optional
  override (the binaries' `--resolution`). Returns `override` when given, else the metadata's
  `input.resolution` (the size the expert was trained at), else DEFAULT_RESOLUTION (224).
  """
  if override is not None:
    return override
  return ((metadata or {}).get("input") or {}).get("resolution") or DEFAULT_RESOLUTION


def to_json(value):
  """Returns `value` with numpy arrays and scalars (also inside dicts and lists) as plain Python."""
  if isinstance(value, dict):
    return {str(k): to_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_json(value.tolist())
  if isinstance(value, np.generic):
    return value.item()
  return value


def architecture(model):
  """Describes a built `ResNetV2` or `AdapterExpertModel` as a JSON-ready dict."""
  backbone = getattr(model, "backbone", model)
  return {"family": "BiT ResNet-v2", "units": list(backbone.units_per_block),
          "width": backbone.width, "groups": backbone.groups,
          "adapters": backbone is not model, "patch_experts": backbone.patch_experts}


def build(kind, name, model, *, node=None, expert_index=None, num_images=None, label_prior=None,
          slices=None, resolution=None, with_logits=False, logit_names=None, experts=None,
          source=None):
  """Metadata dict for one module (see the module docstring for the keys).

  Args:
    kind: one of MODULE_KINDS.
    name: the expert's (or bank's) name.
    model: the exported Keras model (gives architecture, feature and logit sizes).
    node, expert_index, num_images, label_prior, slices: the expert's domain, as known.
    resolution: input resolution the model was trained at (None when unknown).
    with_logits: whether the module exports the head as `logits`.
    logit_names: names of the head's classes.
    experts: for banks, the list of per-expert dicts.
    source: the finished model's `tfexperts.artifacts.ModelRecord` (or a dict of some of its
      fields; None when unknown); gives the
      upstream dataset, split, size and class count, the preset, whether the head is multi-label
      and the training steps.

  Returns:
    A JSON-ready dict. Raises ValueError on an unknown `kind`.
  """
  if kind not in MODULE_KINDS:
    raise ValueError(f"`kind` must be one of {MODULE_KINDS}. Received: kind={kind!r}")
  if isinstance(source, artifacts.ModelRecord):
    source = dataclasses.asdict(source)
  if source is not None and not isinstance(source, dict):
    raise TypeError("`source` must be a tfexperts.artifacts.ModelRecord, a dict of some of its "
                    f"fields, or None. Received: {type(source).__name__}")
  fact = (source or {}).get
  backbone = getattr(model, "backbone", model)
  outputs = {"pre_logits": backbone.feature_dim}
  if with_logits:
    outputs["logits"] = backbone.num_classes
  arch = architecture(model)
  arch["preset"] = fact("preset")
  return to_json({
      "format": METADATA_FORMAT, "name": name, "module": None, "kind": kind, "node": node,
      "expert_index": expert_index, "num_images": num_images, "slices": slices,
      "upstream_dataset": fact("upstream_dataset"),
      "upstream_split": fact("upstream_split"),
      "upstream_num_images": fact("num_upstream_images"),
      "upstream_num_classes": fact("num_upstream_classes"),
      "label_prior": label_prior,
      "multi_label": fact("multi_label") if with_logits else None, "architecture": arch,
      "input": {"resolution": resolution, "range": INPUT_RANGE, "dtype": "float32",
                "layout": "NHWC"},
      "feature_dim": backbone.feature_dim, "outputs": outputs,
      "logit_names": logit_names if with_logits else None,
      "experts": experts, "training_steps": fact("steps"),
  })


def asset_path(module_dir):
  """Path of the metadata asset inside a module directory."""
  return os.path.join(module_dir, ASSETS_DIR, METADATA_ASSET)


def write(module_dir, metadata):
  """Writes `metadata` to `module_dir/assets/metadata.json` (atomically); returns the path."""
  return fileio.write_json_atomic(asset_path(module_dir), metadata)


def read(module_dir):
  """Returns the metadata dict of the module at `module_dir`, or None when it has none.

  Published hub modules (e.g. the BiT experts on tfhub.dev) carry no tfexperts metadata. Raises
  ValueError naming the file when it exists but is not a JSON object.
  """
  path = asset_path(module_dir)
  if not tf.io.gfile.exists(path):
    return None
  try:
    data = fileio.read_json(path)
  except ValueError as e:
    raise ValueError(f"Module metadata {path!r} is not valid JSON: {e}") from e
  if not isinstance(data, dict):
    raise ValueError(f"Module metadata {path!r} must hold a JSON object. "
                     f"Received: {type(data).__name__}")
  return data
