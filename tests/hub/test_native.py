"""tfexperts' own modules run as in-process models rebuilt from their metadata (hub.native)."""
import os
import shutil

import numpy as np

from tests.hub import collection_fixtures as conftest
from tests.hub.test_modules import _close, _path
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import native
from tfexperts.models import bit


def test_native_features_equal_the_keras_models_one_runner_for_all(exported, models):
  x = conftest.images(4)
  runner = native.NativeRunner()
  # Two experts of one architecture in turn: the second load reassigns the shared model.
  for name in ("baseline", "adapter_animal", "adapter_thing_red", "patch_animal",
               "patch_thing_red", "adapter_animal"):
    path = _path(exported, name)
    embed = runner.load(path, metadata_lib.read(path))
    assert embed is not None, name
    _close(embed(x), models.outputs[name]["pre_logits"])


def test_modules_that_do_not_verify_are_left_to_hub_load(exported, tmp_path):
  runner = native.NativeRunner()
  path = _path(exported, "baseline")
  metadata = metadata_lib.read(path)
  wrong = {**metadata, "architecture": {**metadata["architecture"], "groups": 1}}
  assert runner.load(path, wrong) is None  # builds, but computes other features
  assert runner.load(path, {**metadata, "format": None}) is None  # not a tfexperts module
  assert runner.load(path + "?range=-1,1", metadata) is None  # options change the inputs
  copy = str(tmp_path / "old_export")
  shutil.copytree(path, copy)
  os.remove(native.check_asset_path(copy))  # an export from before the check asset
  assert runner.load(copy, metadata) is None
  for bank in ("adapter_bank", "patch_bank"):  # take expert ids: never rebuilt
    assert runner.load(_path(exported, bank), metadata_lib.read(_path(exported, bank))) is None


def test_model_built_from_channels_has_the_symbolic_builds_variables_and_features():
  fast = native._build(((1, 1, 1, 1), 0.25, 4, False, 6))  # pylint: disable=protected-access
  built = bit.ResNetV2(units=(1, 1, 1, 1), width=0.25, num_classes=6, groups=4)
  built.build((None, None, None, 3))
  assert [v.shape for v in fast.variables] == [v.shape for v in built.variables]
  rng = np.random.default_rng(0)
  for target, source in zip(fast.variables, built.variables):
    source.assign(rng.normal(0.0, 0.5, source.shape).astype("float32"))
    target.assign(source)
  x = conftest.images(2)
  np.testing.assert_array_equal(fast(x)["pre_logits"], built(x)["pre_logits"])
