"""`hub.load.reference`: a handle resolved once into an `ExpertRef` (location, options, metadata,
name; identity on first use)."""
import dataclasses

import pytest

from tests.hub.test_modules import _path
from tfexperts.errors import UserError
from tfexperts.hub import expert_ref
from tfexperts.hub import identity as identity_lib
from tfexperts.hub import load
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import third_party


def _counting(monkeypatch, owner, name):
  """Replaces `owner.name` by a spy calling the real function; returns its list of calls."""
  calls, real = [], getattr(owner, name)
  monkeypatch.setattr(owner, name, lambda *a: calls.append(a) or real(*a))
  return calls


def test_a_handle_with_options_is_parsed_once_into_the_value(exported, monkeypatch):
  path = _path(exported, "adapter_animal")
  parsed = _counting(monkeypatch, third_party, "split_options")
  ref = load.reference(f"file://{path}?range=-1:1")
  assert len(parsed) == 1
  assert (ref.handle, ref.location, ref.name, ref.options) == (
      f"file://{path}?range=-1:1", path, "adapter_animal", (("range", (-1.0, 1.0)),))
  assert ref.metadata == metadata_lib.read(path) and ref.resolution == 32
  assert ref.input_range == (-1.0, 1.0) and ref.has_options
  plain = load.reference(path)
  assert (plain.options, plain.input_range, plain.has_options) == ((), (0.0, 1.0), False)
  # Below the edge the value is used as it is: nothing parses or locates it again.
  assert load.reference(ref) is ref
  expert = load.load_expert(ref, lazy=True)
  assert expert.ref is ref and (expert.name, expert.handle) == (ref.name, ref.handle)
  assert len(parsed) == 2  # `plain`'s


def test_identity_is_computed_on_first_use_only(exported, monkeypatch):
  ref = load.reference(_path(exported, "baseline"))
  hashed = _counting(monkeypatch, identity_lib, "of_directory")
  assert hashed == []
  assert ref.identity == ref.identity == load.load_expert(ref, lazy=True).content_id
  assert hashed == [(ref.location,)]
  other = load.reference(_path(exported, "patch_animal"))
  assert other.identity != ref.identity


@pytest.mark.parametrize("option,match", [
    ("rnage=-1,1", r"unknown or repeated options \['rnage'\]. Options: \['range'\]"),
    ("range=1,-1", r"range must be two numbers LOW,HIGH.*Received: range='1,-1'"),
    ("range=0,1&range=0,2", r"unknown or repeated options \['range'\]")])
def test_a_bad_option_is_a_user_error_naming_the_handle_before_anything_is_located(
    tmp_path, option, match):
  handle = f"{tmp_path / 'nowhere'}?{option}"  # no module there: options are checked first
  with pytest.raises(UserError, match=match) as caught:
    load.reference(handle)
  assert repr(handle) in str(caught.value)


def test_the_value_is_frozen_and_below_the_edge_only_the_value_is_taken(exported):
  ref = load.reference(_path(exported, "baseline"))
  with pytest.raises(dataclasses.FrozenInstanceError):
    ref.location = "elsewhere"
  assert expert_ref.check(ref, "f") is ref
  with pytest.raises(TypeError, match=r"run takes an ExpertRef .*Received: 'some/handle'"):
    expert_ref.check("some/handle", "run")
