"""Any data, anyone's experts, end to end: folder: and tfds: tasks through bin/select_expert and
bin/vtab_eval --quick; a pool of the project's collection, a tf.Module SavedModel, a Keras-saved
SavedModel and the published BiT collection resolved from a prepared TF-Hub cache (no network)."""
import json
import os

import pytest

from tests.processes import run_binary
from tests.data import image_folders
from tests.hub import third_party_modules as tpm
from tfexperts.hub import published

TFDS_TASK = "tfds:tfexperts_shapes/tiny?label=label"  # 500 train, validation as test, 2 labels


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """Two image folders (flat; train/ + test/) and a feature cache shared by the runs below."""
  root = tmp_path_factory.mktemp("any_data")
  return {"flat": image_folders.flat_folder(str(root / "flat")),
          "split": image_folders.split_folder(str(root / "split")),
          "cache": str(root / "features"), "root": root}


def _ranking(out_dir):
  (task_dir,) = os.listdir(out_dir)
  with open(os.path.join(out_dir, task_dir, "ranking.json")) as f:
    return task_dir, json.load(f)


@pytest.mark.slow
def test_mixed_pool_with_published_collection_ranks_every_expert(data, exported, tmp_path):
  tf_module, keras_export = str(tmp_path / "colour_module"), str(tmp_path / "keras_model")
  tpm.write_tf_module(tf_module, dim=6, seed=1)
  tpm.write_keras_export(keras_export, dim=5)
  cache = str(tmp_path / "tfhub_cache")
  handles = [m["handle"] for m in published.read("tfhub:bit-experts-r50x1-in21k")["modules"]]
  variants = [str(tmp_path / f"published{i}") for i in range(3)]
  for i, path in enumerate(variants):
    tpm.write_tf_module(path, dim=8, seed=10 + i)
  tpm.prepare_hub_cache(cache, handles, variants)
  experts = [exported.collection_dir, tf_module + "?range=-1:1", keras_export,
             "tfhub:bit-experts-r50x1-in21k"]
  out = str(tmp_path / "out")
  proc = run_binary("select_expert", [f"--task=folder:{data['flat']}",
                                      "--experts=" + ",".join(experts), "--resolution=32",
                                      f"--output_dir={out}", f"--cache_dir={tmp_path}/features"],
                    TFHUB_CACHE_DIR=cache)
  task_dir, ranking = _ranking(out)
  assert task_dir.startswith("folder-flat-") and ranking["task"] == task_dir
  assert ranking["task_spec"] == f"folder:{data['flat']}"
  assert "only 30 training examples" in ranking["splits"]["note"]
  knn = ranking["scores"]["knn"]
  project = {"baseline", "adapter_animal", "adapter_thing_red", "patch_animal", "patch_thing_red"}
  bit = {"bit_m_r50x1", "animal", "abstraction", "woody_plant"}
  assert len(knn) == 5 + 2 + 49 and project | bit | {"colour_module", "keras_model"} <= set(knn)
  assert all(0.0 <= v <= 1.0 for v in knn.values())
  assert ranking["images_embedded"] == 56 * 19  # train800 of 30 images: the first 19 (80% of 24)
  assert "splits {'train800': 'train[:19] of all images" in proc.stdout
  assert not [f for f in os.listdir(cache) if f.endswith((".lock", ".tmp"))]  # nothing fetched


@pytest.mark.slow
def test_folder_and_tfds_tasks_through_select_expert_and_vtab_eval(data, exported,
                                                                   offline_data_dir):
  experts = ",".join(os.path.join(exported.collection_dir, m, "1")
                     for m in ("baseline", "adapter_animal"))
  tasks = [f"folder:{data['flat']}", f"folder:{data['split']}", TFDS_TASK]
  common = [f"--experts={experts}", f"--data_dir={offline_data_dir}", "--resolution=32",
            f"--cache_dir={data['cache']}"]
  selected = {}
  for task in tasks[1:]:  # the flat folder's selection is the test above
    out = str(data["root"] / f"select_{len(selected)}")
    run_binary("select_expert", [f"--task={task}", f"--output_dir={out}", *common])
    name, ranking = _ranking(out)
    assert set(ranking["scores"]["knn"]) == {"baseline", "adapter_animal"}
    selected[task] = (name, ranking)
  assert selected[TFDS_TASK][0] == "tfds-tfexperts_shapes_tiny-label_label"
  assert selected[TFDS_TASK][1]["splits"]["test"] == "validation"
  assert selected[TFDS_TASK][1]["images_embedded"] == 2 * 400
  results = str(data["root"] / "results")
  proc = run_binary("vtab_eval", [f"--task={','.join(tasks)}", "--selection=knn",
                                  "--report_proxies=knn", "--quick", "--steps=2",
                                  "--learning_rates=0.1", "--final_repeats=1", "--batch_size=8",
                                  f"--results_dir={results}", *common])
  records = {}
  for name in os.listdir(results):
    if name.endswith("__knn.json"):
      with open(os.path.join(results, name)) as f:
        record = json.load(f)
      records[record["task_spec"]] = record
  assert set(records) == set(tasks)
  for task, record in records.items():
    assert record["group"] == "custom" and record["chosen"] == [record["picks"]["knn"]]
    assert 0.0 <= record["test_accuracy"] <= 1.0
    result = record["per_expert"][record["chosen"][0]]
    assert len(result["sweep"]) == 1 and len(result["final"]) == 1
    assert set(record["splits"]) == {"train800", "val200", "train800val200", "test", "note"}
  assert records[f"folder:{data['split']}"]["splits"]["test"] == "test/"
  assert records[TFDS_TASK]["splits"]["train800"] == "train[:400]"
  # Selection reused the features select_expert cached for the same task strings.
  assert records[TFDS_TASK]["images_embedded"] == 0
  assert records[f"folder:{data['split']}"]["images_embedded"] == 0
  assert "| strategy |" in proc.stdout
