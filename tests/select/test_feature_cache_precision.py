"""The embedding precision is part of the feature-cache key; float32 keys are the same as before
the field existed (so caches written then still hit)."""
import json

from tfexperts.select import feature_cache


def _key(**kwargs):
  return feature_cache.CacheKey(handle="h", module="m", task="t", split="s", resolution=32,
                                preprocessing="p", **kwargs)


def test_precision_changes_the_key_and_float32_keys_are_unchanged():
  old = {"format": feature_cache.CACHE_FORMAT, "handle": "h", "module": "m",
         "preprocessing": "p", "resolution": 32, "split": "s", "task": "t"}
  assert _key().to_json() == json.dumps(old, sort_keys=True, separators=(",", ":"))
  assert _key(precision="float32").digest() == _key().digest()
  digests = {_key(precision=p).digest() for p in ("float32", "bfloat16", "float16")}
  assert len(digests) == 3
  assert json.loads(_key(precision="bfloat16").to_json())["precision"] == "bfloat16"


def test_cache_file_of_one_precision_is_not_read_for_another(tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path))
  cache.save(_key(), [[1.0, 2.0]], [0])
  assert cache.load(_key(precision="float32")) is not None
  assert cache.load(_key(precision="bfloat16")) is None


def test_float32_fallback_features_are_cached_under_the_float32_key(exported, offline_data_dir,
                                                                    tmp_path, capsys):
  """A module that does not verify as a native model runs its SavedModel at float32: its
  features are cached as float32 ones, and a bfloat16 request never reads them as bfloat16."""
  import dataclasses
  import shutil

  from tests.hub.test_modules import _path
  from tests.select.test_task_images import counted_task
  from tfexperts.hub import native
  from tfexperts.select import selection

  module_dir = str(tmp_path / "module")
  shutil.copytree(_path(exported, "adapter_animal"), module_dir)
  check = native.read_check_features(module_dir)
  native.write_check_features(module_dir, int(check["resolution"]), int(check["count"]),
                              int(check["seed"]), check["features"] + 1.0)
  expert = selection.load_candidates([module_dir]).experts[0]
  cache_dir = str(tmp_path / "features")
  source = selection.FeatureSource(counted_task()[0], "few", offline_data_dir, batch_size=5,
                                   cache_dir=cache_dir, precision="bfloat16")
  first = source.features(expert)
  assert "did not verify as a native model; embedded at float32" in capsys.readouterr().out
  asked = source.key(expert)
  cache = feature_cache.FeatureCache(cache_dir)
  assert asked.precision == "bfloat16" and cache.load(asked) is None
  assert cache.load(dataclasses.replace(asked, precision="float32")) is not None
  float32 = selection.FeatureSource(counted_task()[0], "few", offline_data_dir, batch_size=5,
                                    cache_dir=cache_dir)
  again = float32.features(expert)
  assert first.images_embedded > 0 and again.images_embedded == 0
  assert (again.features == first.features).all()
