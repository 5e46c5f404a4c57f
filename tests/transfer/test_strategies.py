"""Selection strategies on fixed scores (no training), and the one check of an evaluation config."""
import json
import os

import pytest

from tfexperts import defaults
from tfexperts.errors import UserError
from tfexperts.transfer import dat_config
from tfexperts.transfer import eval_config
from tfexperts.transfer import strategies

NAMES = ["adapter_animal", "baseline", "patch_animal", "patch_thing_red"]
PICKS = {"knn": "patch_animal", "label_matching": "adapter_animal", "random": "patch_animal",
         "domain": None, "knn_topk": "adapter_animal"}


def _chosen(name):
  return strategies.get(name, NAMES).chosen(PICKS, NAMES, "baseline", "shapes_fine")


def test_each_strategy_fine_tunes_its_experts():
  assert list(strategies.STRATEGIES) == list(defaults.SELECTIONS)
  assert _chosen("knn") == _chosen("random") == ["patch_animal"]
  assert _chosen("label_matching") == ["adapter_animal"]
  assert _chosen("knn_topk") == ["adapter_animal"]
  assert _chosen("dat") == ["dat_shapes_fine"]
  assert _chosen("all_experts") == NAMES
  assert _chosen("all_proxies") == ["adapter_animal", "baseline", "patch_animal"]
  assert _chosen("patch_thing_red") == ["patch_thing_red"]
  assert isinstance(strategies.get("patch_thing_red", NAMES), strategies.NamedExpert)
  with pytest.raises(UserError, match="--selection=domain could not score any expert on "
                     "shapes_fine"):
    _chosen("domain")


def test_each_strategy_scores_what_it_needs():
  reported = ("label_matching", "random", "knn_topk")
  assert strategies.get("knn").scored(reported) == ["label_matching", "random"]
  assert strategies.get("knn_topk").scored(reported) == ["label_matching", "random", "knn"]
  assert strategies.get("all_experts").scored(reported) == ["label_matching", "random", "knn"]
  assert strategies.get("all_proxies").scored(("knn", "random")) == ["knn", "random"]
  assert not strategies.get("all_proxies").runs_topk(("knn", "random"))
  assert strategies.get("dat").scored(reported) == ["knn"]
  assert not strategies.get("dat").cached_features and strategies.get("knn").cached_features


def test_the_reported_expert_is_the_pick_or_the_most_accurate():
  accuracies = {"adapter_animal": 0.5, "baseline": 0.7, "patch_animal": 0.7}
  assert strategies.get("knn").reported(["patch_animal"], accuracies) == "patch_animal"
  several = strategies.get("all_experts")
  assert several.reported(NAMES, accuracies) == "baseline"  # ties to the first
  assert several.reported(NAMES, {}) is None


def test_strategy_comparison_with_and_without_an_oracle():
  scores = {"knn": {"adapter_animal": 0.9, "baseline": 0.1, "patch_animal": 0.5}}
  picks = {"knn": "adapter_animal", "random": "patch_thing_red"}  # random's pick diverged
  accuracies = {"adapter_animal": 0.5, "baseline": 0.75, "patch_animal": 0.25}
  per_expert = {e: {"test_accuracy": a, "test_interval": [a - 0.1, a + 0.1]}
                for e, a in accuracies.items()}
  fields = strategies.strategy_comparison(scores, picks, per_expert, accuracies, "baseline",
                                          oracle="baseline")
  assert fields["strategy_accuracy"] == {"knn": 0.5, "random": None, "baseline": 0.75,
                                         "oracle": 0.75}
  assert fields["regret"] == {"knn": 0.25, "baseline": 0.0, "oracle": 0.0}
  assert fields["kendall_tau"] == {"knn": pytest.approx(-1 / 3)}
  interval = {e: r["test_interval"] for e, r in per_expert.items()}
  assert fields["strategy_interval"] == {"knn": interval["adapter_animal"],
                                         "baseline": interval["baseline"],
                                         "oracle": interval["baseline"]}
  assert fields["comparisons"] == []  # no per-example correctness recorded
  without = strategies.strategy_comparison(scores, picks, per_expert, accuracies, None)
  assert set(without) == {"strategy_accuracy", "strategy_interval", "comparisons"}
  assert without["strategy_accuracy"] == {"knn": 0.5, "random": None}


def test_an_unknown_selection_names_the_strategies_and_experts():
  with pytest.raises(UserError) as info:
    strategies.get("patch_animl", NAMES)
  message = str(info.value)
  assert "'patch_animl'" in message and "knn_topk" in message and "patch_thing_red" in message
  assert "Did you mean 'patch_animal'?" in message


@pytest.fixture()
def collection(tmp_path):
  """A local collection index whose module directories exist (nothing is loaded)."""
  modules = [{"name": n, "handle": f"{n}/1"} for n in NAMES]
  for n in NAMES:
    os.makedirs(tmp_path / n / "1")
  (tmp_path / "index.json").write_text(json.dumps({"modules": modules}))
  return str(tmp_path)


def test_eval_config_checks_itself_once(collection):
  config = eval_config.EvalConfig(tasks=["vtab"], experts=[collection], selection="baseline")
  assert len(config.tasks) == 19 and config.tasks[0] == "caltech101"
  for field, value, named in [("selection", "adapter_plant", "'adapter_plant'"),
                              ("report_proxies", ("knn", "logmee"), "report_proxies='logmee'"),
                              ("topk_steps_fraction", 0.0, "topk_steps_fraction=0.0"),
                              ("topk_steps_fraction", 1.5, "topk_steps_fraction=1.5"),
                              ("topk", 0, "topk=0"),
                              ("tasks", ["digits", "cifar1000"], "cifar1000"),
                              ("experts", [collection + "/nothing"], "nothing")]:
    with pytest.raises(UserError, match=named):
      eval_config.EvalConfig(**{"tasks": ["digits"], "experts": [collection], field: value})
  # A remote pool's names are known once loaded: `evaluate.run` resolves the selection then.
  remote = eval_config.EvalConfig(tasks=["digits"], experts=["gs://b/c"], selection="any_name")
  assert remote.selection == "any_name"


def test_dat_needs_its_upstream_data(collection):
  with pytest.raises(UserError, match="upstream"):
    eval_config.EvalConfig(tasks=["digits"], experts=[collection], selection="dat")
  config = eval_config.EvalConfig(tasks=["digits"], experts=[collection], selection="dat",
                                  upstream=dat_config.UpstreamSpec("tfexperts_shapes/tiny"),
                                  seed=7)
  assert config.dat == dat_config.DatConfig(seed=7)
  with pytest.raises(UserError, match="batch_size=0"):
    dat_config.DatConfig(batch_size=0)
