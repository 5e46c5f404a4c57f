"""MirroredStrategy and MultiWorkerMirroredStrategy against one device, in separate processes."""
import json
import os
import socket

import numpy as np
import pytest

from tests import processes
from tests.train import strategy_worker

WORKER = os.path.join(processes.REPO, "tests", "train", "strategy_worker.py")


def _worker_command(*args):
  return processes.python_command([WORKER, *args])


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
  out = tmp_path / "losses.json"
  processes.run(_worker_command("compare_mirrored", str(out)), timeout=600, TF_CONFIG=None)
  results = json.loads(out.read_text())
  assert results["mirrored"]["replicas"] == 2 and results["one_device"]["replicas"] == 1
  one, two = results["one_device"]["loss"], results["mirrored"]["loss"]
  assert len(one) == len(two) == 8
  np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)
  assert one[-1] < one[0]


@pytest.mark.slow
def test_multi_worker_two_processes_agree_on_weights_export_and_embed(tmp_path):
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for index in range(2):
    (tmp_path / f"w{index}").mkdir()
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    procs.append(processes.start(_worker_command(
        "multi_worker", str(tmp_path / f"w{index}" / "weights.npz"), str(tmp_path / "export")),
        TF_CONFIG=tf_config))
  logs = ["".join(proc.communicate(timeout=600)) for proc in procs]
  assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
  first = np.load(tmp_path / "w0" / "weights.npz")
  second = np.load(tmp_path / "w1" / "weights.npz")
  assert int(first["replicas"]) == 2
  assert len(first["losses"]) == 4
  for key in first.files:
    np.testing.assert_array_equal(first[key], second[key])
  assert os.listdir(tmp_path / "w0" / "ckpt")  # the chief (worker 0) kept the checkpoint
  assert not (tmp_path / "w1" / "ckpt").exists()
  # The chief exported the trained model; both workers embedded with it under the strategy:
  # every image once, in dataset order, the same on both and as without a strategy.
  assert os.listdir(tmp_path / "export" / "synthetic") == ["1"]
  np.testing.assert_allclose(first["direct"], first["trained"], rtol=1e-4, atol=1e-4)
  assert first["features"].shape == (37, first["direct"].shape[1])
  np.testing.assert_allclose(first["features"], first["direct"], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(first["labels"], strategy_worker.synthetic_arrays(37, seed=1)[1])
