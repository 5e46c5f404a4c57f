"""Task strings: a task from any tfds dataset or image folder, beside the registry's names.

    tfds:NAME[/CONFIG][:VERSION][?image=KEY&label=KEY]
    folder:PATH[?seed=N]

`tfds:` takes a prepared tfds dataset with one `Image` and one `ClassLabel` feature, found in
`builder.info.features` (name them with `image=` / `label=` when there are several). `folder:`
takes `PATH/<class>/*.{jpg,jpeg,png}` or `PATH/train/<class>/` (+ optional `PATH/test/<class>/`)
through tfds's `ImageFolder` (see `folder_builder`); `seed` (default 0) shuffles the training
images before the splits. Both get the VTAB-1k splits of `vtab_splits` (train800, val200,
train800val200, test) and preprocessing identical to registry tasks.

`task_fields(spec, data_dir, prepared_builder)` returns the fields of a `tasks.Task`; use
`tasks.get_task(spec, data_dir)`. The task's `name` (output directories, feature cache keys) is a
filesystem-safe form of the string; a folder's name also carries a hash of its path, seed and file
list, so adding images never reuses stale cached features.
"""
import os
import re
import urllib.parse

from tfexperts import lazy
from tfexperts.data import vtab_splits
from tfexperts.errors import UserError

# Imported on first use: `is_spec` (asked by `tasks.get_task` for every name, known or not) must not
# load TensorFlow, so an unknown task name fails before it does.
tfds = lazy.LazyModule("tensorflow_datasets")
folder_builder = lazy.LazyModule("tfexperts.data.folder_builder")

TFDS, FOLDER = "tfds:", "folder:"
FORMS = "tfds:NAME[/CONFIG][:VERSION][?image=KEY&label=KEY] or folder:PATH[?seed=N]"
OPTIONS = {TFDS: ("image", "label"), FOLDER: ("seed",)}
GROUP = SUITE = "custom"


def is_spec(name):
  """True when `name` is a task string (starts with "tfds:" or "folder:")."""
  return isinstance(name, str) and name.startswith((TFDS, FOLDER))


def parse(spec):
  """Splits a task string into `(prefix, body, options)`; UserError on unknown or repeated options.

  `"tfds:cifar100:3.*.*?label=coarse_label"` -> `("tfds:", "cifar100:3.*.*", {"label": ...})`.
  """
  if not is_spec(spec):
    raise UserError(f"Not a task string: {spec!r}. Expected {FORMS}.")
  prefix = TFDS if spec.startswith(TFDS) else FOLDER
  body, _, query = spec[len(prefix):].partition("?")
  if not body:
    raise UserError(f"Task string {spec!r} names no {'dataset' if prefix == TFDS else 'path'}. "
                    f"Expected {FORMS}.")
  try:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
  except ValueError as e:
    raise UserError(f"Cannot parse the options of task string {spec!r}: {e}. Expected "
                    "?key=value&key=value.") from e
  keys = [k for k, _ in pairs]
  bad = sorted({k for k in keys if k not in OPTIONS[prefix] or keys.count(k) > 1})
  if bad:
    raise UserError(f"Task string {spec!r}: unknown or repeated options {bad}. Options of "
                    f"{prefix} tasks: {list(OPTIONS[prefix])}, each at most once.")
  return prefix, body, dict(pairs)


def _slug(text):
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def _feature_summary(features):
  return {key: type(feature).__name__ for key, feature in features.items()}


def _pick(spec, features, key, kind, option):
  """The feature key of type `kind` (given or the only one); UserError listing the features."""
  found = [k for k, f in features.items() if isinstance(f, kind)]
  listing = (f"Features: {_feature_summary(features)}. Name one with ?{option}=KEY "
             f"(e.g. {spec.split('?')[0]}?{option}={found[0] if found else 'KEY'}).")
  if key is not None:
    if key not in features:
      raise UserError(f"Task {spec!r}: the dataset has no feature {key!r}. {listing}")
    if not isinstance(features[key], kind):
      raise UserError(f"Task {spec!r}: feature {key!r} is a {type(features[key]).__name__}, not "
                      f"a {kind.__name__}. {listing}")
    return key
  if len(found) != 1:
    how = "no" if not found else f"{len(found)} ({found})"
    raise UserError(f"Task {spec!r}: the dataset has {how} {kind.__name__} features, so the "
                    f"{option} feature cannot be chosen. {listing}")
  return found[0]


def _tfds_fields(spec, body, options, data_dir, prepared_builder):
  tfds_name, _, version = body.partition(":")
  builder = prepared_builder(spec, tfds_name, version or None, data_dir)
  features = builder.info.features
  image_key = _pick(spec, features, options.get("image"), tfds.features.Image, "image")
  label_key = _pick(spec, features, options.get("label"), tfds.features.ClassLabel, "label")
  sizes = {name: info.num_examples for name, info in builder.info.splits.items()}
  ranges, note = vtab_splits.vtab1k_splits(sizes, f"Dataset {tfds_name} ({spec!r})")
  name = "tfds-" + _slug(body)
  if options:
    name += "-" + _slug("-".join(f"{k}={v}" for k, v in sorted(options.items())))
  return {"name": name, "tfds_name": tfds_name, "version": version or None,
          "num_classes": features[label_key].num_classes, "group": GROUP, "suite": SUITE,
          "splits": {split: r.tfds() for split, r in ranges.items()},
          "image_key": image_key, "label_key": label_key, "spec": spec, "split_note": note}


def _folder_fields(spec, body, options):
  seed = options.get("seed", "0")
  if not seed.isdigit():
    raise UserError(f"Task {spec!r}: seed must be a non-negative integer. Received: seed={seed!r}")
  folder = folder_builder.FolderBuilder(body, seed=int(seed))
  name = f"folder-{_slug(os.path.basename(folder.root)) or 'root'}-{folder.fingerprint[:8]}"
  return {"name": name, "tfds_name": f"image_folder:{folder.root}", "version": None,
          "num_classes": len(folder.class_names), "group": GROUP, "suite": SUITE,
          "splits": {split: split for split in folder.ranges}, "spec": spec,
          "builder_fn": folder.get, "split_note": folder.note,
          "split_sources": folder.describe()}


def task_fields(spec, data_dir=None, prepared_builder=None):
  """The `tasks.Task` fields of task string `spec` (a dict of keyword arguments).

  Args:
    spec: a task string (see the module docstring).
    data_dir: tfds data dir of a `tfds:` dataset (None: tfds's default).
    prepared_builder: `(spec, tfds_name, version, data_dir) -> prepared tfds builder`, raising a
      clear error when the data is not prepared (`tasks.get_task` passes one).

  Raises UserError naming the bad part and what is valid.
  """
  prefix, body, options = parse(spec)
  if prefix == FOLDER:
    return _folder_fields(spec, body, options)
  return _tfds_fields(spec, body, options, data_dir, prepared_builder)
