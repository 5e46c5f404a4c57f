"""A model's architecture as data, and the model rebuilt from it (the one rebuild of hub modules)."""
import json
import os

import keras
import pytest

from tfexperts import artifacts
from tfexperts.models import adapters
from tfexperts.models import architecture
from tfexperts.models import bit
from tfexperts.models import patches


def _shapes(model):
  return [tuple(v.shape) for v in model.variables]


def test_rebuild_of_a_description_has_the_models_variables_in_order():
  baseline = bit.create_model("tiny", num_classes=6)
  # An extracted adapter expert of a headless backbone (what an adapter module holds).
  expert = adapters.create_adapter_experts(bit.create_model("tiny"), 2).extract_expert(1)
  for model, classes, adapted in ((baseline, 6, False), (expert, 0, True)):
    described = architecture.describe(model, "tiny")
    assert described == architecture.Architecture(
        "BiT ResNet-v2", "tiny", (1, 1, 1, 1), 0.25, 4, adapted, 0)
    assert architecture.Architecture.from_json(described.to_json()) == described
    rebuilt = architecture.rebuild(described, classes)
    assert _shapes(rebuilt) == _shapes(model)
    assert all(v.trainable for v in rebuilt.variables)
  # Every layer name and checkpoint path is the model code's own.
  assert [v.path for v in architecture.rebuild(architecture.describe(baseline), 6).variables] == (
      [v.path for v in baseline.variables])
  with pytest.raises(ValueError, match="patch bank.*extract one expert"):
    architecture.rebuild(architecture.describe(patches.create_patch_bank(baseline, 2)))


def test_build_creates_the_variables_of_a_symbolic_pass_in_its_order(monkeypatch):
  # tests/data/variable_creation_order.json: the variables' creation order, paths, shapes and
  # trainable flags when models were built by a symbolic pass over their call (before
  # 2026-12-03). Seeded initial values follow the creation order, so building from channel
  # counts keeps them, and the paths keep checkpoints loading.
  with open(os.path.join(os.path.dirname(__file__), "..", "data",
                         "variable_creation_order.json")) as f:
    expected = json.load(f)
  created = []
  add_weight = keras.layers.Layer.add_weight

  def recording_add_weight(layer, *args, **kwargs):
    variable = add_weight(layer, *args, **kwargs)
    created.append([variable.path, list(variable.shape), bool(variable.trainable)])
    return variable

  builds = {"tiny_head5": lambda: bit.create_model("tiny", num_classes=5),
            "tiny_patch2": lambda: bit.create_model("tiny", num_classes=5, patch_experts=2),
            "adapter_experts2": lambda: adapters.create_adapter_experts(base, 2)}
  base = bit.create_model("tiny", num_classes=5)
  monkeypatch.setattr(keras.layers.Layer, "add_weight", recording_add_weight)
  for name, build in builds.items():
    created.clear()
    build()
    assert created == expected[name], name


def test_a_malformed_architecture_is_an_error_naming_it():
  data = architecture.describe(bit.create_model("tiny")).to_json()
  with pytest.raises(artifacts.RecordError, match="unknown key 'group'"):
    architecture.Architecture.from_json({**data, "group": 4})
  with pytest.raises(artifacts.RecordError, match="family must be 'BiT ResNet-v2'"):
    architecture.Architecture.from_json({**data, "family": "ViT"})
