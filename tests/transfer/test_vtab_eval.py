"""bin/vtab_eval and bin/select_expert end to end on an offline task with an exported collection."""
import csv
import json
import os
import signal
import time

import pytest

from tests.processes import run_binary, start_binary
from tfexperts.train import loop

# No --resolution: every module is fed at its metadata's input.resolution (32 in this collection).
QUICK = ["--task=shapes_fine_tiny", "--quick", "--final_repeats=1", "--batch_size=16"]


def metadata_resolutions(collection_dir, names):
  """`{module: metadata input.resolution}` of the named modules of a collection's index."""
  index = json.load(open(os.path.join(collection_dir, "index.json")))
  return {m["name"]: m["metadata"]["input"]["resolution"] for m in index["modules"]
          if m["name"] in names}


@pytest.mark.slow
def test_vtab_eval_selects_fine_tunes_and_reports(tmp_path, exported, offline_data_dir,
                                                  shapes_select_run):
  results = str(tmp_path / "results")
  # The pool's features come from the shared cache: this test is about selection and reporting.
  common = [f"--experts={exported.collection_dir}", f"--data_dir={offline_data_dir}",
            f"--results_dir={results}", f"--cache_dir={shapes_select_run.cache_dir}",
            "--steps=8", "--topk=2", *QUICK]
  run_binary("vtab_eval", ["--selection=knn_topk", *common])
  topk = json.load(open(os.path.join(results, "shapes_fine_tiny__knn_topk.json")))
  block = topk["topk"]
  knn_order = sorted(topk["proxy_scores"]["knn"].items(), key=lambda kv: (-kv[1], kv[0]))
  assert [c["expert"] for c in block["candidates"]] == [e for e, _ in knn_order[:2]]
  assert (block["k"], block["steps"], block["learning_rate"]) == (2, 2, 0.1)  # 8 steps / 4
  for candidate in block["candidates"]:
    run = json.load(open(os.path.join(results, "runs", "shapes_fine_tiny", candidate["expert"],
                                      "short_lr0.1_steps2_seed0", "result.json")))
    assert run["eval_split"] == "val200" and run["steps"] == 2
    assert candidate["val_accuracy"] == run["accuracy"] and candidate["val_size"] == 200
  best = max(c["val_accuracy"] for c in block["candidates"])
  assert block["pick"] == next(c["expert"] for c in block["candidates"]
                               if c["val_accuracy"] == best)
  assert topk["chosen"] == [block["pick"]] and topk["picks"]["knn_topk"] == block["pick"]
  assert block["images"] == 2 * (2 * 16 + 200)
  assert block["cost"]["images"] == 5 * 800 + block["images"]
  low, high = topk["test_interval"]
  assert low <= topk["test_accuracy"] <= high and topk["test_size"] == 200

  proc = run_binary("vtab_eval", ["--selection=all_proxies", *common])
  record = json.load(open(os.path.join(results, "shapes_fine_tiny__all_proxies.json")))
  assert record["group"] == "offline" and record["num_experts"] == 5
  # select_expert (test below) and vtab_eval share the default: each module's metadata resolution.
  assert record["resolution"] == metadata_resolutions(exported.collection_dir,
                                                      record["resolution"])
  assert set(record["resolution"].values()) == {32}
  assert "resolution: each expert's metadata input.resolution (else 224): 32 px" in proc.stdout
  assert set(record["proxy_scores"]) == {"knn", "label_matching", "domain", "random"}
  assert record["topk"]["candidates"] == block["candidates"]
  assert record["strategy_accuracy"]["knn_topk"] == topk["test_accuracy"]
  assert record["strategy_interval"]["knn_topk"] == topk["test_interval"]
  pairs = {(c["strategy"], c["against"]): c for c in record["comparisons"]}
  assert {("knn", "baseline"), ("knn", "random"), ("knn_topk", "knn")} <= set(pairs)
  for c in pairs.values():
    assert c["n"] == 200 and c["verdict"] in ("better", "no significant difference", "worse")
  assert len(record["proxy_scores"]["knn"]) == 5
  assert record["picks"]["domain"] in ("adapter_animal", "patch_animal", "adapter_thing_red",
                                       "patch_thing_red")
  assert "baseline" in record["chosen"]
  assert set(record["chosen"]) == {"baseline"} | set(record["picks"].values())
  for name in record["chosen"]:
    result = record["per_expert"][name]
    assert len(result["sweep"]) == 2 and len(result["final"]) == 1
    assert 0.0 <= result["test_accuracy"] <= 1.0
  assert record["strategy_accuracy"]["baseline"] == record["per_expert"]["baseline"][
      "test_accuracy"]
  assert record["versions"]["tensorflow"].startswith("2.")
  rows = list(csv.DictReader(open(os.path.join(results, "results.csv"))))
  assert [(r["task"], r["selection"]) for r in rows] == [("shapes_fine_tiny", "knn_topk"),
                                                        ("shapes_fine_tiny", "all_proxies")]
  low, accuracy, high = (float(rows[1][k]) for k in ("test_low", "test_accuracy", "test_high"))
  assert low <= accuracy <= high
  summary = open(os.path.join(results, "summary.md")).read()
  assert summary.startswith("| strategy | shapes_fine_tiny | mean offline | mean |")
  assert "| knn |" in summary and "| baseline |" in summary and summary in proc.stdout
  assert " ±" in summary and "- shapes_fine_tiny: knn_topk" in summary


@pytest.mark.slow
def test_killed_fine_tune_resumes(tmp_path, exported, offline_data_dir, shapes_select_run):
  results = str(tmp_path / "results")
  # The reported proxies' features come from the shared cache: only fine-tuning runs here.
  args = [f"--experts={exported.collection_dir}", "--selection=baseline",
          f"--data_dir={offline_data_dir}", f"--results_dir={results}",
          f"--cache_dir={shapes_select_run.cache_dir}", "--steps=20",
          "--learning_rates=0.1", *QUICK]
  run_dir = os.path.join(results, "runs", "shapes_fine_tiny", "baseline",
                         "sweep_lr0.1_steps20_seed0", "ckpt")
  proc = start_binary("vtab_eval", args)
  deadline = time.time() + 600
  # A run checkpoints every quarter of its steps: killed once the first (step 5) is written.
  while loop.checkpointed_step(run_dir) < 5 and time.time() < deadline and proc.poll() is None:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  interrupted = loop.checkpointed_step(run_dir)
  assert 5 <= interrupted < 20
  resumed = run_binary("vtab_eval", args)
  assert f"resuming from step {interrupted}" in resumed.stdout
  record = json.load(open(os.path.join(results, "shapes_fine_tiny__baseline.json")))
  assert record["chosen"] == ["baseline"] and loop.checkpointed_step(run_dir) == 20


@pytest.mark.slow
def test_select_expert_ranks_every_proxy_and_reuses_the_cache(shapes_select_run, exported):
  first = shapes_select_run  # select_expert --proxy=all with a fresh cache (its first run)
  ranking = first.ranking
  assert set(ranking["scores"]) >= {"knn", "label_matching", "domain", "random", "logme",
                                     "hscore", "linear_probe", "leep"}
  assert ranking["images_embedded"] == 5 * 800 + 2 * 800  # 5 experts + baseline and EPN logits
  # The same default as vtab_eval (test above): each module's metadata resolution.
  assert ranking["resolution"] == metadata_resolutions(exported.collection_dir,
                                                       ranking["experts"])
  assert len(ranking["resolution"]) == 5 and set(ranking["resolution"].values()) == {32}
  assert "resolution: each expert's metadata input.resolution (else 224): 32 px" in first.stdout
  assert os.path.exists(os.path.join(os.path.dirname(first.ranking_path), "knn.png"))
  assert "knn on shapes_fine_tiny" in first.stdout
  run_binary("select_expert", first.args)
  again = json.load(open(first.ranking_path))
  assert again["images_embedded"] == 0 and again["scores"] == ranking["scores"]


def test_transfer_model_of_an_adapter_module_checkpoints_every_variable(tmp_path, exported):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tfexperts.hub import load as hub_load  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import finetune  # pylint: disable=g-import-not-at-top
  handle = os.path.join(exported.collection_dir, "adapter_animal", "1")
  expert = hub_load.reference(handle)
  model = finetune.TransferModel(expert, 3)
  images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
  model(images)
  variables = loop.model_variables(model)
  # Every variable of the module reaches the checkpoint, plus the head's kernel and bias.
  assert len(variables) == len(tf.saved_model.load(handle).variables) + 2
  for v in model.trainable_weights:
    v.assign(v.numpy() + 0.01)
  path = tf.train.Checkpoint(model_variables=variables).save(str(tmp_path / "c"))
  other = finetune.TransferModel(expert, 3, name="another_name")
  other(images)
  loop.restore_model(other, path)
  np.testing.assert_array_equal(other(images).numpy(), model(images).numpy())


@pytest.mark.slow
def test_vtab_eval_mirrored_on_two_logical_cpus_matches_one_device(tmp_path, exported,
                                                                   offline_data_dir):
  # Selection features, fine-tuning and evaluation all run under the strategy; only float
  # summation order differs between one device and two replicas. A pool of one module of each
  # kind (baseline, adapter, patch), each embedded under both strategies.
  pool = ",".join(os.path.join(exported.collection_dir, name, "1")
                  for name in ("baseline", "adapter_animal", "patch_thing_red"))
  args = [f"--experts={pool}", "--selection=knn",
          "--report_proxies=knn", f"--data_dir={offline_data_dir}", "--steps=10",
          "--learning_rates=3", *QUICK]
  records = {}
  for strategy, cpus in (("one_device", "1"), ("mirrored", "2")):
    results = str(tmp_path / strategy)
    run_binary("vtab_eval", [*args, f"--results_dir={results}", f"--strategy={strategy}"],
               TFEXPERTS_LOGICAL_CPUS=cpus)
    records[strategy] = json.load(open(os.path.join(results, "shapes_fine_tiny__knn.json")))
  one, two = records["one_device"], records["mirrored"]
  assert two["picks"] == one["picks"] and two["chosen"] == one["chosen"]
  for proxy, scores in one["proxy_scores"].items():
    assert set(two["proxy_scores"][proxy]) == set(scores)
    for name, value in scores.items():
      assert abs(two["proxy_scores"][proxy][name] - value) <= 1e-6, (proxy, name)
  assert len(one["proxy_scores"]["knn"]) == 3
  assert two["images_embedded"] == one["images_embedded"] == 3 * 800
  name = one["chosen"][0]
  for phase, key in (("sweep", "val_accuracy"), ("final", "test_accuracy")):
    for a, b in zip(one["per_expert"][name][phase], two["per_expert"][name][phase]):
      assert abs(a[key] - b[key]) <= 0.01, (phase, a, b)  # at most a near-tie flipped
