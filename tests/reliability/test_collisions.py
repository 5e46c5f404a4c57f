"""Two runs on one output directory, through the binaries: the second is refused (exit 2) naming
the first before TensorFlow loads; after kill -9 of the first, a new run takes over and resumes."""
import json
import os
import signal
import socket
import time

import pytest

from tests import processes
from tests.reliability import holders
from tfexperts import lease

TINY = ["--dataset=tfexperts_shapes/tiny", "--model=tiny", "--resolution=32", "--batch_size=16",
        "--warmup_steps=5", "--num_experts=2"]


def _run(binary, args, importtime=False, timeout=300):
  return processes.run_binary(binary, args, check_exit=False, timeout=timeout,
                              python_options=("-X", "importtime") if importtime else (),
                              TFEXPERTS_VERBOSE=None)


def _fake_collection(root):
  """A directory the binaries' flag checks accept as a collection (an index with no modules)."""
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "index.json"), "w") as f:
    json.dump({"modules": []}, f)
  return root


# (binary, args given the temp root, the directory it must lease)
CASES = [
    ("train_experts", lambda r: [f"--workdir={r}/run", "--stage=baseline,full", *TINY],
     lambda r: f"{r}/run/full"),
    ("export_experts", lambda r: [f"--workdir={r}", f"--export_dir={r}/export",
                                  "--collection=c"], lambda r: f"{r}/export/c"),
    ("vtab_eval", lambda r: ["--task=digits", f"--experts={_fake_collection(r + '/coll')}",
                             f"--results_dir={r}/results"], lambda r: f"{r}/results"),
    ("select_expert", lambda r: ["--task=digits", f"--experts={_fake_collection(r + '/coll')}",
                                 f"--output_dir={r}/selection"], lambda r: f"{r}/selection/digits"),
]


@pytest.mark.parametrize("binary,args,leased", CASES, ids=[c[0] for c in CASES])
def test_a_second_run_is_refused_naming_the_first_before_tensorflow_loads(tmp_path, binary, args,
                                                                          leased):
  root = str(tmp_path)
  with holders.Holder([leased(root)], command=f"{binary} --first") as holder:
    proc = _run(binary, args(root), importtime=True)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith(f"{binary}: error:")]
  assert errors == [f"{binary}: error: {leased(root)} is in use by {socket.gethostname()} pid "
                    f"{holder.pid} since {errors[0].split(' since ')[1].split(' (')[0]} "
                    f"({binary} --first). Wait for it to finish, or pass --force_takeover if you "
                    "know it is gone (two writers would interleave their checkpoints and "
                    "results)."], proc.stderr[-3000:]
  imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
              if line.startswith("import time:")]
  assert "tensorflow" not in imported  # refused before the slow part of start-up
  if binary == "train_experts":  # all or none: the free stage's lease was given back
    assert not os.path.exists(os.path.join(root, "run", "baseline", lease.LEASE_FILE))


def test_force_takeover_runs_despite_a_live_holder(tmp_path):
  root = str(tmp_path)
  os.makedirs(f"{root}/empty")
  with holders.Holder([f"{root}/export/c"], command="stuck export") as holder:
    proc = _run("export_experts", [f"--workdir={root}/empty", f"--export_dir={root}/export",
                                   "--collection=c", "--force_takeover"])
  assert f"Taking over the lease on {root}/export/c from" in proc.stdout
  assert f"pid {holder.pid}" in proc.stdout and "--force_takeover" in proc.stdout
  assert "in use" not in proc.stderr and "empty" in proc.stderr  # it went on to export (nothing)


def _wait_for(path, proc, timeout=600):
  deadline = time.monotonic() + timeout
  while not os.path.exists(path):
    assert proc.poll() is None, proc.stdout.read() + proc.stderr.read()
    assert time.monotonic() < deadline, f"{path} did not appear"
    time.sleep(0.2)


@pytest.mark.slow
def test_two_trainings_race_then_kill_9_and_the_next_run_takes_over_and_resumes(
    tmp_path, offline_data_dir):
  workdir = str(tmp_path / "run")
  args = [f"--workdir={workdir}", f"--data_dir={offline_data_dir}", "--stage=baseline",
          "--baseline_steps=40", "--checkpoint_every=10", "--log_every=10", *TINY]
  first = processes.start(processes.binary_command("train_experts", args), TFEXPERTS_VERBOSE=None)
  try:
    _wait_for(os.path.join(workdir, "baseline", lease.LEASE_FILE), first)
    second = _run("train_experts", args)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"is in use by {socket.gethostname()} pid {first.pid} since" in second.stderr
    _wait_for(os.path.join(workdir, "baseline", "ckpt", "checkpoint"), first)
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  third = _run("train_experts", args, timeout=900)
  assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
  takeover = [line for line in third.stdout.splitlines() if line.startswith("Taking over")]
  assert len(takeover) == 1 and f"pid {first.pid} is no longer running" in takeover[0]
  assert "[baseline] resuming from step" in third.stdout
  assert os.path.isdir(os.path.join(workdir, "baseline", "final"))
  assert not os.path.exists(os.path.join(workdir, "baseline", lease.LEASE_FILE))
