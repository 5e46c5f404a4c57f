"""Module metadata as a strict record: files today's exports wrote load with the same values."""
import dataclasses
import json
import os

import pytest

from tfexperts import artifacts
from tfexperts.hub import metadata

FORMAT_1 = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                        "module_metadata_v1")
KINDS = {"baseline": "baseline", "thing_red": "full", "dat_task": "full", "epn": "epn",
         "adapter_animal": "adapter", "adapter_bank": "adapter_bank", "patch_animal": "patch",
         "patch_bank": "patch_bank"}
# Format 1's key -> ModuleMetadata's field (the names `artifacts.ModelRecord` uses).
RENAMED = {"expert_index": "expert_id", "upstream_num_images": "num_upstream_images",
           "upstream_num_classes": "num_upstream_classes", "training_steps": "steps"}


def _format_1(name):
  with open(os.path.join(FORMAT_1, f"{name}.json")) as f:
    return json.load(f)


def _module_dir(tmp_path, data):
  os.makedirs(tmp_path / "assets", exist_ok=True)
  with open(metadata.asset_path(str(tmp_path)), "w") as f:
    json.dump(data, f)
  return str(tmp_path)


def test_every_kind_written_in_format_1_loads_with_the_same_values():
  assert sorted(n[:-len(".json")] for n in os.listdir(FORMAT_1) if n.endswith(".json")) == (
      sorted(KINDS))
  for name, kind in KINDS.items():
    data = _format_1(name)
    loaded = metadata.from_json(data, name)
    assert (loaded.format, loaded.kind, loaded.module) == (metadata.METADATA_FORMAT, kind, name)
    for key, value in data.items():
      field = RENAMED.get(key, key)
      got = getattr(loaded, field)
      if key == "format":
        continue
      if key == "outputs":
        assert dataclasses.asdict(got) == {"logits": None, **value}, name
      elif key == "experts" and value is not None:
        assert [dataclasses.asdict(e) for e in got] == [
            {"expert_id": e["index"], **{k: v for k, v in e.items() if k != "index"}}
            for e in value], name
      elif key in ("architecture", "input"):
        assert got.to_json() == value, (name, key)
      else:
        assert got == value, (name, key)


def test_writing_then_reading_gives_the_same_record(tmp_path):
  for name in KINDS:
    loaded = metadata.from_json(_format_1(name), name)
    directory = str(tmp_path / name)
    metadata.write(directory, loaded)
    assert metadata.read(directory) == loaded
    with open(metadata.asset_path(directory)) as f:
      written = json.load(f)
    assert written["format"] == metadata.METADATA_FORMAT
    assert not set(written) - {f.name for f in dataclasses.fields(metadata.ModuleMetadata)}
    assert metadata.ModuleMetadata.from_json(written) == loaded


def test_an_unknown_key_is_an_error_naming_it_and_the_file(tmp_path):
  current = metadata.from_json(_format_1("adapter_bank")).to_json()
  for data, key in [({**_format_1("baseline"), "trainig_steps": 2}, "trainig_steps"),
                    ({**current, "training_steps": 2}, "training_steps"),  # format 1's name
                    ({**current, "architecture": {**current["architecture"], "depth": 50}},
                     "depth"),
                    ({**current, "experts": [{**current["experts"][0], "index": 0}]}, "index")]:
    directory = _module_dir(tmp_path / key, data)
    with pytest.raises(artifacts.RecordError, match=f"{directory}.*unknown key '{key}'"):
      metadata.read(directory)


def test_a_missing_key_is_an_error_naming_it_and_the_file(tmp_path):
  current = metadata.from_json(_format_1("patch_animal")).to_json()
  old = _format_1("patch_animal")
  for data, key in [({k: v for k, v in old.items() if k != "upstream_num_images"},
                     "upstream_num_images"),
                    ({k: v for k, v in current.items() if k != "node"}, "node"),
                    ({**current, "input": {"resolution": 32}}, "range")]:
    directory = _module_dir(tmp_path / key, data)
    with pytest.raises(artifacts.RecordError, match=f"{directory}.*missing key '{key}'"):
      metadata.read(directory)
  with pytest.raises(artifacts.RecordError, match="format must be 'tfexperts.hub.module/2'. "
                                                  "Received: 'tfexperts.hub.module/9'"):
    metadata.from_json({**current, "format": "tfexperts.hub.module/9"})
  with pytest.raises(artifacts.RecordError, match="kind must be one of .*Received: None"):
    metadata.from_json({**current, "kind": None})


def test_a_module_without_tfexperts_metadata_is_absent_at_the_default_resolution(tmp_path):
  absent = metadata.read(str(tmp_path))
  assert absent == metadata.ModuleMetadata.absent() and absent.is_absent
  assert (absent.kind, absent.label_prior, absent.architecture) == (None, None, None)
  assert metadata.input_resolution(absent) == 224 == metadata.DEFAULT_RESOLUTION
  assert metadata.input_resolution(absent, 64) == 64
  with pytest.raises(ValueError, match="not written"):
    metadata.write(str(tmp_path), absent)
