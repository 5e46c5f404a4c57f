"""A session fixture (registered in tests/conftest.py): the exported tiny collection converted to
OpenVINO once, for tests that use converted models but are not about the conversion cache
(tests/hub/test_consumers.py, tests/select/test_engine.py).

Converting a tiny module takes seconds (most of OpenVINO's time in those tests); every module is
converted once per session by the product's own `openvino_engine.convert` (which checks the
conversion against the module's stored features before caching it), into an IR cache that the
pytest-xdist workers of one session share (`session_shared.build_once`). The exported collection
is bit-identical in every worker (same content identity, the cache key).
"""
import dataclasses
import os
import shutil

import pytest

from tests import session_shared
from tfexperts.hub import load as hub_load
from tfexperts.hub import openvino_engine

MODULES = ("baseline", "adapter_animal", "adapter_thing_red", "patch_animal", "patch_thing_red")


@dataclasses.dataclass
class ConvertedCollection:
  """OpenVINO IR cache root (`FeatureSource(engine_cache_dir=...)`) holding `MODULES` of the
  exported collection at every precision of `openvino_engine.PRECISIONS`."""
  cache_root: str
  module_dirs: dict  # module name -> its exported SavedModel directory
  refs: dict  # module name -> its `ExpertRef`

  def ir_path(self, name, precision="float32"):
    """The cached IR (`model.xml`) of module `name` at `precision`."""
    return os.path.join(self.cache_root, openvino_engine.CACHE_SUBDIR,
                        openvino_engine.cache_key(self.refs[name], precision), "model.xml")


@pytest.fixture(scope="session")
def converted_collection(exported, tmp_path_factory):
  """`ConvertedCollection` of the exported tiny collection, each module converted once.

  Precision is only a compile-time hint (`openvino_engine.Embedder`); the IR `convert` saves is the
  same for every precision, so the other precisions' entries are copies of the float32 one.
  """
  pytest.importorskip("openvino")
  module_dirs = {n: os.path.join(exported.collection_dir, n, "1") for n in MODULES}
  refs = {n: hub_load.reference(d) for n, d in module_dirs.items()}

  def convert_all(root):
    converted = ConvertedCollection(root, module_dirs, refs)
    for name in module_dirs:
      openvino_engine.convert(refs[name], root, "float32")
      for precision in openvino_engine.PRECISIONS:
        target = os.path.dirname(converted.ir_path(name, precision))
        if not os.path.exists(target):
          shutil.copytree(os.path.dirname(converted.ir_path(name)), target)

  root = session_shared.build_once(tmp_path_factory, "openvino_ir_cache", convert_all)
  before = session_shared.fingerprint(root)
  yield ConvertedCollection(root, module_dirs, refs)
  session_shared.assert_unchanged(root, before)
