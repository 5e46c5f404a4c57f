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
