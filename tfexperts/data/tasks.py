"""Task registry: VTAB-1k, natural-transfer (DAT) and offline tasks over tensorflow-datasets.

A `Task` names a tfds builder (name/config and version), the image key, the label key or a label
function, the number of classes, its group and its splits. Every task has the splits `train800`,
`val200`, `train800val200` and `test`, defined as in task_adaptation's VTAB-1k (train800 is
`train[:800]` everywhere; percentages such as N90 are that share of the tfds `train` split's size,
read from the builder's info). `task.load(split, ...)` returns a `tf.data` pipeline of
`(image float32 [h, w, 3] in [0, 1], label int32)`.

Suites:
* `vtab`: the 19 VTAB-1k tasks (groups natural / specialized / structured).
* `dat`: natural datasets of the comparison with Domain Adaptive Transfer, 1000 training examples:
  `train1k` = `train[:1000]`, `train800`, `val200` = `train[800:1000]`, `train800val200` = train1k.
  FGVC-Aircraft is absent: tensorflow-datasets has no builder for it.
* `offline`: the project's own tfds datasets (group "offline"), which build without a network.

Beside the names, `get_task` takes task strings for any data (`task_specs`):
`tfds:NAME[/CONFIG][:VERSION][?image=KEY&label=KEY]` and `folder:PATH`, with the VTAB-1k splits of
`vtab_splits` (group and suite "custom").

Data is read from prepared tfds data dirs only unless `download=True`. A version the installed
tensorflow-datasets cannot generate (e.g. kitti 3.1.0, oxford_iiit_pet 3.x) is loaded when it is in
the data dir; otherwise the error names the version and how to prepare it.
"""
import dataclasses
import difflib
import importlib
from typing import Callable, Mapping, Optional

import numpy as np

from tfexperts import errors
from tfexperts import lazy
from tfexperts import startup_noise
from tfexperts.errors import UserError, did_you_mean

# Imported on first use: the registry (names, splits) is read by the binaries' flag checks before
# TensorFlow loads (task_specs imports tensorflow_datasets).
task_specs = lazy.LazyModule("tfexperts.data.task_specs")
tf = lazy.LazyModule("tensorflow")
tfds = lazy.LazyModule("tensorflow_datasets")
pipeline = lazy.LazyModule("tfexperts.data.pipeline")
pp = lazy.LazyModule("tfexperts.data.preprocess")

STANDARD_SPLITS = ("train800", "val200", "train800val200", "test")
GROUPS = ("natural", "specialized", "structured", "offline")
SUITES = ("vtab", "dat", "offline")


class DataNotPreparedError(errors.UserError, FileNotFoundError):
  """A task's tfds dataset (at its version) is not in the data dir; the message says how to fix."""


@dataclasses.dataclass(frozen=True)
class PercentSlice:
  """`source[start:start + count]` (to the end when count is None), start = percent% of source."""
  source: str
  percent: int
  count: Optional[int] = None

  def resolve(self, sizes):
    """Returns the tfds split string, given `{split: num_examples}` of the builder."""
    if self.source not in sizes:
      raise ValueError(f"Split {self.source!r} is not in the dataset. Available: {sorted(sizes)}")
    start = self.percent * sizes[self.source] // 100
    end = "" if self.count is None else start + self.count
    return f"{self.source}[{start}:{end}]"


def _resolve(spec, sizes):
  if isinstance(spec, str):
    return spec
  if isinstance(spec, PercentSlice):
    return spec.resolve(sizes)
  return "+".join(_resolve(part, sizes) for part in spec)  # a tuple of parts


@dataclasses.dataclass(frozen=True)
class Task:
  """One transfer task.

  Attributes:
    name: registry name.
    tfds_name: tfds name with config, e.g. "eurosat/rgb".
    version: tfds version spec ("2.*.*", "3.1.0"), or None for the installed default.
    num_classes: number of classes; labels are in [0, num_classes).
    group: "natural", "specialized", "structured" or "offline".
    suite: "vtab", "dat" or "offline".
    splits: split name -> tfds split string, `PercentSlice`, or tuple of those (joined by "+").
    image_key: feature key of the image.
    label_key: feature key of an integer label (None when `label_fn` is given).
    label_fn: function of the decoded tfds features dict returning the integer label.
    image_fn: function on the decoded uint8 RGB image run before preprocessing (e.g. dsprites'
      0/1 -> 0/255), or None.
    spec: the task string a `tfds:` / `folder:` task was made from (see `task_specs`), else None.
    builder_fn: `(data_dir, download) -> builder` used instead of `tfds.builder` (folder tasks).
    split_note: which split rule applied (spec tasks), for the output and the records.
    split_sources: `{split: description}` when `splits` values are not tfds split strings of a
      named dataset (folder tasks).
  """
  name: str
  tfds_name: str
  version: Optional[str]
  num_classes: int
  group: str
  suite: str
  splits: Mapping[str, object]
  image_key: str = "image"
  label_key: Optional[str] = "label"
  label_fn: Optional[Callable] = None
  image_fn: Optional[Callable] = None
  spec: Optional[str] = None
  builder_fn: Optional[Callable] = None
  split_note: str = ""
  split_sources: Optional[Mapping[str, str]] = None

  @property
  def tfds_spec(self):
    """The string given to `tfds.builder`, e.g. "clevr:3.*.*"."""
    return f"{self.tfds_name}:{self.version}" if self.version else self.tfds_name

  def builder(self, data_dir=None, download=False):
    """Returns the prepared tfds builder of this task.

    Takes a tfds data dir (None: tfds's default) and whether tfds may download and prepare the
    data when it is missing. Raises `DataNotPreparedError` naming the version and how to prepare it.
    """
    importlib.import_module("tfexperts.data.builders")  # registers the offline builders with tfds
    if self.builder_fn is not None:
      return self.builder_fn(data_dir, download)
    where = data_dir or "the default tfds data dir"
    try:
      builder = tfds.builder(self.tfds_spec, data_dir=data_dir)
    except (AssertionError, ValueError, tfds.core.registered.DatasetNotFoundError) as e:
      raise DataNotPreparedError(
          f"Task {self.name!r} reads {self.tfds_spec}, which is not prepared in {where} and which "
          f"tensorflow-datasets {tfds.__version__} cannot build ({e}). "
          + self._old_version_advice()) from e
    if builder.is_prepared():
      return builder
    installable = sorted({str(builder.canonical_version), str(max(builder.versions))})
    can_generate = str(builder.version) in installable
    if download and can_generate:
      startup_noise.quiet_tfds()
      builder.download_and_prepare()
      return builder
    message = (f"Task {self.name!r} reads {self.tfds_name} version {builder.version} "
               f"({self.tfds_spec}), which is not prepared in {builder.data_dir_root}. ")
    if not can_generate:
      message += (f"tensorflow-datasets {tfds.__version__} only generates versions {installable} "
                  "of it. " + self._old_version_advice())
    elif self.suite == "offline":
      message += ("Build it with tfexperts.data.offline.prepare_offline_datasets(data_dir, "
                  f"[{self.tfds_name!r}]) or load with download=True (nothing is downloaded).")
    else:
      message += (f"Prepare it with `tfds build '{self.tfds_name}:{builder.version}' --data_dir "
                  "<data_dir>` or load "
                  "with download=True (needs network; some datasets need a manual download, see "
                  "the tfds catalog).")
    raise DataNotPreparedError(message)

  def _old_version_advice(self):
    return ("Prepare it with an older tensorflow-datasets release that still generates "
            f"{self.tfds_spec} (`tfds build '{self.tfds_spec}' --data_dir <data_dir>`), or copy an "
            f"already prepared {self.tfds_name}/<version> directory into the data dir.")

  def tfds_split(self, split, builder):
    """Resolves a task split name to the tfds split string of `builder`'s data."""
    if split not in self.splits:
      raise errors.UserError(f"Unknown split {split!r} for task {self.name!r}. Known splits: "
                       f"{list(self.splits)}")
    sizes = {name: info.num_examples for name, info in builder.info.splits.items()}
    return _resolve(self.splits[split], sizes)

  def describe_splits(self, data_dir=None):
    """`{split: resolved source}` for every split, plus `"note"` when a split rule applied.

    E.g. `{"train800": "train[:800]", ..., "test": "validation"}`; reads the prepared builder's
    split sizes for registry tasks.
    """
    if self.split_sources is not None:
      described = dict(self.split_sources)
    else:
      builder = self.builder(data_dir)
      described = {split: self.tfds_split(split, builder) for split in self.splits}
    if self.split_note:
      described["note"] = self.split_note
    return described

  def num_examples(self, split, data_dir=None):
    """Number of examples of a task split in the prepared data."""
    builder = self.builder(data_dir)
    return builder.info.splits[self.tfds_split(split, builder)].num_examples

  def extract(self, features):
    """Maps decoded tfds features to `{"image": raw image, "label": int32}` (in TF)."""
    label = self.label_fn(features) if self.label_fn else features[self.label_key]
    return {"image": features[self.image_key], "label": tf.cast(label, tf.int32)}

  def load(self, split, data_dir=None, *, image_size=None, augment=False, preprocess=None,
           shuffle_buffer=0, repeat=False, batch_size=None, drop_remainder=False, seed=0,
           skip=0, shard=(1, 0), download=False):
    """Returns a `tf.data.Dataset` of `(image, label)` for a task split.

    Args:
      split: one of `self.splits` (train800, val200, train800val200, test, ...).
      data_dir: tfds data dir (local or gs://); None for tfds's default.
      image_size: output size (int or (h, w)); None keeps the stored size.
      augment: with the default preprocessing, use `train_preprocess(image_size)` (random crop
        and flip) instead of `eval_preprocess(image_size)`.
      preprocess: a custom preprocessing spec (see `preprocess`), run on the decoded uint8 image;
        it must produce float32 in [0, 1]. Excludes `image_size` and `augment`.
      shuffle_buffer, repeat, batch_size, drop_remainder, seed, skip, shard: see
        `pipeline.finish`.
      download: let tfds download and prepare missing data.

    Images come out float32 in [0, 1], `[h, w, 3]` (batched: `[b, h, w, 3]`); labels int32.
    """
    if preprocess is not None and (image_size is not None or augment):
      raise ValueError("Pass either `preprocess` or `image_size`/`augment`, not both. Received: "
                       f"preprocess={preprocess!r}, image_size={image_size!r}, augment={augment!r}")
    if preprocess is None:
      preprocess = train_preprocess(image_size) if augment else eval_preprocess(image_size)
    builder = self.builder(data_dir, download)
    tfds_split = self.tfds_split(split, builder)
    decoders = None
    if isinstance(builder.info.features[self.image_key], tfds.features.Image):
      decoders = {self.image_key: tfds.decode.SkipDecoding()}  # decode after shuffling
    ds = builder.as_dataset(split=tfds_split, shuffle_files=False, decoders=decoders)
    ds = ds.map(self.extract, num_parallel_calls=tf.data.AUTOTUNE)
    image_fn = self.image_fn
    task_image = [lambda f: {**f, "image": image_fn(f["image"])}] if image_fn else []
    preprocess_fn = pp.compose("decode", task_image, preprocess)

    ds = pipeline.finish(ds, preprocess_fn, shuffle_buffer=shuffle_buffer, repeat=repeat,
                         batch_size=batch_size, drop_remainder=drop_remainder, seed=seed,
                         skip=skip, shard=shard)
    return ds.map(lambda f: (f["image"], f["label"]))


def eval_preprocess(image_size=None):
  """Evaluation preprocessing: resize to `image_size` (if given), values to [0, 1]."""
  return "|".join(stage for stage in eval_preprocess_stages(image_size) if stage)


def eval_preprocess_stages(image_size=None):
  """`eval_preprocess(image_size)` as two specs, `(per_image, per_batch)`.

  `per_image` ("" without a size) resizes the decoded image and keeps it uint8 (`resize` rounds
  back to the input dtype); `per_batch` maps it to float32 [0, 1]. Run in turn, they give exactly
  `eval_preprocess`'s images: a store of resized images can keep them as uint8, 4x smaller.
  """
  return (f"resize({image_size!r})" if image_size is not None else "", "value_range(0, 1)")


def train_preprocess(image_size):
  """Training preprocessing: resize to 1.25x, random crop `image_size`, random flip, [0, 1].

  Flips change the label of orientation tasks (dsprites_orientation, smallnorb_azimuth): use a
  custom spec there.
  """
  if image_size is None:
    raise ValueError("`augment=True` needs an `image_size`. Received: image_size=None")
  h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
  return (f"resize_random_crop(({int(h * 1.25)}, {int(w * 1.25)}), ({h}, {w}))|flip_lr|"
          "value_range(0, 1)")


# Label functions (task_adaptation's definitions).

def clevr_count_label(features):
  """Number of objects - 3 (CLEVR has 3..10 objects: 8 classes)."""
  return tf.size(features["objects"]["size"]) - 3


CLEVR_DISTANCE_THRESHOLDS = np.array([0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])


def clevr_distance_label(features):
  """Bin of the closest object's depth (pixel_coords[:, 2]) by CLEVR_DISTANCE_THRESHOLDS."""
  depth = tf.reduce_min(features["objects"]["pixel_coords"][:, 2])
  return _bin(depth, CLEVR_DISTANCE_THRESHOLDS)


KITTI_DISTANCE_THRESHOLDS = np.array([-100.0, 8.0, 20.0, 999.0])


def kitti_distance_label(features):
  """Bin of the nearest Car/Van/Truck's depth (location[2]); depth 1000 (class 3) when none."""
  objects = features["objects"]
  vehicles = tf.where(objects["type"] < 3)  # Car, Van, Truck
  depths = tf.gather(objects["location"][:, 2], vehicles)
  depths = tf.concat([tf.cast(depths, tf.float32), tf.constant([[1000.0]])], axis=0)
  return _bin(tf.reduce_min(depths), KITTI_DISTANCE_THRESHOLDS)


def _bin(value, thresholds):
  """Index of the last threshold strictly below `value` (task_adaptation's binning)."""
  below = tf.where((thresholds - tf.cast(value, tf.float64)) < 0)
  return tf.reduce_max(below)


def binned_label(key, original_classes, bins):
  """Returns a label function: floor(features[key] / (original_classes / bins))."""
  factor = float(original_classes) / bins

  def label_fn(features):
    return tf.cast(tf.math.floordiv(tf.cast(features[key], tf.float32), factor), tf.int32)
  return label_fn


def dsprites_image(image):
  """dsprites pixels are 0/1: scale to 0/255 (3 channels come from decoding)."""
  return tf.saturate_cast(tf.cast(image, tf.int32) * 255, tf.uint8)


# Registry.

def _vtab(name, tfds_name, version, num_classes, group, val200, test, **kwargs):
  splits = {"train800": "train[:800]", "val200": val200,
            "train800val200": ("train[:800]", val200), "test": test}
  return Task(name, tfds_name, version, num_classes, group, "vtab", splits, **kwargs)


def _dat(name, tfds_name, version, num_classes, test="test"):
  splits = {"train1k": "train[:1000]", "train800": "train[:800]", "val200": "train[800:1000]",
            "train800val200": "train[:1000]", "test": test}
  return Task(name, tfds_name, version, num_classes, "natural", "dat", splits)


def _offline(name, tfds_name, num_classes):
  splits = {"train800": "train[:800]", "val200": "validation[:200]",
            "train800val200": ("train[:800]", "validation[:200]"), "test": "test"}
  return Task(name, tfds_name, "1.*.*", num_classes, "offline", "offline", splits)


_N90_200, _N80_200, _N60_200 = (PercentSlice("train", p, 200) for p in (90, 80, 60))

_TASK_LIST = [
    # VTAB-1k natural.
    _vtab("caltech101", "caltech101", "3.*.*", 102, "natural", _N90_200, "test"),
    _vtab("cifar100", "cifar100", "3.*.*", 100, "natural", "train[45000:45200]", "test"),
    _vtab("dtd", "dtd", "3.*.*", 47, "natural", "validation[:200]", "test"),
    _vtab("oxford_flowers102", "oxford_flowers102", "2.*.*", 102, "natural", "validation[:200]",
          "test"),
    _vtab("oxford_iiit_pet", "oxford_iiit_pet", "3.*.*", 37, "natural", _N80_200, "test"),
    _vtab("svhn", "svhn_cropped", "3.*.*", 10, "natural", _N90_200, "test"),
    _vtab("sun397", "sun397/tfds", "4.*.*", 397, "natural", "validation[:200]", "test"),
    # VTAB-1k specialized.
    _vtab("patch_camelyon", "patch_camelyon", "2.*.*", 2, "specialized", "validation[:200]",
          "test"),
    _vtab("eurosat", "eurosat/rgb", "2.*.*", 10, "specialized", _N60_200,
          PercentSlice("train", 80)),
    _vtab("resisc45", "resisc45", "3.*.*", 45, "specialized", _N60_200,
          PercentSlice("train", 80)),
    _vtab("diabetic_retinopathy", "diabetic_retinopathy_detection/btgraham-300", "3.*.*", 5,
          "specialized", "validation[:200]", "test"),
    # VTAB-1k structured.
    _vtab("clevr_count", "clevr", "3.*.*", 8, "structured", _N90_200, "validation",
          label_key=None, label_fn=clevr_count_label),
    _vtab("clevr_distance", "clevr", "3.*.*", 6, "structured", _N90_200, "validation",
          label_key=None, label_fn=clevr_distance_label),
    _vtab("dmlab", "dmlab", "2.0.1", 6, "structured", "validation[:200]", "test"),
    _vtab("kitti_distance", "kitti", "3.1.0", 4, "structured", "validation[:200]", "test",
          label_key=None, label_fn=kitti_distance_label),
    _vtab("dsprites_location", "dsprites", "2.*.*", 16, "structured", _N80_200,
          PercentSlice("train", 90), label_key=None,
          label_fn=binned_label("label_x_position", 32, 16), image_fn=dsprites_image),
    _vtab("dsprites_orientation", "dsprites", "2.*.*", 16, "structured", _N80_200,
          PercentSlice("train", 90), label_key=None,
          label_fn=binned_label("label_orientation", 40, 16), image_fn=dsprites_image),
    _vtab("smallnorb_azimuth", "smallnorb", "2.*.*", 18, "structured", "test[:200]",
          "test[50%:]", label_key="label_azimuth"),
    _vtab("smallnorb_elevation", "smallnorb", "2.*.*", 9, "structured", "test[:200]",
          "test[50%:]", label_key="label_elevation"),
    # Natural datasets of the Domain Adaptive Transfer comparison (no FGVC-Aircraft in tfds).
    _dat("dat_cifar10", "cifar10", "3.*.*", 10),
    _dat("dat_food101", "food101", "2.*.*", 101, test="validation"),
    _dat("dat_oxford_iiit_pet", "oxford_iiit_pet", "4.*.*", 37),
    _dat("dat_cars196", "cars196", "2.*.*", 196),
    _dat("dat_caltech_birds2011", "caltech_birds2011", "0.*.*", 200),
    # Offline tasks built by tfexperts.data.builders: "demo" (64x64) and "_tiny" (32x32) configs.
    _offline("shapes_fine", "tfexperts_shapes_fine/demo", 5),
    _offline("shapes_mixed", "tfexperts_shapes_mixed/demo", 10),
    _offline("shapes_count", "tfexperts_shapes_count/demo", 6),
    _offline("shapes_fine_tiny", "tfexperts_shapes_fine/tiny", 5),
    _offline("shapes_mixed_tiny", "tfexperts_shapes_mixed/tiny", 10),
    _offline("shapes_count_tiny", "tfexperts_shapes_count/tiny", 6),
    _offline("digits", "tfexperts_digits", 10),
]

TASKS = {task.name: task for task in _TASK_LIST}
VTAB_TASKS = tuple(t.name for t in _TASK_LIST if t.suite == "vtab")


def list_tasks(suite=None, group=None):
  """Names of registered tasks, in registry order, optionally of one suite and/or group."""
  if suite is not None and suite not in SUITES:
    raise ValueError(f"Unknown suite {suite!r}. Known suites: {list(SUITES)}")
  if group is not None and group not in GROUPS:
    raise ValueError(f"Unknown group {group!r}. Known groups: {list(GROUPS)}")
  return [t.name for t in _TASK_LIST
          if (suite is None or t.suite == suite) and (group is None or t.group == group)]


def _prepared_builder(spec, tfds_name, version, data_dir):
  """The prepared builder of a `tfds:` task string (errors as `Task.builder`'s)."""
  dataset = tfds_name.split("/")[0]
  importlib.import_module("tfexperts.data.builders")  # the project's own builders count too
  known = tfds.list_builders(with_community_datasets=False)
  if dataset not in known:
    close = difflib.get_close_matches(dataset, known, n=5)
    raise UserError(f"Task {spec!r}: tensorflow-datasets {tfds.__version__} has no dataset "
                    f"{dataset!r}. Close names: {close} (all: tfds.list_builders()).")
  provisional = Task(spec, tfds_name, version, 1, task_specs.GROUP, task_specs.SUITE, {})
  return provisional.builder(data_dir)


def get_task(name, data_dir=None):
  """Returns the `Task` registered as `name`, or built from a `tfds:` / `folder:` task string.

  Takes the name or task string (see `task_specs`) and the tfds data dir a `tfds:` task reads
  (its features and split sizes are read now). Raises UserError (a ValueError) listing the known
  names for an unknown name, or naming what is wrong with a task string.
  """
  if name in TASKS:
    return TASKS[name]
  if task_specs.is_spec(name):
    return Task(**task_specs.task_fields(name, data_dir, _prepared_builder))
  if name not in TASKS:
    raise UserError(f"Unknown task {name!r}. Known tasks: {list(TASKS)}, or a task string "
                    f"{task_specs.FORMS}.{did_you_mean(name, TASKS)}")
  return TASKS[name]
