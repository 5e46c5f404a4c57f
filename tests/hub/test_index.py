"""The collection index as a strict record: what the exporter writes reads back exactly; unknown
and missing keys are errors naming them; an index from before exports recorded their plan (no
`versions`) reads as complete."""
import json
import os
import shutil

import pytest

from tfexperts import artifacts
from tfexperts.hub import index
from tfexperts.hub import load


def _written(exported):
  return json.load(open(os.path.join(exported.collection_dir, index.INDEX_FILE)))


def test_the_exported_index_round_trips_exactly(exported):
  data = _written(exported)
  parsed = index.CollectionIndex.from_json(data)
  assert parsed.to_json() == data
  assert parsed.available_versions() == [1] and parsed.missing(1) == []
  assert [e.name for e in parsed.latest()] == sorted(m["name"] for m in data["modules"])
  assert all(e.metadata.kind == e.kind for e in parsed.modules)


@pytest.mark.parametrize("where,key", [("top", "extra"), ("entry", "extra"), ("plan", "extra")])
def test_unknown_keys_are_errors_naming_them(exported, where, key):
  data = _written(exported)
  target = {"top": data, "entry": data["modules"][2], "plan": data["versions"]["1"]}[where]
  target[key] = 1
  with pytest.raises(artifacts.RecordError, match=f"unknown key '{key}'"):
    index.CollectionIndex.from_json(data, "index.json")


def test_missing_keys_and_other_formats_are_errors(exported):
  data = _written(exported)
  del data["modules"][0]["handle"]
  with pytest.raises(artifacts.RecordError, match=r"modules\[0\]: missing key 'handle'"):
    index.CollectionIndex.from_json(data, "index.json")
  with pytest.raises(artifacts.RecordError, match="not a tfexperts collection index"):
    index.CollectionIndex.from_json({**_written(exported), "format": "other/1"}, "index.json")


def test_an_index_without_versions_reads_as_complete(exported, tmp_path):
  old = str(tmp_path / "old")
  shutil.copytree(exported.collection_dir, old)
  data = _written(exported)
  del data["versions"]  # as exports wrote it before they recorded their plan
  with open(index.index_path(old), "w") as f:
    json.dump(data, f)
  parsed = index.read(old)
  assert parsed.versions == {} and parsed.missing(1) == []
  assert len(load.load_collection(old).experts) == len(
      [m for m in data["modules"] if m["kind"] not in ("epn", "adapter_bank", "patch_bank")])
