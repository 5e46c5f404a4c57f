"""A model's architecture as data, and the model rebuilt from it (the one rebuild of hub modules)."""
import numpy as np
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


def test_rebuild_from_channels_has_the_symbolic_builds_variables_and_features():
  described = architecture.describe(bit.create_model("tiny"))
  fast = architecture.rebuild(described, 6, variable_paths=False)
  built = architecture.rebuild(described, 6)
  assert [v.shape for v in fast.variables] == [v.shape for v in built.variables]
  rng = np.random.default_rng(0)
  for target, source in zip(fast.variables, built.variables):
    source.assign(rng.normal(0.0, 0.5, source.shape).astype("float32"))
    target.assign(source)
  x = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
  np.testing.assert_array_equal(fast(x)["pre_logits"], built(x)["pre_logits"])


def test_a_malformed_architecture_is_an_error_naming_it():
  data = architecture.describe(bit.create_model("tiny")).to_json()
  with pytest.raises(artifacts.RecordError, match="unknown key 'group'"):
    architecture.Architecture.from_json({**data, "group": 4})
  with pytest.raises(artifacts.RecordError, match="family must be 'BiT ResNet-v2'"):
    architecture.Architecture.from_json({**data, "family": "ViT"})
