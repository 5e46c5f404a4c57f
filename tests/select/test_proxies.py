"""The proxy registry and interface, label matching, domain prediction, random and linear probe."""
import dataclasses
import json

import numpy as np
import pytest

from tests import processes
from tfexperts.select import knn, matching, proxies
from tfexperts.select.proxies import ProxyInputs



def _every_input():
  rng = np.random.default_rng(0)
  labels = np.arange(40) % 4
  features = rng.standard_normal((40, 6)) + labels[:, None]
  upstream = rng.uniform(size=(40, 5))
  domains = rng.uniform(size=(40, 3))
  return ProxyInputs(features=features, labels=labels, prior=np.full(5, 0.2),
                     upstream_probs=upstream / upstream.sum(1, keepdims=True),
                     domain_probs=domains / domains.sum(1, keepdims=True), expert_index=1,
                     expert="e")


@pytest.mark.parametrize("name", sorted(proxies.PROXIES))
def test_each_proxy_needs_exactly_the_fields_it_requires(name):
  # The selection gives a proxy only its `requires` fields: each must score from those alone
  # and refuse without any one of them.
  proxy = proxies.get(name)
  everything = _every_input()
  only = ProxyInputs(**{f: getattr(everything, f) for f in proxy.requires})
  assert proxies.score(name, only) == proxies.score(name, everything)
  for field in proxy.requires:
    with pytest.raises(ValueError, match=f"needs ProxyInputs.{field}"):
      proxies.score(name, dataclasses.replace(only, **{field: None}))


def test_label_matching_picks_the_expert_covering_the_task():
  # Upstream labels 0-2 are animals, 3-5 vehicles. The task's images look like animals.
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((50, 6))
  logits[:, :3] += 4.0
  task_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  priors = {"animals": [50, 30, 20, 0, 0, 0], "vehicles": [0, 0, 0, 40, 40, 20],
            "everything": [1, 1, 1, 1, 1, 1]}
  scores = {name: proxies.score("label_matching", ProxyInputs(upstream_probs=task_probs,
                                                               prior=np.array(prior, float)))
            for name, prior in priors.items()}
  assert [name for name, _ in proxies.rank(scores)] == ["animals", "everything", "vehicles"]
  # Direction: KL(task mean || smoothed prior).
  q = task_probs.mean(axis=0)
  p = (np.array(priors["vehicles"]) / 100 + 1e-6) / (1 + 6e-6)
  assert scores["vehicles"] == pytest.approx(-np.sum(q * np.log(q / p)), rel=1e-12)


def test_kl_divergence_ignores_zero_mass_of_q():
  assert matching.kl_divergence([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(np.log(2))


def test_domain_prediction_uses_the_geometric_mean():
  # Expert 0 has the highest arithmetic mean but is near zero on one image; expert 1 wins.
  probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.001, 0.3, 0.699]])
  scores = {f"e{i}": proxies.score("domain", ProxyInputs(domain_probs=probs, expert_index=i))
            for i in range(3)}
  assert proxies.rank(scores)[0][0] == "e1"
  assert scores["e1"] == pytest.approx(np.log(0.3))
  assert scores["e0"] == pytest.approx(np.mean(np.log([0.6, 0.6, 0.001])))


def test_random_is_seeded_and_order_independent():
  names = ["a", "b", "c", "d"]
  def random_scores(order, seed):
    return {n: proxies.score("random", ProxyInputs(expert=n), seed=seed) for n in order}
  first, again = random_scores(names, 3), random_scores(reversed(names), 3)
  other = random_scores(names, 4)
  assert first == again and first != other
  assert all(0 <= s < 1 for s in first.values())


def test_rank_breaks_ties_by_name_and_puts_nan_last():
  assert proxies.rank({"b": 1.0, "a": 1.0, "c": 2.0, "d": float("nan")}) == [
      ("c", 2.0), ("a", 1.0), ("b", 1.0), ("d", pytest.approx(float("nan"), nan_ok=True))]


def test_feature_proxies_prefer_informative_features():
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(4), 30)
  good = np.eye(4)[labels] * 3 + rng.standard_normal((120, 4))
  bad = rng.standard_normal((120, 4))
  for name in ("knn", "logme", "hscore", "linear_probe"):
    scores = {"good": proxies.score(name, ProxyInputs(features=good, labels=labels)),
              "bad": proxies.score(name, ProxyInputs(features=bad, labels=labels))}
    assert proxies.rank(scores)[0][0] == "good", name


_PROBE_SCRIPT = """
import json, sys
import numpy as np
from tfexperts.select import proxies
rng = np.random.default_rng(2)
inputs = proxies.ProxyInputs(features=rng.standard_normal((90, 5)), labels=rng.integers(0, 3, 90))
print(json.dumps([proxies.score("linear_probe", inputs, seed=s) for s in (1, 2, 3)]))
"""


def test_linear_probe_depends_on_its_seed_only():
  rng = np.random.default_rng(2)
  features, labels = rng.standard_normal((90, 5)), rng.integers(0, 3, 90)
  inputs = ProxyInputs(features=features, labels=labels)
  here = [proxies.score("linear_probe", inputs, seed=s) for s in (1, 2, 3)]
  assert len(set(here)) > 1  # the seed picks the holdout, so it moves the score on noise
  # The same seeds repeat in a fresh process (no hidden global random state).
  result = processes.run_python(_PROBE_SCRIPT)
  assert json.loads(result.stdout.strip().splitlines()[-1]) == here


def test_knn_options_are_passed():
  features = np.array([[0.0], [1.0], [-2.0], [10.0]])
  labels = np.array([0, 1, 2, 1])
  inputs = ProxyInputs(features=features, labels=labels)
  assert proxies.score("knn", inputs) == 0.25  # neighbours 1, 0, 0, 1 -> only point 3 right
  rng = np.random.default_rng(3)
  features, labels = rng.standard_normal((60, 3)), rng.integers(0, 2, 60)
  inputs = ProxyInputs(features=features, labels=labels)
  for options in ({"k": 5}, {"metric": "cosine"}):
    assert proxies.score("knn", inputs, **options) == knn.loo_accuracy(features, labels, **options)
  assert proxies.score("knn", inputs, k=5) != proxies.score("knn", inputs)


def test_errors_name_the_proxy_and_the_missing_field():
  with pytest.raises(ValueError, match="'label_matching' needs ProxyInputs.prior"):
    proxies.score("label_matching", ProxyInputs(upstream_probs=np.ones((2, 2)) / 2))
  with pytest.raises(ValueError, match="'leep' needs ProxyInputs.upstream_probs"):
    proxies.score("leep", ProxyInputs(features=np.ones((2, 2)), labels=[0, 1]))
  with pytest.raises(ValueError, match="Unknown proxy 'knnn'.*'knn'"):
    proxies.score("knnn", ProxyInputs())
  with pytest.raises(ValueError, match="unknown options \\['kk'\\].*'k'"):
    proxies.score("knn", ProxyInputs(features=np.ones((2, 2)), labels=[0, 1]), kk=2)
  with pytest.raises(ValueError, match="expert_index=5"):
    proxies.score("domain", ProxyInputs(domain_probs=np.ones((2, 2)) / 2, expert_index=5))
  with pytest.raises(ValueError, match="sum to 1"):
    proxies.score("leep", ProxyInputs(upstream_probs=np.ones((2, 2)), labels=[0, 1]))
