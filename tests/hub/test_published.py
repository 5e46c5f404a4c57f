"""Published collections from a prepared tensorflow_hub cache; third-party SavedModels; ?range=."""
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from tests import processes
from tests.hub import collection_fixtures
from tests.hub import third_party_modules as tpm
from tfexperts.errors import UserError
from tfexperts.hub import load
from tfexperts.hub import metadata
from tfexperts.hub import published
from tfexperts.hub import third_party
from tfexperts.select import selection

BIT = "tfhub:bit-experts-r50x1-in21k"


def test_shipped_collection_lists_confirmed_handles_with_sources():
  assert published.names() == ["bit-experts-r50x1-in21k"]
  data = published.read(BIT)
  assert (data["name"], data["version"], data["feature_dim"]) == (
      "bit-experts-r50x1-in21k", 1, 2048)
  assert any("tensorflow/tfhub.dev" in s for s in data["source"])
  handles = [m["handle"] for m in data["modules"]]
  assert handles[0] == "https://tfhub.dev/google/bit/m-r50x1/1"
  assert len(handles) == len(set(handles)) == 49
  assert "https://tfhub.dev/google/experts/bit/r50x1/in21k/animal/1" in handles
  assert all(h.startswith("https://tfhub.dev/google/experts/bit/r50x1/in21k/") and h.endswith("/1")
             for h in handles[1:])
  with pytest.raises(UserError, match=r"Unknown published collection 'tfhub:bit'.*Known"):
    published.read("tfhub:bit")


def test_published_collection_resolves_through_the_prepared_hub_cache(tmp_path, monkeypatch):
  cache = str(tmp_path / "tfhub_cache")
  modules = [str(tmp_path / f"module{i}") for i in range(2)]
  for i, path in enumerate(modules):
    tpm.write_tf_module(path, dim=4, seed=i)
  handles = [m["handle"] for m in published.read(BIT)["modules"]]
  tpm.prepare_hub_cache(cache, handles, modules)
  monkeypatch.setenv("TFHUB_CACHE_DIR", cache)
  candidates = selection.load_candidates([BIT])
  assert candidates.names()[:3] == ["bit_m_r50x1", "abstraction", "angiosperm"]
  assert candidates.baseline.name == "bit_m_r50x1" and not candidates.baseline.has_logits
  animal = next(e for e in candidates.experts if e.name == "animal")
  assert load.resolve(animal.handle) == tpm.hub_cache_dir(cache, animal.handle)
  assert animal.metadata == metadata.ModuleMetadata.absent("animal", "animal", "full", "animal",
                                                           resolution=224)
  x = collection_fixtures.images(3)
  want = tpm.ColourProjection(4, handles.index(animal.handle) % 2)(x)
  np.testing.assert_allclose(animal.embed(x).numpy(), want.numpy(), rtol=1e-6)
  assert sorted(os.listdir(cache)) == sorted(
      [os.path.basename(tpm.hub_cache_dir(cache, h)) for h in handles]
      + [os.path.basename(tpm.hub_cache_dir(cache, h)) + ".descriptor.txt" for h in handles])


def test_tf_module_with_range_option_and_keras_export(tmp_path):
  x = collection_fixtures.images(2)
  path = str(tmp_path / "tf_module")
  module = tpm.write_tf_module(path, dim=6, seed=3)
  plain = load.load_expert(path)
  np.testing.assert_allclose(plain.embed(x).numpy(), module(x).numpy(), rtol=1e-6)
  ranged = load.load_expert(path + "?range=-1,1")
  assert ranged.name == "tf_module"
  np.testing.assert_allclose(ranged.embed(x).numpy(), module(2 * x - 1).numpy(), rtol=1e-5)
  exported = str(tmp_path / "keras_export")
  model = tpm.write_keras_export(exported, dim=5)
  expert = load.load_expert(exported)
  assert not callable(expert.module.loaded) and hasattr(expert.module, "serve")
  np.testing.assert_allclose(expert.embed(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
  for bad, message in [("?range=1,-1", "LOW < HIGH"), ("?scale=2", r"unknown or repeated options "
                                                                     r"\['scale'\]")]:
    with pytest.raises(UserError, match=message):
      load.load_expert(path + bad)
  for text in ("-1,1", "-1:1"):
    assert third_party.split_options(f"https://x/y/1?range={text}") == ("https://x/y/1",
                                                                        {"range": (-1.0, 1.0)})


def test_published_collection_file_is_package_data(tmp_path):
  # Build the wheel from a copy of the sources (setuptools builds in-tree) and read what it holds.
  source = tmp_path / "src"
  source.mkdir()
  for name in ("setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(os.path.join(processes.REPO, name), source / name)
  shutil.copytree(os.path.join(processes.REPO, "tfexperts"), source / "tfexperts",
                  ignore=shutil.ignore_patterns("__pycache__"))
  processes.run(processes.python_command(
      ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w",
       str(tmp_path / "dist"), str(source)]), timeout=300, PYTHONPATH=None)
  (wheel,) = (tmp_path / "dist").glob("tfexperts-*.whl")
  with zipfile.ZipFile(wheel) as archive:
    for name in published.names():
      data = json.loads(archive.read(f"tfexperts/hub/collections/{name}.json"))
      assert data["format"] == published.FORMAT
    assert "tfexperts/data/builders/shapes_hierarchy.json" in archive.namelist()


def test_third_party_modules_fine_tune_through_transfer_model(tmp_path):
  from tfexperts.transfer import finetune  # pylint: disable=g-import-not-at-top
  x = collection_fixtures.images(2)
  path = str(tmp_path / "tf_module")
  module = tpm.write_tf_module(path, dim=6, seed=4)
  ranged = finetune.TransferModel(load.reference(path + "?range=-1:1"), 3)
  assert ranged(x).shape == (2, 3) and ranged.input_range == (-1.0, 1.0)
  np.testing.assert_allclose(ranged.expert(2 * x - 1).numpy(), module(2 * x - 1).numpy(),
                             rtol=1e-5)
  exported = str(tmp_path / "keras_export")
  model = tpm.write_keras_export(exported, dim=5)
  transfer = finetune.TransferModel(load.reference(exported), 4)
  assert transfer(x).shape == (2, 4)
  np.testing.assert_allclose(transfer.expert(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)
  assert len(transfer.trainable_weights) == 2 + 2  # the conv's kernel and bias, the new head's
