"""Finished-model directories: round trip of every model kind, atomicity, clear errors."""
import os

import numpy as np
import pytest

from tfexperts import artifacts
from tfexperts.models import adapters
from tfexperts.models import bit
from tfexperts.models import finished
from tfexperts.models import patches

IMAGES = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype("float32")
IDS = np.array([2, 0, 1], "int32")


def _record(kind):
  experts = [{"expert_id": i, "name": f"e{i}", "node": f"e{i}", "num_images": 5,
              "label_prior": [0.5, 0.5], "slices": "semantic"} for i in range(3)]
  return artifacts.ModelRecord.from_json({
      "kind": kind, "name": "x", "upstream_dataset": "d", "upstream_split": "train",
      "num_upstream_images": 15, "num_upstream_classes": 2, "upstream_class_names": ["a", "b"],
      "preset": "tiny", "model_overrides": {}, "resolution": 32, "input_range": [0.0, 1.0],
      "steps": 7, "multi_label": False,
      **({"experts": experts} if kind.endswith("_bank") else {})})


def _trained_baseline():
  model = bit.create_model("tiny", num_classes=6)
  rng = np.random.default_rng(1)
  for v in model.weights:
    v.assign(rng.normal(size=v.shape).astype("float32"))
  return model


@pytest.mark.parametrize("kind", ["baseline", "adapter_bank", "patch_bank"])
def test_save_then_load_gives_identical_outputs_and_metadata(tmp_path, kind):
  model = _trained_baseline()
  args = (IMAGES,)
  if kind == "adapter_bank":
    model = adapters.create_adapter_experts(model, 3)
    args = (IMAGES, IDS)
  elif kind == "patch_bank":
    model = patches.create_patch_bank(model, 3)
    args = (IMAGES, IDS)
  for v in model.trainable_weights:
    v.assign(v.numpy() + 0.1)
  directory = str(tmp_path / kind)
  record = _record(kind)
  finished.save_final(model, directory, record)
  assert finished.is_final(directory)
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
  loaded, metadata = finished.load_final(directory)
  assert metadata == record
  assert type(loaded) is type(model)
  for key in ("pre_logits", "logits"):
    np.testing.assert_array_equal(loaded(*args)[key].numpy(), model(*args)[key].numpy())
  if kind == "adapter_bank":
    assert len(loaded.trainable_weights) == len(model.trainable_weights)


def test_unknown_kind_and_incomplete_directory_are_rejected(tmp_path):
  model = bit.create_model("tiny")
  with pytest.raises(ValueError, match="'teacher'"):
    finished.save_final(model, str(tmp_path / "m"), _record("teacher"))
  with pytest.raises(TypeError, match="ModelRecord"):
    finished.save_final(model, str(tmp_path / "m"), {"kind": "baseline"})
  assert not os.path.exists(tmp_path / "m")
  (tmp_path / "half").mkdir()
  (tmp_path / "half" / artifacts.MODEL_CONFIG).write_text("{}")
  with pytest.raises(FileNotFoundError, match="half"):
    finished.load_final(str(tmp_path / "half"))
