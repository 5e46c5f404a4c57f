"""Exported modules read as saved by other SavedModel consumers: TensorFlow's session-based loader
(`saved_model_cli run`, what TF Serving uses) and OpenVINO's TensorFlow frontend
(`openvino_engine.convert_saved_model`, the steps of `openvino.convert_model(module_dir)`)."""
import collections
import os
import sys

import numpy as np
import pytest
from tensorflow.core.protobuf import saved_model_pb2

from tests import processes
from tests.hub import collection_fixtures as conftest
from tests.hub.test_modules import _close
from tests.hub.test_modules import _path
from tfexperts.hub import openvino_engine
from tfexperts.hub.tfhub import hub

NAMES = ("baseline", "adapter_animal", "patch_thing_red")


def _variable_shared_names(module_dir):
  """`shared_name` of every VarHandleOp in the module's serving graph (what loaders resolve)."""
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(module_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  return [node.attr["shared_name"].s.decode() for node in proto.meta_graphs[0].graph_def.node
          if node.op == "VarHandleOp"]


def test_every_variable_has_a_unique_graph_name_from_its_keras_path(exported, models):
  for name in NAMES:
    names = _variable_shared_names(_path(exported, name))
    assert len(names) == len(set(names)) > 0, name
  names = _variable_shared_names(_path(exported, "baseline"))
  assert sorted(names) == sorted(v.path for v in models.baseline.variables)


def test_saved_model_cli_runs_every_module_as_hub_load_does(exported, tmp_path):
  x = conftest.images(2)
  np.save(tmp_path / "images.npy", x)
  # The console script TensorFlow installs, run by this Python (tests/processes.py).
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  for name in NAMES:
    out = tmp_path / name
    processes.run(processes.python_command(
        [cli, "run", "--dir", _path(exported, name), "--tag_set", "serve", "--signature_def",
         "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir",
         str(out)]))
    module = hub.load(_path(exported, name))
    _close(np.load(out / "pre_logits.npy"), module(x))
    if name == "baseline":
      _close(np.load(out / "logits.npy"), module.logits(x))


def test_openvino_converts_the_module_directory_as_saved(exported, converted_collection):
  ov = pytest.importorskip("openvino")
  x = conftest.images(2)
  for name in NAMES:
    # `openvino_engine.convert_saved_model(module_dir)` as saved, its GroupNorms then fused into
    # OpenVINO's op (every one, plain and one-expert bank), run once per session
    # (tests/hub/openvino_fixtures.py)
    model = ov.Core().read_model(converted_collection.ir_path(name))
    kinds = collections.Counter(op.get_type_name() for op in model.get_ordered_ops())
    assert kinds["GroupNormalization"] >= 13 and kinds["SquaredDifference"] == 0, (name, kinds)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    outputs = {next(iter(o.get_names() & {"pre_logits", "logits"})): v
               for o, v in compiled(x).items()}
    module = hub.load(_path(exported, name))
    _close(outputs["pre_logits"], module(x))
    if name == "baseline":
      _close(outputs["logits"], module.logits(x))


def _ops_and_constants(model):
  """`(op type names in order, Constant values in order, output names)` of an OpenVINO model."""
  ops = model.get_ordered_ops()
  return ([op.get_type_name() for op in ops],
          [op.get_data() for op in ops if op.get_type_name() == "Constant"],
          [sorted(output.get_names()) for output in model.outputs])


def test_conversion_is_what_openvino_convert_model_gives(exported):
  ov = pytest.importorskip("openvino")
  module_dir = _path(exported, "adapter_animal")
  ours = _ops_and_constants(openvino_engine.convert_saved_model(module_dir))
  theirs = _ops_and_constants(ov.convert_model(module_dir))
  assert ours[0] == theirs[0] and ours[2] == theirs[2] == [["pre_logits"]]
  assert len(ours[1]) == len(theirs[1]) > 0
  for a, b in zip(ours[1], theirs[1]):
    np.testing.assert_array_equal(a, b)
