"""knn_topk's short runs (`transfer.topk.select`): the pick, and the pick's model handed on to its
protocol so the winning expert is loaded once (fine-tuning replaced by a table: no TensorFlow)."""
import os

from tfexperts.transfer import finetune
from tfexperts.transfer import protocol
from tfexperts.transfer import topk


class _Task:
  name = "t"


def _table_runs(monkeypatch, accuracy):
  """Replaces `finetune.run` by `accuracy[(expert, phase)]` (None: the run diverges); returns the
  list of `(expert, phase, cache)` of every run, in order."""
  calls = []

  def run(spec, strategy, cache):
    del strategy
    phase = os.path.basename(spec.directory).split("_")[0]
    calls.append((spec.expert, phase, cache))
    value = accuracy[(spec.expert, phase)]
    return {"seed": spec.seed, "seconds": 1.0, "diverged": value is None, "accuracy": value,
            "num_eval_examples": 10, "correct_bits": None, "message": "diverged"}
  monkeypatch.setattr(finetune, "run", run)
  monkeypatch.setattr(protocol, "module_resolution", lambda config, handle: 32)
  return calls


def _select(tmp_path, kept):
  config = protocol.ProtocolConfig(learning_rates=(0.1,), steps=(8,), final_repeats=1)
  return topk.select({"a": "a", "b": "b", "c": "c"}, {"a": 0.9, "b": 0.8, "c": 0.7}, _Task(),
                     config, str(tmp_path), None, k=3, kept=kept), config


def test_the_picks_protocol_reuses_the_model_of_its_short_run(monkeypatch, tmp_path):
  table = {("a", "short"): 0.5, ("b", "short"): 0.6, ("c", "short"): 0.6,
           ("b", "sweep"): 0.7, ("b", "final"): 0.7}
  calls = _table_runs(monkeypatch, table)
  kept = {}
  block, config = _select(tmp_path, kept)
  assert block["pick"] == "b"  # the best val accuracy, the tie to the better kNN rank
  short_caches = {expert: cache for expert, phase, cache in calls}
  assert len({id(c) for c in short_caches.values()}) == 3
  assert all(isinstance(c, finetune.ModelCache) for c in short_caches.values())
  assert list(kept) == ["b"] and kept["b"] is short_caches["b"]
  del calls[:]
  protocol.run_protocol("b", _Task(), config, str(tmp_path / "b"), None, cache=kept.pop("b"))
  assert [(e, p) for e, p, _ in calls] == [("b", "sweep"), ("b", "final")]
  assert all(cache is short_caches["b"] for _, _, cache in calls)


def test_when_every_short_run_diverges_knns_top_is_kept(monkeypatch, tmp_path):
  calls = _table_runs(monkeypatch, {(e, "short"): None for e in "abc"})
  kept = {}
  block, _ = _select(tmp_path, kept)
  assert block["pick"] == "a" and list(kept) == ["a"] and kept["a"] is calls[0][2]
  assert all(c.get("diverged") for c in block["candidates"])


def test_the_pick_without_a_kept_dict_is_the_best_short_run(monkeypatch, tmp_path):
  _table_runs(monkeypatch, {("a", "short"): 0.1, ("b", "short"): 0.3, ("c", "short"): 0.2})
  block, _ = _select(tmp_path, None)
  assert block["pick"] == "b"
