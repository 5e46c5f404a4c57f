"""tfexperts' own modules run as in-process models rebuilt from their metadata (hub.native)."""
import dataclasses
import os
import shutil

from tests.hub import collection_fixtures as conftest
from tests.hub.test_modules import _close, _path
from tfexperts.hub import load
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import native

FORMAT_1 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                        "module_metadata_v1")


def _ref(path, metadata=None):
  """The `ExpertRef` of `path`, with `metadata` instead of the module's when given."""
  ref = load.reference(path)
  return ref if metadata is None else dataclasses.replace(ref, metadata=metadata)


def test_native_features_equal_the_keras_models_one_runner_for_all(exported, models):
  x = conftest.images(4)
  runner = native.NativeRunner()
  # Two experts of one architecture in turn: the second load reassigns the shared model.
  for name in ("baseline", "adapter_animal", "adapter_thing_red", "patch_animal",
               "patch_thing_red", "adapter_animal"):
    path = _path(exported, name)
    embed = runner.load(_ref(path))
    assert embed is not None, name
    _close(embed(x), models.outputs[name]["pre_logits"])


def test_modules_that_do_not_verify_are_left_to_hub_load(exported, tmp_path):
  runner = native.NativeRunner()
  path = _path(exported, "baseline")
  metadata = metadata_lib.read(path)
  wrong = dataclasses.replace(metadata,
                              architecture=dataclasses.replace(metadata.architecture, groups=1))
  assert runner.load(_ref(path, wrong)) is None  # builds, but computes other features
  absent = metadata_lib.ModuleMetadata.absent()
  assert runner.load(_ref(path, absent)) is None  # not a tfexperts module
  assert runner.load(_ref(path + "?range=-1,1")) is None  # options change the inputs
  copy = str(tmp_path / "old_export")
  shutil.copytree(path, copy)
  os.remove(native.check_asset_path(copy))  # an export from before the check asset
  assert runner.load(_ref(copy, metadata)) is None
  for bank in ("adapter_bank", "patch_bank"):  # take expert ids: never rebuilt
    assert runner.load(_ref(_path(exported, bank))) is None


def test_a_module_exported_in_format_1_loads_and_runs_natively(exported, models, tmp_path):
  # The baseline module with the metadata today's main wrote for the same tiny baseline.
  path = str(tmp_path / "baseline" / "1")
  shutil.copytree(_path(exported, "baseline"), path)
  shutil.copy(os.path.join(FORMAT_1, "baseline.json"), metadata_lib.asset_path(path))
  expert = load.load_expert(path, lazy=True)
  assert expert.metadata == metadata_lib.read(_path(exported, "baseline"))
  embed = native.NativeRunner().load(expert.ref)
  assert embed is not None
  _close(embed(conftest.images(4)), models.outputs["baseline"]["pre_logits"])
