"""Exports are atomic: a crash or a failed check leaves nothing the loader accepts."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfexperts.errors import DiskFullError
from tfexperts.errors import UserError
from tfexperts.hub import collection
from tfexperts.hub import copies
from tfexperts.hub import export
from tfexperts.hub import index
from tfexperts.hub import load
from tfexperts.hub import metadata
from tfexperts.hub import verify


def _crashing_save(obj, export_dir, signatures=None, options=None):
  """Writes part of a SavedModel, as a process dying mid-write would, then fails."""
  del obj, signatures, options
  os.makedirs(os.path.join(export_dir, "variables"))
  with open(os.path.join(export_dir, "saved_model.pb"), "wb") as f:
    f.write(b"\x08\x01\x12")  # the first bytes of a SavedModel proto, then nothing
  raise OSError("No space left on device (simulated)")


def test_crash_mid_write_leaves_no_module_and_an_incomplete_index(tmp_path, monkeypatch, workdir):
  monkeypatch.setattr(tf.saved_model, "save", _crashing_save)
  export_dir = str(tmp_path / "export")
  with pytest.raises(DiskFullError, match="No space left on device"):
    collection.export_workdir(os.path.dirname(workdir.baseline), export_dir, collection="c")
  module_dir = os.path.join(export_dir, "c", "baseline")
  assert os.listdir(module_dir) == []  # neither "1" nor a temp directory
  with pytest.raises(FileNotFoundError, match="baseline/1"):
    load.load_expert(os.path.join(module_dir, "1"))
  with pytest.raises(UserError, match=r"incomplete.*'baseline'"):  # planned, none finished
    load.load_collection(os.path.join(export_dir, "c"))


def test_module_left_under_a_temp_name_is_refused(tmp_path, exported):
  # A process killed between writing and renaming leaves its temp directory behind.
  source = os.path.join(exported.collection_dir, "baseline", "1")
  orphan = str(tmp_path / ("1.tmp-" + "0123456789abcdef" * 2))
  shutil.copytree(source, orphan)
  with pytest.raises(ValueError, match="unfinished export"):
    load.load_expert(orphan)


def test_module_that_differs_from_the_keras_model_is_not_written(tmp_path, monkeypatch, models):
  model = models.baseline
  real_copy = copies.export_copy

  def corrupted_copy(model, keep_head=False):
    copy = real_copy(model, keep_head)
    kernel = copy.weights[0]  # the root convolution; noise, as scaling is standardized away
    noise = np.random.default_rng(0).normal(0, 0.5, kernel.shape).astype("float32")
    kernel.assign(kernel.numpy() + noise)
    return copy

  monkeypatch.setattr(copies, "export_copy", corrupted_copy)
  path = str(tmp_path / "m" / "1")
  with pytest.raises(verify.VerificationError, match="differs from the Keras model"):
    export.export_expert(model, path, metadata.build("full", "m", model, resolution=32))
  assert os.listdir(tmp_path / "m") == []


def _write_marker(text):
  def write(directory):
    os.makedirs(directory)
    with open(os.path.join(directory, "marker"), "w") as f:
      f.write(text)
  return write


def test_existing_module_is_replaced_only_with_overwrite(tmp_path):
  path = str(tmp_path / "m" / "1")
  export.write_atomically(path, _write_marker("old"))
  with pytest.raises(FileExistsError, match="overwrite"):
    export.write_atomically(path, _write_marker("new"))
  assert open(os.path.join(path, "marker")).read() == "old"
  export.write_atomically(path, _write_marker("new"), overwrite=True)
  assert open(os.path.join(path, "marker")).read() == "new"
  assert os.listdir(tmp_path / "m") == ["1"]


def test_failed_overwrite_keeps_the_old_module(tmp_path):
  path = str(tmp_path / "m" / "1")
  export.write_atomically(path, _write_marker("old"))

  def failing(directory):
    _write_marker("half")(directory)
    raise RuntimeError("check failed")

  with pytest.raises(RuntimeError, match="check failed"):
    export.write_atomically(path, failing, overwrite=True)
  assert open(os.path.join(path, "marker")).read() == "old"
  assert os.listdir(tmp_path / "m") == ["1"]


def test_bank_and_single_expert_exports_refuse_each_other(tmp_path, models):
  meta = metadata.build("adapter_bank", "b", models.adapter_bank, resolution=32)
  with pytest.raises(ValueError, match="export_bank"):
    export.export_expert(models.adapter_bank, str(tmp_path / "x"), meta)
  with pytest.raises(ValueError, match="export_bank"):
    export.export_expert(models.patch_bank, str(tmp_path / "x"), meta)
  with pytest.raises(ValueError, match="plain model"):
    export.export_bank(models.baseline, str(tmp_path / "y"), meta)
  assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_interrupted_export_resumes_and_incomplete_collection_is_refused(tmp_path, monkeypatch,
                                                                         workdir):
  run = tmp_path / "run"
  shutil.copytree(workdir.baseline, run / "baseline" / "final")
  shutil.copytree(workdir.epn, run / "epn" / "final")
  export_dir, collection_dir = str(tmp_path / "export"), str(tmp_path / "export" / "c")
  real_save = tf.saved_model.save
  saves = []

  def dies_on_second_module(obj, export_dir, signatures=None, options=None):
    saves.append(export_dir)
    if len(saves) == 2:
      _crashing_save(obj, export_dir)
    real_save(obj, export_dir, signatures=signatures, options=options)

  monkeypatch.setattr(tf.saved_model, "save", dies_on_second_module)
  with pytest.raises(DiskFullError, match="No space left on device"):
    collection.export_workdir(str(run), export_dir, collection="c")
  monkeypatch.undo()
  # kill -9 runs no cleanup: the dead process's temp directory stays beside the module.
  orphan = os.path.join(collection_dir, "epn", "1.tmp-" + "0123456789abcdef" * 2)
  os.makedirs(os.path.join(orphan, "variables"))
  data = index.read(collection_dir)
  assert [m.name for m in data.modules] == ["baseline"]
  assert data.versions == {1: index.ExportPlan(["baseline", "epn"], False)}
  with pytest.raises(UserError, match=r"incomplete.*\{1: \['epn'\]\}.*allow_incomplete"):
    load.load_collection(collection_dir)
  assert load.load_collection(collection_dir, allow_incomplete=True).baseline is not None
  with pytest.raises(UserError, match=r"no version 7\. Available versions: \[1\]"):
    load.load_collection(collection_dir, version=7)

  stamp = os.path.getmtime(os.path.join(collection_dir, "baseline", "1", "saved_model.pb"))
  entries = collection.export_workdir(str(run), export_dir, collection="c")  # no overwrite
  assert [e.name for e in entries] == ["baseline", "epn"]
  assert os.path.getmtime(os.path.join(collection_dir, "baseline", "1", "saved_model.pb")) == stamp
  assert sorted(os.listdir(os.path.join(collection_dir, "epn"))) == ["1"]
  assert index.read(collection_dir).versions[1].complete is True
  loaded = load.load_collection(collection_dir)
  assert loaded.epn is not None and loaded.baseline is not None

  # A module that is not what the finished model gives is never kept silently.
  baseline_vars = os.path.join(collection_dir, "baseline", "1", "variables")
  shutil.rmtree(baseline_vars)
  shutil.copytree(os.path.join(collection_dir, "epn", "1", "variables"), baseline_vars)
  with pytest.raises(FileExistsError, match="baseline/1.*variable.*differs.*--overwrite"):
    collection.export_workdir(str(run), export_dir, collection="c")
  meta_path = os.path.join(collection_dir, "baseline", "1", "assets", "metadata.json")
  meta = json.load(open(meta_path))
  json.dump({**meta, "name": "someone else"}, open(meta_path, "w"))
  with pytest.raises(FileExistsError, match="baseline/1.*other metadata.*--overwrite"):
    collection.export_workdir(str(run), export_dir, collection="c")
