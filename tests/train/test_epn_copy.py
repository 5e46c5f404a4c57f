"""The expert prediction network starts from every backbone weight of the baseline."""
import numpy as np
import pytest

from tfexperts.models import bit
from tfexperts.train import stages


def _models():
  baseline = bit.create_model("tiny", num_classes=6)
  rng = np.random.default_rng(0)
  for v in baseline.weights:
    v.assign(rng.normal(size=v.shape).astype("float32"))
  epn = bit.ResNetV2.from_config({**baseline.get_config(), "num_classes": 3})
  epn.build((None, None, None, 3))
  return baseline, epn


def test_every_backbone_variable_is_copied_and_the_head_is_not():
  baseline, epn = _models()
  stages._copy_backbone(baseline, epn)  # pylint: disable=protected-access
  sources = {v.path: v.numpy() for v in baseline.weights}
  copied = [v for v in epn.weights if "head" not in v.path]
  assert len(copied) == len(epn.weights) - 2  # all but the head's kernel and bias
  for v in copied:
    np.testing.assert_array_equal(v.numpy(), sources[v.path])
  head_kernel = [v for v in epn.weights if "head" in v.path and v.shape[-1] == 3][0]
  assert not np.any(head_kernel.numpy())


def test_a_variable_without_source_is_an_error_naming_it():
  _, epn = _models()
  other = bit.create_model("tiny", num_classes=6, width=0.5)  # every conv shape differs
  with pytest.raises(RuntimeError, match="found no source.*resnet/"):
    stages._copy_backbone(other, epn)  # pylint: disable=protected-access
