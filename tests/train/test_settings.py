"""A workdir's first run records its settings; later runs that change their meaning are refused."""
import json
import os

import pytest

from tests.train.test_train_experts import _run
from tfexperts.errors import UserError
from tfexperts.train import settings

RECORDED = {"dataset": "tfexperts_shapes/tiny", "model": "tiny", "num_experts": 2,
            "slices": "semantic", "baseline_steps": 100, "log_every": 10, "stage": ["baseline"]}


def test_meaningful_changes_are_refused_with_every_difference(tmp_path):
  workdir = str(tmp_path)
  assert settings.check_and_record(workdir, RECORDED) == []
  changed = {**RECORDED, "num_experts": 3, "slices": "random", "resolution": 64,
             "baseline_steps": 50, "log_every": 5}
  with pytest.raises(UserError) as e:
    settings.check_and_record(workdir, changed)
  message = str(e.value)
  for line in ("--num_experts: 2 on disk, 3 now", "--slices: 'semantic' on disk, 'random' now",
               "--resolution: None on disk, 64 now", "--baseline_steps: 100 on disk, 50 now"):
    assert line in message
  assert "log_every" not in message
  assert json.load(open(os.path.join(workdir, "config.json"))) == RECORDED  # record unchanged


def test_harmless_changes_and_more_steps_are_allowed_and_recorded(tmp_path):
  workdir = str(tmp_path)
  settings.check_and_record(workdir, RECORDED, ["--model=tiny"])
  later = {**RECORDED, "baseline_steps": 300, "log_every": 5, "stage": ["full", "adapter"],
           "tpu": "local"}
  diffs = settings.check_and_record(workdir, later, ["--model=tiny", "--baseline_steps=300"])
  assert [d[0] for d in diffs] == ["baseline_steps", "log_every", "stage", "tpu"]
  assert json.load(open(os.path.join(workdir, "config.json"))) == later
  assert "--baseline_steps=300" in open(os.path.join(workdir, "flags.txt")).read()
  assert settings.check_and_record(workdir, later, write=False) == []


def test_binary_refuses_to_resume_with_other_experts_or_slices(tmp_path):
  # The data dir is empty, so each run stops after the settings check, before any training.
  workdir, empty = str(tmp_path / "run"), str(tmp_path / "empty")
  common = [f"--workdir={workdir}", f"--data_dir={empty}", "--noprepare_offline",
            "--dataset=tfexperts_shapes/tiny", "--model=tiny"]
  first = _run([*common, "--num_experts=2"], timeout=300, check=False)
  assert "is not prepared" in first.stderr and os.path.exists(os.path.join(workdir, "config.json"))
  second = _run([*common, "--num_experts=3", "--slices=random", "--log_every=3"], timeout=300,
                check=False)
  assert second.returncode != 0
  assert "--num_experts: 2 on disk, 3 now" in second.stderr
  assert "--slices: 'semantic' on disk, 'random' now" in second.stderr
  assert "log_every" not in second.stderr.split("Differences:")[1].split("Run with")[0]
