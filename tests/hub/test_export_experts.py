"""bin/export_experts end to end: a tiny workdir becomes a collection the loader takes whole."""
import json
import os
import shutil

import numpy as np
import pytest

from tests.hub import collection_fixtures as conftest
from tfexperts.hub import collection
from tfexperts.hub import index
from tfexperts.hub import load

MODULES = {"baseline": "baseline", "epn": "epn", "adapter_animal": "adapter",
           "adapter_thing_red": "adapter", "adapter_bank": "adapter_bank",
           "patch_animal": "patch", "patch_thing_red": "patch", "patch_bank": "patch_bank"}


def test_binary_writes_every_module_and_the_index(exported):
  data = json.load(open(os.path.join(exported.collection_dir, index.INDEX_FILE)))
  assert data["collection"] == "shapes_run"
  assert {m["name"]: m["kind"] for m in data["modules"]} == MODULES
  for m in data["modules"]:
    assert m["handle"] == f"{m['name']}/1" and m["version"] == 1
    module_dir = os.path.join(exported.collection_dir, m["handle"])
    assert os.path.isfile(os.path.join(module_dir, "saved_model.pb"))
    assert json.load(open(os.path.join(module_dir, "assets", "metadata.json"))) == m["metadata"]
  assert not [p for p in os.listdir(exported.collection_dir) if ".tmp-" in p]
  assert "adapter_thing_red" in exported.stdout and "8 modules" in exported.stdout


def test_metadata_carries_domains_priors_and_input_contract(exported):
  entries = {m.name: m.metadata.to_json()
             for m in index.read(exported.collection_dir).modules}
  red = entries["adapter_thing_red"]
  assert (red["name"], red["node"], red["num_images"], red["expert_id"]) == (
      "thing/red", "thing/red", 7, 1)
  assert red["label_prior"] == conftest.EXPERTS[1]["label_prior"]
  assert entries["patch_animal"]["label_prior"] == conftest.EXPERTS[0]["label_prior"]
  assert red["upstream_dataset"] == "tfexperts_shapes/tiny" and red["num_upstream_images"] == 17
  assert red["input"] == {"resolution": 32, "range": [0.0, 1.0], "dtype": "float32",
                          "layout": "NHWC"}
  assert red["feature_dim"] == 512 and red["outputs"] == {"pre_logits": 512, "logits": None}
  assert red["architecture"]["preset"] == "tiny" and red["architecture"]["adapters"]
  base = entries["baseline"]
  assert base["outputs"] == {"pre_logits": 512, "logits": 6}
  assert base["logit_names"] == conftest.CLASSES and base["multi_label"] is False
  epn = entries["epn"]
  assert epn["logit_names"] == ["animal", "thing/red"] and epn["multi_label"] is True
  bank = entries["patch_bank"]
  assert [(e["expert_id"], e["name"]) for e in bank["experts"]] == [(0, "animal"),
                                                                     (1, "thing/red")]
  assert bank["experts"][1]["label_prior"] == conftest.EXPERTS[1]["label_prior"]


def test_loader_takes_the_collection_whole(exported):
  coll = load.load_collection(exported.collection_dir)
  assert coll.name == "shapes_run"
  assert sorted(e.name for e in coll.experts) == sorted(
      n for n, k in MODULES.items() if k in ("baseline", "adapter", "patch"))
  x = conftest.images(3)
  for expert in coll.experts:
    features = expert.embed(x)
    assert features.shape == (3, 512) and features.dtype.name == "float32"
  assert coll.baseline.logits(x).shape == (3, 6)
  assert coll.epn.logits(x).shape == (3, 2)
  assert not coll.get("adapter_animal").has_logits
  bank = coll.get("adapter_bank")
  assert bank.expert_names == ["animal", "thing/red"]
  np.testing.assert_allclose(bank.embed(x, [1, 1, 1]).numpy(),
                             coll.get("adapter_thing_red").embed(x).numpy(), atol=1e-5)


@pytest.mark.slow
def test_rerun_keeps_and_checks_existing_modules(exported, workdir, tmp_path):
  # On a copy (modification times kept): the session's export is shared by the other tests.
  export_dir = str(tmp_path / "export")
  shutil.copytree(exported.export_dir, export_dir)
  collection_dir = os.path.join(export_dir, "shapes_run")
  index_file = os.path.join(collection_dir, index.INDEX_FILE)
  before = open(index_file).read()
  assert json.loads(before)["versions"] == {"1": {"planned": sorted(MODULES), "complete": True}}
  stamp = os.path.getmtime(os.path.join(collection_dir, "baseline", "1", "saved_model.pb"))
  proc = conftest.run_binary([f"--flagfile={conftest.write_flagfile(workdir.path, export_dir)}"])
  assert "8 modules" in proc.stdout and proc.stderr.count("matches its finished model") == 8
  assert open(index_file).read() == before
  assert os.path.getmtime(os.path.join(collection_dir, "baseline", "1",
                                       "saved_model.pb")) == stamp


def test_bad_workdirs_fail_clearly(tmp_path, workdir):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    collection.export_workdir(str(tmp_path / "nowhere"), str(tmp_path / "export"))
  (tmp_path / "empty" / "baseline").mkdir(parents=True)
  with pytest.raises(ValueError, match="No finished models"):
    collection.export_workdir(str(tmp_path / "empty"), str(tmp_path / "export"))
  with pytest.raises(ValueError, match="collection name"):
    collection.export_workdir(workdir.path, str(tmp_path / "export"), collection="a/b")
  with pytest.raises(ValueError, match="version"):
    collection.export_workdir(workdir.path, str(tmp_path / "export"), version=0)
  assert not os.path.exists(tmp_path / "export")


def _fake_final(directory, metadata):
  # plan() reads only metadata.json; the model files just have to exist.
  os.makedirs(directory)
  for name in ("model.json", "model.weights.h5"):
    open(os.path.join(directory, name), "w").close()
  record = {**conftest.COMMON, **metadata}
  for expert in record.get("experts") or []:
    expert.update({"expert_id": 0, "node": expert["name"], "num_images": 1, "label_prior": [1.0],
                   "slices": "semantic", **expert})
  json.dump(record, open(os.path.join(directory, "metadata.json"), "w"))


def test_plan_names_full_experts_and_refuses_clashes(tmp_path):
  run = tmp_path / "run"
  for i, name in enumerate(["dog", "cat/tabby"]):
    _fake_final(str(run / "full" / f"{i:02d}" / "final"),
                {"kind": "full", "name": name, "experts": [{"name": name, "node": name}]})
  _fake_final(str(run / "baseline" / "final"), {"kind": "baseline", "name": "baseline"})
  os.makedirs(run / "baseline" / "final.tmp-0123")  # an interrupted write is not a model
  planned = collection.plan(str(run))
  assert [(p.module, p.kind) for p in planned] == [
      ("baseline", "baseline"), ("dog", "full"), ("cat_tabby", "full")]
  _fake_final(str(run / "full" / "02" / "final"),
              {"kind": "full", "name": "dog", "experts": [{"name": "dog"}]})
  with pytest.raises(ValueError, match="Two modules would be named 'dog'"):
    collection.plan(str(run))


def test_plan_refuses_unknown_kinds_and_banks_without_experts(tmp_path):
  _fake_final(str(tmp_path / "a" / "final"), {"kind": "teacher"})
  with pytest.raises(ValueError, match="'teacher'"):
    collection.plan(str(tmp_path / "a"))
  _fake_final(str(tmp_path / "b" / "final"), {"kind": "adapter_bank", "name": "bank"})
  with pytest.raises(ValueError, match="needs 'experts'"):
    collection.plan(str(tmp_path / "b"))
