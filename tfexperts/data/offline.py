"""Builds the offline datasets (tfds builders in `tfexperts.data.builders`) into a data dir.

`prepare_offline_datasets(data_dir, configs=("tiny",))` prepares what is missing, with tfds's own
`download_and_prepare` (nothing is downloaded), prints what it did and returns a report. Datasets
already prepared are left as they are.
"""
import tempfile
import time

import tensorflow_datasets as tfds

from tfexperts import startup_noise
from tfexperts.data import builders
from tfexperts.data.builders import taxonomy

# Config name -> tfds names (with config) built for it. Digits have a single config.
OFFLINE_DATASETS = {
    config: tuple(f"{name}/{config}" for name in builders.NAMES if name != "tfexperts_digits")
    + ("tfexperts_digits",)
    for config in ("tiny", "demo")
}


def upstream_hierarchy_path():
  """Path of the shipped JSON hierarchy of the upstream `tfexperts_shapes` datasets."""
  return taxonomy.hierarchy_path()


def _expand(configs):
  if isinstance(configs, str):
    configs = (configs,)
  names = []
  for item in configs:
    if item in OFFLINE_DATASETS:
      expanded = OFFLINE_DATASETS[item]
    elif item.split("/")[0] in builders.NAMES:
      expanded = (item,)
    else:
      raise ValueError(f"Unknown offline dataset or config {item!r}. Known configs: "
                       f"{sorted(OFFLINE_DATASETS)}; known datasets: {list(builders.NAMES)}")
    names += [n for n in expanded if n not in names]
  return names


def prepare_offline_datasets(data_dir, configs=("tiny",), print_fn=print):
  """Prepares the offline datasets of `configs` in `data_dir` unless they are already there.

  Args:
    data_dir: tfds data dir (local path or gs://).
    configs: config names of `OFFLINE_DATASETS` ("tiny", "demo") and/or dataset names such as
      "tfexperts_shapes/demo" (a str or a sequence).
    print_fn: where to report (None for silence).

  Returns:
    A list of dicts `{"name", "status": "built" | "present", "seconds", "splits": {split: n}}`.
  """
  report = []
  for name in _expand(configs):
    start = time.perf_counter()
    builder = tfds.builder(name, data_dir=data_dir)
    status = "present"
    if not builder.is_prepared():
      status = "built"
      startup_noise.quiet_tfds()
      with tempfile.TemporaryDirectory() as download_dir:  # required by tfds, stays empty
        builder.download_and_prepare(
            download_dir=download_dir,
            download_config=tfds.download.DownloadConfig(
                compute_stats=tfds.download.ComputeStatsMode.SKIP))
    splits = {s: info.num_examples for s, info in sorted(builder.info.splits.items())}
    seconds = time.perf_counter() - start
    report.append({"name": name, "status": status, "seconds": seconds, "splits": splits})
    if print_fn:
      print_fn(f"{name}: {status} in {seconds:.1f}s at {builder.data_dir} {splits}")
  return report


def open_upstream(dataset, hierarchy=None, data_dir=None, prepare=True, **upstream_kwargs):
  """Opens an upstream dataset as `upstream.Upstream`, the way bin/train_experts names it.

  Args:
    dataset: tfds name[/config][:version].
    hierarchy: label hierarchy file; None for an offline `tfexperts_*` dataset's shipped one.
    data_dir: tfds data dir.
    prepare: build an offline `tfexperts_*` dataset into `data_dir` when it is missing.
    **upstream_kwargs: `split`, `image_key`, `label_key`, `class_names` of `Upstream`.

  Returns:
    The `Upstream`. Raises UserError when a non-offline dataset has no hierarchy, and as
    `Upstream` does for unprepared data or unknown keys.
  """
  from tfexperts.data import upstream as upstream_lib  # pylint: disable=g-import-not-at-top
  from tfexperts.errors import UserError  # pylint: disable=g-import-not-at-top
  offline_name = dataset.split("/")[0].split(":")[0] in builders.NAMES
  if offline_name and prepare:
    prepare_offline_datasets(data_dir, configs=(dataset.split(":")[0],))
  if hierarchy is None:
    if not offline_name:
      raise UserError(f"A hierarchy file is required for upstream dataset {dataset!r} (only the "
                      f"offline datasets {list(builders.NAMES)} ship one).")
    hierarchy = upstream_hierarchy_path()
  return upstream_lib.Upstream(dataset, hierarchy, data_dir=data_dir, **upstream_kwargs)
