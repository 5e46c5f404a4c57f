"""The finished-model record: strict keys, round trip, and workdirs written before it existed."""
import json
import os
import shutil

import pytest

from tfexperts import artifacts
from tfexperts import errors

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
OLD_WORKDIR = os.path.join(DATA, "old_workdir")  # bin/train_experts output before artifacts.py
OLD_EXPORT = os.path.join(DATA, "old_workdir_export_metadata.json")  # its export by that code


def _old_record(*parts):
  with open(os.path.join(OLD_WORKDIR, *parts, "final", artifacts.METADATA)) as f:
    return json.load(f)


def _bank():
  return _old_record("adapter")


def test_old_records_of_every_kind_read_and_write_back_unchanged():
  for parts in [("baseline",), ("adapter",), ("patch",), ("epn",),
                ("full", sorted(os.listdir(os.path.join(OLD_WORKDIR, "full")))[0])]:
    data = _old_record(*parts)
    record = artifacts.ModelRecord.from_json(data)
    assert record.kind == data["kind"]
    assert record.to_json() == data


def test_a_misspelt_key_is_an_error_naming_it():
  data = _bank()
  data["resolutoin"] = data.pop("resolution")
  with pytest.raises(artifacts.RecordError, match="unknown key 'resolutoin'"):
    artifacts.ModelRecord.from_json(data)
  data = _bank()
  data["experts"][1]["nod"] = data["experts"][1].pop("node")
  with pytest.raises(artifacts.RecordError, match=r"experts\[1\].*unknown key 'nod'"):
    artifacts.ModelRecord.from_json(data)


def test_a_missing_key_is_an_error_naming_it():
  data = _bank()
  del data["num_upstream_classes"]
  with pytest.raises(artifacts.RecordError, match="missing key 'num_upstream_classes'"):
    artifacts.ModelRecord.from_json(data)
  data = _bank()
  del data["experts"][0]["label_prior"]
  with pytest.raises(artifacts.RecordError, match=r"experts\[0\].*missing key 'label_prior'"):
    artifacts.ModelRecord.from_json(data)
  data = _bank()
  del data["experts"]
  with pytest.raises(artifacts.RecordError, match="adapter_bank record needs 'experts'"):
    artifacts.ModelRecord.from_json(data)
  assert issubclass(artifacts.RecordError, errors.UserError)


def test_an_unknown_kind_is_an_error_listing_the_kinds():
  data = {**_bank(), "kind": "teacher"}
  with pytest.raises(artifacts.RecordError, match="'teacher'.*'adapter_bank'"):
    artifacts.ModelRecord.from_json(data)


def _full():
  return _old_record("full", sorted(os.listdir(os.path.join(OLD_WORKDIR, "full")))[0])


def test_dat_models_have_their_own_kind_and_older_dat_records_read_as_it():
  # What transfer/dat.py wrote before DAT had its kind: a full record with no expert.
  older = {**_full(), "dat_class_weights": [0.5, 1.5]}
  del older["experts"]
  record = artifacts.ModelRecord.from_json(older)
  assert record.kind == artifacts.DAT_KIND and record.dat_class_weights == [0.5, 1.5]
  assert artifacts.ModelRecord.from_json(record.to_json()) == record
  with pytest.raises(artifacts.RecordError, match="dat record has no single expert"):
    _ = record.expert
  with pytest.raises(artifacts.RecordError, match="full record needs 'experts'.*None"):
    artifacts.ModelRecord.from_json({k: v for k, v in _full().items() if k != "experts"})
  with pytest.raises(artifacts.RecordError, match="'dat_class_weights'.*'dat'.*None"):
    artifacts.ModelRecord.from_json({**older, "kind": "dat", "dat_class_weights": None})
  with pytest.raises(artifacts.RecordError, match="'dat_class_weights'.*'full'.*0.5"):
    artifacts.ModelRecord.from_json({**_full(), "dat_class_weights": [0.5]})


def test_read_record_names_the_file(tmp_path):
  directory = tmp_path / "final"
  directory.mkdir()
  (directory / artifacts.METADATA).write_text(json.dumps({**_bank(), "stpes": 3}))
  with pytest.raises(artifacts.RecordError, match=f"{directory}.*'stpes'"):
    artifacts.read_record(str(directory))


def test_a_workdir_written_before_the_record_exports_as_it_did(tmp_path):
  from tfexperts.hub import collection  # pylint: disable=g-import-not-at-top
  from tfexperts.hub import metadata  # pylint: disable=g-import-not-at-top
  with open(OLD_EXPORT) as f:
    expected = json.load(f)  # module -> its metadata, as the code before the record wrote it
  # Every finished model of the old workdir plans to the modules the old code exported ...
  assert sorted(p.module for p in collection.plan(OLD_WORKDIR)) == sorted(expected)
  # ... and the adapter bank (the bank module and its extracted experts; exporting all 9 modules
  # would take minutes) exports to the same module metadata (read from the old format), value
  # for value.
  workdir = str(tmp_path / "old_workdir")
  shutil.copytree(os.path.join(OLD_WORKDIR, "adapter"), os.path.join(workdir, "adapter"))
  entries = collection.export_workdir(workdir, str(tmp_path / "export"))
  assert sorted(e.name for e in entries) == ["adapter_bank", "adapter_glyph", "adapter_polygon"]
  for entry in entries:
    written = metadata.read(os.path.join(str(tmp_path / "export"), "old_workdir", entry.handle))
    assert written.kind == expected[entry.name]["kind"]
    assert written == metadata.from_json(expected[entry.name]) == entry.metadata, entry.name
