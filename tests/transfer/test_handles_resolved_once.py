"""Handles are resolved once, at the edge (issue 27 item 3): selection, fine-tuning and artifacts
take the `ExpertRef` the edge built and never parse or resolve a handle string again."""
import collections
import dataclasses
import inspect
import os

import pytest
import tensorflow as tf

from tests.hub.test_modules import _path
from tfexperts import transfer
from tfexperts.data import tasks
from tfexperts.hub import load as hub_load
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import third_party
from tfexperts.select import selection
from tfexperts.transfer import finetune
from tfexperts.transfer import protocol

# Where a handle string may become an ExpertRef: the public entry points.
EDGES = ("tfexperts.select.selection.load_candidates", "tfexperts.transfer.reuse.apply",
         "tfexperts.transfer.reuse.export", "tfexperts.transfer.dat.run",
         "tfexperts.hub.published.load_published")


def _callers():
  """`module.function` of every frame above the spy, innermost first."""
  return [f"{frame.frame.f_globals.get('__name__')}.{frame.function}"
          for frame in inspect.stack()[2:]]


@pytest.fixture(name="spied")
def fixture_spied(monkeypatch):
  """Counts every call that parses, locates or reads a handle's module, with its callers; each
  spy calls the real function."""
  calls = collections.defaultdict(list)

  def spy(owner, name):
    real = getattr(owner, name)

    def counted(*args, **kwargs):
      calls[name].append((args[0], _callers()))
      return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, counted)

  for owner, name in ((hub_load, "resolve"), (hub_load, "reference"), (hub_load, "_locate"),
                      (third_party, "split_options"), (metadata_lib, "read")):
    spy(owner, name)
  return calls


def test_selection_fine_tuning_and_apply_resolve_each_handle_once_at_the_edge(
    spied, exported, offline_data_dir, tmp_path):
  base = tasks.get_task("shapes_fine_tiny")
  task = dataclasses.replace(base, splits={**base.splits, "few": "train[:12]"})
  candidates = selection.load_candidates(exported.collection_dir)  # the edge
  scores, _ = selection.score(candidates, selection.FeatureSource(task, "few", offline_data_dir,
                                                                  batch_size=6), ["knn"])
  assert len(scores["knn"]) == len(candidates.experts) > 1
  baseline = candidates.baseline.ref
  config = protocol.ProtocolConfig(learning_rates=(6.4,), steps=(2,), batch_size=8,
                                   resolution=32, final_repeats=1, finetune="patch")
  result = protocol.short_run(baseline, task, config, 6.4, 2, str(tmp_path / "runs"),
                              tf.distribute.get_strategy(), offline_data_dir,
                              cache=finetune.ModelCache())
  assert result["handle"] == baseline.handle and result["artifact"]  # records keep the string
  model = transfer.apply(baseline.handle, result["artifact"])  # the edge again, for the user
  assert model.expert_ref.location == baseline.location

  strings = [(handle, callers) for handle, callers in spied["reference"]
             if isinstance(handle, str)]
  # Once per module of the collection (experts, EPN, banks), and once more for apply's; each
  # from an edge.
  counts = collections.Counter(handle for handle, _ in strings)
  assert {e.handle for e in candidates.experts} <= set(counts)
  assert counts.pop(baseline.handle) == 2 and set(counts.values()) == {1}
  for handle, callers in strings:
    assert any(edge in callers for edge in EDGES), (handle, callers[:6])
  # Parsing, locating and reading a module's metadata happen inside `reference` only, once per
  # handle string: nothing below the edge resolves a handle again.
  assert spied["resolve"] == []
  for name in ("split_options", "_locate", "read"):
    assert len(spied[name]) == len(strings), (name, [c[:3] for _, c in spied[name]])
    for _, callers in spied[name]:
      assert callers[0] == "tfexperts.hub.load.reference", (name, callers[:4])


def test_below_the_edge_a_handle_string_is_refused(exported):
  path = _path(exported, "baseline")
  with pytest.raises(TypeError, match=r"TransferModel takes an ExpertRef.*Received: '.*baseline"):
    finetune.TransferModel(path, 3)
  assert finetune.TransferModel(hub_load.reference(path), 3).handle == path
  assert os.path.isdir(hub_load.reference(path).location)
