"""`FeatureSource(engine="openvino")`: features and kNN picks equal TensorFlow's, the converted
model is cached, a module OpenVINO cannot convert falls back to TensorFlow with one line."""
import contextlib
import os
import shutil

import keras
import numpy as np
import pytest

from tests.hub.test_modules import _path
from tests.select.test_task_images import counted_task
from tfexperts.errors import UserError
from tfexperts.hub import load
from tfexperts.hub import module as module_lib
from tfexperts.hub import openvino_engine
from tfexperts.models import bit
from tfexperts.models import layers as bit_layers
from tfexperts.select import knn
from tfexperts.select import selection

NAMES = ("baseline", "adapter_animal", "adapter_thing_red", "patch_animal")


def _source(data_dir, cache_dir, engine, **kwargs):
  return selection.FeatureSource(counted_task()[0], "few", data_dir, batch_size=5,
                                 cache_dir=str(cache_dir), engine=engine, **kwargs)


@pytest.fixture(name="tensorflow_features", scope="module")
def fixture_tensorflow_features(exported, offline_data_dir, tmp_path_factory):
  """`(feature cache dir, {expert key: Features})`: TensorFlow's float32 features of `NAMES` (what
  OpenVINO must reproduce), embedded once for the tests of this file."""
  cache_dir = tmp_path_factory.mktemp("tensorflow_features")
  source = _source(offline_data_dir, cache_dir, "tensorflow")
  candidates = selection.load_candidates([_path(exported, n) for n in NAMES])
  return cache_dir, {selection.expert_key(e): source.features(e) for e in candidates.experts}


def test_openvino_features_and_knn_picks_equal_tensorflow_float32(
    exported, offline_data_dir, tmp_path, converted_collection, tensorflow_features,
    monkeypatch):
  pytest.importorskip("openvino")
  # TensorFlow's features are in the cache; the IR of all but the last module too (converted for
  # the session), so the source converts the last one itself and caches it beside the others.
  shutil.copytree(tensorflow_features[0], tmp_path, dirs_exist_ok=True)
  for name in NAMES[:-1]:
    ir_dir = os.path.dirname(converted_collection.ir_path(name))
    shutil.copytree(ir_dir, tmp_path / openvino_engine.CACHE_SUBDIR / os.path.basename(ir_dir))
  conversions, convert_saved_model = [], openvino_engine.convert_saved_model

  def counted_convert_saved_model(path):
    conversions.append(path)
    return convert_saved_model(path)
  monkeypatch.setattr(openvino_engine, "convert_saved_model", counted_convert_saved_model)
  candidates = selection.load_candidates([_path(exported, n) for n in NAMES])
  tf_source = _source(offline_data_dir, tmp_path, "tensorflow")
  ov_source = _source(offline_data_dir, tmp_path, "openvino")
  for expert in candidates.experts:
    want, got = tf_source.features(expert), ov_source.features(expert)
    assert want.images_embedded == 0  # TensorFlow's features were read from the cache ...
    assert got.images_embedded == len(want.features) > 0  # ... OpenVINO's computed, not a hit
    scale = np.abs(want.features).max()
    np.testing.assert_allclose(got.features, want.features, rtol=0, atol=1e-4 * scale)
    np.testing.assert_array_equal(got.labels, want.labels)
    assert (knn.loo_accuracy(got.features, got.labels)
            == knn.loo_accuracy(want.features, want.labels))
  assert conversions == [_path(exported, NAMES[-1])], conversions  # cached IR read, not converted
  cached = os.listdir(tmp_path / openvino_engine.CACHE_SUBDIR)
  assert len(cached) == len(NAMES)
  # A warm feature cache serves OpenVINO's features without converting again.
  again = _source(offline_data_dir, tmp_path, "openvino")
  assert again.features(candidates.experts[0]).images_embedded == 0
  assert again.key(candidates.experts[0]).engine == "openvino"


def test_converted_model_is_read_from_the_cache(exported, tmp_path, monkeypatch):
  pytest.importorskip("openvino")
  ref = load.reference(_path(exported, "adapter_animal"))
  first = openvino_engine.load(ref, str(tmp_path), "float32", resolution=32)
  monkeypatch.setattr(openvino_engine, "convert_saved_model", lambda *a, **k: 1 / 0)
  second = openvino_engine.load(ref, str(tmp_path), "float32", resolution=32)
  images = np.random.default_rng(0).uniform(size=(3, 32, 32, 3)).astype("float32")
  np.testing.assert_array_equal(second(images), first(images))
  # Another precision is another cache entry: converting it now fails, so TensorFlow runs it.
  assert openvino_engine.load(ref, str(tmp_path), "bfloat16") is None
  assert not [n for n in os.listdir(tmp_path / openvino_engine.CACHE_SUBDIR) if ".tmp" in n]


def _symbolic_build(model, input_shape):
  """`bit.ResNetV2.build` as it was before 2026-12-03: a symbolic pass over `call`."""
  if not model.built:
    model.call(keras.KerasTensor(tuple(input_shape)))
  keras.Model.build(model, input_shape)


@pytest.fixture(name="old_style_module")
def fixture_old_style_module(models, tmp_path_factory, monkeypatch):
  """A module exported as before unique graph names: models were built by a symbolic pass (their
  composite layers had no `build`), which gave the variables repeated graph names such as
  `resnet/block1/gamma`, and the module saved those variables themselves, which session-based
  loaders and OpenVINO cannot resolve."""
  from tfexperts.hub import export  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  from tfexperts.hub import metadata as metadata_lib  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  for layer_class in (bit.RootBlock, bit.BottleneckUnit, bit.ResNetBlock, bit_layers.PreActConv,
                      bit_layers._Projection):  # pylint: disable=protected-access
    monkeypatch.delattr(layer_class, "build")
  monkeypatch.setattr(bit.ResNetV2, "build", _symbolic_build)
  baseline = bit.ResNetV2.from_config(models.baseline.get_config())
  baseline.build((None, None, None, 3))
  graph_names = [v.value.name for v in baseline.weights]
  assert len(set(graph_names)) < len(graph_names)  # the old names, repeated
  for variable, value in zip(baseline.weights, models.baseline.weights):
    variable.assign(value)
  monkeypatch.setattr(module_lib, "renamed_copies", list)
  monkeypatch.setattr(module_lib, "_renamed", lambda *args: contextlib.nullcontext())
  path = os.path.join(str(tmp_path_factory.mktemp("old")), "old", "1")
  export.export_expert(baseline, path, metadata_lib.build("full", "old", baseline, resolution=32))
  return path


def test_module_openvino_cannot_convert_falls_back_to_tensorflow(old_style_module, capsys,
                                                                 offline_data_dir, tmp_path):
  pytest.importorskip("openvino")
  expert = selection.load_candidates([old_style_module]).experts[0]
  want = _source(offline_data_dir, tmp_path / "tf", "tensorflow").features(expert)
  capsys.readouterr()
  source = _source(offline_data_dir, tmp_path / "ov", "openvino")
  got = source.features(expert)
  lines = [line for line in capsys.readouterr().out.splitlines() if "OpenVINO" in line]
  assert len(lines) == 1 and "embedding it with TensorFlow" in lines[0], lines
  np.testing.assert_array_equal(got.features, want.features)
  # Cached as TensorFlow's features: a second source reads them without trying OpenVINO again.
  assert source.cache.load(source.key(expert, engine="tensorflow")) is not None
  assert source.cache.load(source.key(expert)) is None


def test_engine_names_are_checked(monkeypatch):
  with pytest.raises(UserError, match="'onnx'.*tensorflow, openvino"):
    openvino_engine.check_engine("onnx")
  with pytest.raises(UserError, match="'int8'.*float32, bfloat16, float16"):
    openvino_engine.check_precision("int8")
  monkeypatch.setattr(openvino_engine, "available", lambda: False)
  with pytest.raises(UserError, match=r"pip install tfexperts\[openvino\]"):
    openvino_engine.check_engine("openvino")
  assert openvino_engine.check_engine("tensorflow") == "tensorflow"


def test_openvino_bfloat16_knn_scores_and_pick_equal_tensorflow_float32(
    exported, offline_data_dir, converted_collection, tensorflow_features):
  pytest.importorskip("openvino")
  candidates = selection.load_candidates([_path(exported, n) for n in NAMES])
  got = selection.FeatureSource(counted_task()[0], "few", offline_data_dir, batch_size=5,
                                engine="openvino", precision="bfloat16",
                                engine_cache_dir=converted_collection.cache_root)
  scores = {}
  for expert in candidates.experts:
    f32, bf16 = tensorflow_features[1][selection.expert_key(expert)], got.features(expert)
    assert bf16.images_embedded == len(f32.features) > 0
    error = np.abs(bf16.features - f32.features).max() / np.abs(f32.features).max()
    print(f"{selection.expert_key(expert)}: bfloat16 features' max error {error:.2e} of scale")
    assert 0 < error < 0.05  # bfloat16 did run (not float32), and stayed close
    scores[selection.expert_key(expert)] = [knn.loo_accuracy(f.features, f.labels)
                                            for f in (f32, bf16)]
  for name, (f32, bf16) in scores.items():
    assert abs(f32 - bf16) <= 0.005, (name, f32, bf16)
  best = max(v[0] for v in scores.values())
  pick = max(scores, key=lambda n: scores[n][1])
  assert scores[pick][0] >= best - 0.005, scores
