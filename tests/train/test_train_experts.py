"""bin/train_experts end to end on the tiny offline dataset: stages, resume, flags, errors."""
import json
import os
import signal
import time

import numpy as np
import pytest

from tests import processes
from tfexperts.data import offline
from tfexperts.models import finished
from tfexperts.train import loop

TINY = ["--dataset=tfexperts_shapes/tiny", "--model=tiny", "--resolution=32", "--batch_size=16",
        "--log_every=5", "--warmup_steps=5", "--num_experts=2"]


@pytest.fixture
def data_dir(offline_data_dir):
  return offline_data_dir


def _run(args, timeout=900, check=True):
  return processes.run_binary("train_experts", args, check_exit=check, timeout=timeout)


def _weights(directory):
  model, metadata = finished.load_final(directory)
  return [v.numpy() for v in model.weights], metadata


@pytest.mark.slow
def test_baseline_then_full_and_adapter_experts_through_the_binary(tmp_path, data_dir):
  workdir = str(tmp_path / "run")
  _run([f"--workdir={workdir}", f"--data_dir={data_dir}", "--stage=baseline,full,adapter",
        "--baseline_steps=150", "--expert_steps=10", "--base_lr=0.3", "--decay=cosine",
        "--checkpoint_every=50", *TINY, "--batch_size=32", "--log_every=10"])
  losses = _logged_losses(workdir + "/baseline/tb")
  assert len(losses) == 15
  assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
  domains = json.load(open(os.path.join(workdir, "domains.json")))
  names = [d["name"] for d in domains["domains"]]
  assert len(names) == 2
  base, base_meta = _weights(workdir + "/baseline/final")
  assert base_meta.kind == "baseline" and base_meta.num_upstream_classes > 2
  for i, name in enumerate(names):
    full_dir = os.path.join(workdir, "full", f"{i:02d}_{name}", "final")
    full, meta = _weights(full_dir)
    assert meta.kind == "full" and meta.experts[0].node == name
    prior = np.array(meta.experts[0].label_prior)
    assert prior.sum() == pytest.approx(1.0) and (prior > 0).sum() < len(prior)
    assert any(not np.array_equal(a, b) for a, b in zip(full, base))
  bank, bank_meta = finished.load_final(workdir + "/adapter/final")
  assert bank_meta.kind == "adapter_bank" and bank.num_experts == 2
  assert [e.name for e in bank_meta.experts] == names
  for a, b in zip(bank.backbone.weights, base):  # the backbone stayed frozen
    np.testing.assert_array_equal(a.numpy(), b)
  for adapter in bank.adapters:  # every expert's adapter trained (A2 starts at zero), in turn
    a2 = next(v for v in adapter.weights if "a2" in v.path and v.path.endswith("kernel")).numpy()
    assert all(np.abs(a2[e]).max() > 0 for e in range(2))
  flags_file = open(os.path.join(workdir, "flags.txt")).read()
  assert "--expert_steps=10" in flags_file and "--stage=baseline,full,adapter" in flags_file
  rerun = _run([f"--flagfile={workdir}/flags.txt"])
  assert "not retrained" in rerun.stdout and "step 5/" not in rerun.stdout


def _logged_losses(summary_dir):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  losses = []
  for path in sorted(tf.io.gfile.glob(summary_dir + "/events*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "train/loss":
          losses.append((event.step, float(tf.make_ndarray(value.tensor))))
  return [loss for _, loss in sorted(losses)]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, data_dir):
  common = [f"--data_dir={data_dir}", "--stage=baseline", "--baseline_steps=40",
            "--checkpoint_every=10", "--deterministic", "--base_lr=1.0", *TINY]
  _run([f"--workdir={tmp_path}/straight", *common])
  killed = str(tmp_path / "killed")
  proc = processes.start_binary("train_experts", [f"--workdir={killed}", *common])
  deadline = time.time() + 600
  while loop.checkpointed_step(killed + "/baseline/ckpt") < 10 and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  interrupted_at = loop.checkpointed_step(killed + "/baseline/ckpt")
  assert 10 <= interrupted_at < 40 and not finished.is_final(killed + "/baseline/final")
  resumed = _run([f"--workdir={killed}", *common])
  assert f"resuming from step {interrupted_at}" in resumed.stdout
  straight, _ = _weights(f"{tmp_path}/straight/baseline/final")
  again, meta = _weights(killed + "/baseline/final")
  assert meta.steps == 40 and loop.checkpointed_step(killed + "/baseline/ckpt") == 40
  for a, b in zip(straight, again):
    np.testing.assert_array_equal(a, b)


def test_tpu_without_a_tpu_is_a_clear_error(tmp_path):
  proc = _run([f"--workdir={tmp_path}", "--tpu=no-such-tpu"], timeout=300, check=False)
  assert proc.returncode != 0
  assert "No TPU was found at --tpu='no-such-tpu'" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_unknown_stage_and_expert_are_rejected(tmp_path, data_dir):
  proc = _run([f"--workdir={tmp_path}", "--stage=baseline,distill"], timeout=300, check=False)
  assert proc.returncode != 0 and "distill" in proc.stderr
  proc = _run([f"--workdir={tmp_path}", f"--data_dir={data_dir}", "--experts=polygon,dragon",
               *TINY], timeout=300, check=False)
  assert proc.returncode != 0 and "dragon" in proc.stderr


def test_random_control_slices_match_semantic_sizes_but_not_contents(data_dir):
  import types  # pylint: disable=g-import-not-at-top
  from tfexperts.data import upstream as upstream_lib  # pylint: disable=g-import-not-at-top
  from tfexperts.train import stages  # pylint: disable=g-import-not-at-top
  up = upstream_lib.Upstream("tfexperts_shapes/tiny", offline.upstream_hierarchy_path(),
                             data_dir=data_dir)
  domains = up.choose_domains(top_k=2)
  sc = types.SimpleNamespace(seed=0, upstream=up, domains=domains)
  for domain in domains:
    semantic = list(up.expert_dataset(domains, domain.expert_id).as_numpy_iterator())
    control = list(stages.random_slice_dataset(sc, domain.expert_id).as_numpy_iterator())
    assert len(control) == len(semantic) == domain.count
    assert all(ex["expert_id"] == domain.expert_id for ex in control)
    inside = up.membership(domains)[:, domain.expert_id]
    assert not all(inside[ex["label"]] for ex in control)  # not the domain's images
