"""Finished-model directories: round trip of every model kind, atomicity, clear errors."""
import os

import numpy as np
import pytest

from tfexperts.models import adapters
from tfexperts.models import bit
from tfexperts.models import patches
from tfexperts.train import artifacts

IMAGES = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype("float32")
IDS = np.array([2, 0, 1], "int32")


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
  artifacts.save_final(model, directory, {"kind": kind, "name": "x", "steps": 7})
  assert artifacts.is_final(directory)
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
  loaded, metadata = artifacts.load_final(directory)
  assert metadata == {"kind": kind, "name": "x", "steps": 7}
  assert type(loaded) is type(model)
  for key in ("pre_logits", "logits"):
    np.testing.assert_array_equal(loaded(*args)[key].numpy(), model(*args)[key].numpy())
  if kind == "adapter_bank":
    assert len(loaded.trainable_weights) == len(model.trainable_weights)


def test_unknown_kind_and_incomplete_directory_are_rejected(tmp_path):
  model = bit.create_model("tiny")
  with pytest.raises(ValueError, match="'teacher'"):
    artifacts.save_final(model, str(tmp_path / "m"), {"kind": "teacher"})
  assert not os.path.exists(tmp_path / "m")
  (tmp_path / "half").mkdir()
  (tmp_path / "half" / artifacts.MODEL_CONFIG).write_text("{}")
  with pytest.raises(FileNotFoundError, match="half"):
    artifacts.load_final(str(tmp_path / "half"))
