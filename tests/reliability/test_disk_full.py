"""A full disk, a quota or a file-size limit during a write: `errors.DiskFullError` naming the path
and size, nothing incomplete left under the final name, and the rerun completes.

Fault injection covers each write site in process; the real failures run a child process with
RLIMIT_FSIZE (the kernel then fails writes past the limit with EFBIG; SIGXFSZ is ignored so the
write returns the error instead of killing the process) once per kind of write: checkpoint, export,
feature cache, record.
"""
import errno
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfexperts import artifacts
from tfexperts import errors
from tfexperts import fileio
from tfexperts.hub import collection
from tfexperts.hub import export
from tfexperts.models import bit
from tfexperts.models import finished
from tfexperts.select import feature_cache
from tfexperts.train import loop
from tfexperts.transfer import report
from tests import processes
from tests.hub import collection_fixtures
from tests.train import strategy_worker
from tests.transfer import result_records

KEY = feature_cache.CacheKey(handle="export/c/baseline/1", module="sha256:abc", task="digits",
                             split="train800", resolution=32, preprocessing="resize")


def _record(task="digits", padding=0):
  return result_records.make(task, chosen=["baseline"], task_spec=task + " " * padding)


def _listing(directory):
  return sorted(os.path.relpath(os.path.join(d, f), directory)
                for d, _, files in os.walk(directory) for f in files)


class _FullGFile:
  """tf.io.gfile.GFile whose writes stop after `room` bytes with ENOSPC (reads unchanged)."""
  real = tf.io.gfile.GFile
  room = 100

  def __init__(self, path, mode="r"):
    self._f = self.real(path, mode)
    self.written = 0

  def write(self, data):
    if self.written + len(data) > self.room:
      self._f.write(data[:self.room - self.written])
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    self.written += len(data)
    return self._f.write(data)

  def __getattr__(self, name):
    return getattr(self._f, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._f.close()


@pytest.fixture
def full_disk(monkeypatch):
  monkeypatch.setattr(tf.io.gfile, "GFile", _FullGFile)


def test_feature_cache_write_on_a_full_disk(tmp_path, full_disk):
  cache = feature_cache.FeatureCache(str(tmp_path / "features"))
  features = np.ones((50, 8), np.float32)
  with pytest.raises(errors.DiskFullError) as failed:
    cache.save(KEY, features, np.zeros(50, np.int64))
  assert str(failed.value).startswith(f"writing {cache.path(KEY)} (")
  assert "bytes) failed: No space left on device" in str(failed.value)
  assert _listing(str(tmp_path / "features")) == []  # no partial .npz, no temp file
  assert cache.load(KEY) is None


def test_record_and_results_csv_on_a_full_disk_keep_the_previous_ones(tmp_path, monkeypatch):
  results = str(tmp_path / "results")
  report.write_record(results, _record("dtd"))
  before = {name: open(os.path.join(results, name)).read() for name in _listing(results)}
  monkeypatch.setattr(tf.io.gfile, "GFile", _FullGFile)
  big = _record(padding=1000)
  with pytest.raises(errors.DiskFullError, match=r"writing .*digits__knn\.json \([\d,]+ bytes\)"):
    report.write_record(results, big)
  after = {name: open(os.path.join(results, name)).read() for name in _listing(results)}
  assert after == before


def test_model_record_write_on_a_full_disk(tmp_path, full_disk):
  record = artifacts.ModelRecord.from_json({**collection_fixtures.COMMON, "kind": "baseline",
                                            "name": "baseline"})
  with pytest.raises(errors.DiskFullError, match="metadata.json"):
    artifacts.write_record(str(tmp_path), record)
  assert _listing(str(tmp_path)) == []


def test_finished_model_on_a_full_disk_keeps_the_previous_one(tmp_path, monkeypatch):
  model = bit.create_model("tiny", num_classes=3)
  model.build((None, 32, 32, 3))
  record = artifacts.ModelRecord.from_json({**collection_fixtures.COMMON, "kind": "baseline",
                                            "name": "baseline", "num_upstream_classes": 3,
                                            "upstream_class_names": ["a", "b", "c"]})
  final = str(tmp_path / "baseline" / "final")
  finished.save_final(model, final, record)
  before = _listing(final)

  def quota_exceeded(model, path):
    with open(path, "wb") as f:
      f.write(b"partial")
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), path)

  monkeypatch.setattr(finished, "_save_weights", quota_exceeded)
  with pytest.raises(errors.DiskFullError) as failed:
    finished.save_final(model, final, record)
  size = fileio.variables_nbytes(model.weights)
  assert str(failed.value).startswith(f"writing {final} (about {size:,} bytes) failed: Disk quota")
  assert os.listdir(str(tmp_path / "baseline")) == ["final"] and _listing(final) == before


def test_export_on_a_full_disk_leaves_no_module(tmp_path):
  target = str(tmp_path / "c" / "baseline" / "1")

  def write_fn(directory):
    os.makedirs(os.path.join(directory, "variables"))
    with open(os.path.join(directory, "variables", "variables.data-00000-of-00001"), "wb") as f:
      f.write(b"\0" * 1234)
    raise tf.errors.OutOfRangeError(None, None, "variables.data-00000-of-00001; File too large")

  with pytest.raises(errors.DiskFullError, match=r"writing .*/1 \(at least 1,234 bytes\) failed: "
                     "File too large"):
    export.write_atomically(target, write_fn)
  assert os.listdir(str(tmp_path / "c" / "baseline")) == []


def test_checkpoint_on_a_full_disk_then_the_rerun_completes(tmp_path, monkeypatch):
  task = strategy_worker.make_task()
  config = loop.LoopConfig(total_steps=2, global_batch_size=8, base_lr=0.3, checkpoint_every=2,
                           log_every=1)
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  ckpt = str(tmp_path / "ckpt")

  def no_space(self, checkpoint_number=None):
    raise tf.errors.ResourceExhaustedError(None, None, f"{self.directory}/ckpt-2_temp; No space "
                                           "left on device")

  monkeypatch.setattr(tf.train.CheckpointManager, "save", no_space)
  with pytest.raises(errors.DiskFullError, match=rf"writing {ckpt} \(about [\d,]+ bytes\) failed"):
    loop.train(strategy, task, config, ckpt)
  assert tf.train.latest_checkpoint(ckpt) is None
  monkeypatch.undo()
  _, history = loop.train(strategy, task, config, ckpt)
  assert history["final_step"] == 2 and tf.train.latest_checkpoint(ckpt).endswith("ckpt-2")


def test_disk_full_reason_recognises_errno_and_messages_only():
  assert fileio.disk_full_reason(OSError(errno.EFBIG, "x")) == os.strerror(errno.EFBIG)
  assert fileio.disk_full_reason(OSError("Unable to write (errno = 28, error message = "
                                         "'No space left on device')")) is not None  # h5py
  assert fileio.disk_full_reason(OSError(errno.EACCES, "Permission denied")) is None
  assert fileio.disk_full_reason(ValueError("No space left on device")) is None
  with pytest.raises(PermissionError):
    with fileio.disk_writes("x", 1):
      raise PermissionError(errno.EACCES, "Permission denied")


# --- real failures: a child process whose files may not grow past RLIMIT_FSIZE ---------------

def _run(command, limit=None, timeout=900):
  return processes.run(command, check_exit=False, timeout=timeout,
                       file_size_limit=limit, TFEXPERTS_VERBOSE=None)


def _binary(name, *args):
  return processes.binary_command(name, list(args))


def _cache_and_record_writes(root):
  """kind -> a function writing a feature cache entry or a record (each > 40 KB) under `root`."""
  return {"features": lambda: feature_cache.FeatureCache(root + "/features").save(
              KEY, np.ones((200, 64), np.float32), np.zeros(200, np.int64)),
          "record": lambda: report.write_record(root + "/results", _record(padding=20000))}


CHILD = """
import sys
from tfexperts import errors
from tests.reliability import test_disk_full as t
for kind, write in t._cache_and_record_writes(sys.argv[1]).items():
  try:
    write()
    print(kind, "written")
  except errors.DiskFullError as e:
    print(kind, e)
"""


def test_real_efbig_on_a_feature_cache_and_a_record_write_then_the_rerun(tmp_path):
  root = str(tmp_path)
  failed = _run(processes.python_command(["-c", CHILD, root]), limit=16 * 1024)  # files > 40 KB
  lines = failed.stdout.splitlines()
  assert len(lines) == 2, failed.stdout + failed.stderr[-3000:]
  assert lines[0].startswith(f"features writing {root}/features/") and lines[1].startswith(
      f"record writing {root}/results/digits__knn.json (")
  assert all("bytes) failed: File too large." in line for line in lines)
  assert _listing(root) == ["results/results.csv.lock"] or _listing(root) == []
  for write in _cache_and_record_writes(root).values():  # the rerun, without the limit
    write()
  features, labels = feature_cache.FeatureCache(root + "/features").load(KEY)
  assert features.shape == (200, 64) and labels.shape == (200,)
  assert "results/digits__knn.json" in _listing(root)


@pytest.mark.slow
def test_real_efbig_on_a_training_checkpoint_then_the_rerun_completes(tmp_path, offline_data_dir):
  workdir = str(tmp_path / "run")
  args = [f"--workdir={workdir}", f"--data_dir={offline_data_dir}", "--stage=baseline",
          "--dataset=tfexperts_shapes/tiny", "--model=tiny", "--resolution=32", "--batch_size=16",
          "--baseline_steps=20", "--checkpoint_every=10", "--log_every=10", "--num_experts=2"]
  failed = _run(_binary("train_experts", *args), limit=1024 * 1024)  # checkpoints are ~4 MB
  assert failed.returncode == 2, failed.stderr[-3000:]
  assert (f"train_experts: error: writing {workdir}/baseline/ckpt (about "
          in failed.stderr), failed.stderr[-3000:]
  assert "bytes) failed: File too large." in failed.stderr
  assert tf.train.latest_checkpoint(f"{workdir}/baseline/ckpt") is None
  rerun = _run(_binary("train_experts", *args))
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert finished.is_final(f"{workdir}/baseline/final")


@pytest.mark.slow
def test_real_efbig_on_an_export_then_the_rerun_completes(tmp_path, workdir):
  run = str(tmp_path / "run")
  shutil.copytree(workdir.baseline, os.path.join(run, "baseline", "final"))
  args = [f"--workdir={run}", f"--export_dir={tmp_path}/export", "--collection=c"]
  failed = _run(_binary("export_experts", *args), limit=64 * 1024)
  assert failed.returncode == 2, failed.stderr[-3000:]
  module = f"{tmp_path}/export/c/baseline/1"
  assert f"export_experts: error: writing {module} (about " in failed.stderr, failed.stderr
  assert "File too large" in failed.stderr
  assert not os.path.exists(module)
  assert [p for p in _listing(f"{tmp_path}/export/c") if fileio.TEMP_MARKER in p] == []
  # The rerun in this process: what bin/export_experts runs once it has its lease.
  collection.export_workdir(run, f"{tmp_path}/export", "c")
  assert json.load(open(f"{module}/assets/metadata.json"))["name"] == "baseline"
