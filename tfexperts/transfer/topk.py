"""`knn_topk` selection: rank by kNN, short fine-tunes of the top k, keep the best on val200.

The short fine-tunes use one learning rate (at batch 512, as the sweep's) and a fraction of the
shortest sweep run's steps; each trains on train800 and is scored on val200, so the pick never
sees the test split. The caller then runs the full protocol on the pick. The same short runs
serve `--selection=knn_topk` and the `knn_topk` row of `all_experts` / `all_proxies`: an oracle
record scores knn_topk with exactly the budget knn_topk itself would spend (its sweep runs, at
the full budget, are never used as a stand-in).
"""
import math
import os

from tfexperts import bounds
from tfexperts.select import proxies as proxies_lib
from tfexperts.transfer import finetune
from tfexperts.transfer import protocol


def short_steps(config, steps_fraction):
  """Steps of one short run: `steps_fraction` of the shortest sweep step count (at least 1)."""
  bounds.positive_fraction("steps_fraction", steps_fraction)
  return max(1, math.ceil(min(config.steps) * steps_fraction))


def _pick(candidates, ranking):
  """The best val accuracy of the `candidates` (dicts) that did not diverge, ties to the first (kNN
  order); `ranking[0]` (kNN's own pick, whose protocol sweeps other learning rates too) when
  none is left."""
  finite = [c for c in candidates if not c.get("diverged")]
  return max(finite, key=lambda c: c["val_accuracy"])["expert"] if finite else ranking[0]


def select(experts, knn_scores, task, config, directory, strategy, *, k=3, steps_fraction=0.25,
           learning_rate=None, data_dir=None, kept=None):
  """Runs the short fine-tunes of the k best experts by kNN and picks the best on val200.

  Args:
    experts: `{expert: hub.expert_ref.ExpertRef}` of the pool.
    knn_scores: `{expert: kNN leave-one-out accuracy}` (experts absent here are not candidates).
    task: a `tfexperts.data.tasks.Task`.
    config: the `protocol.ProtocolConfig` (batch size, resolution, decay, seed, steps).
    directory: `directory/<expert>` holds each expert's runs (shared with its full protocol).
    strategy: a tf.distribute strategy.
    k: number of candidates (the top k by kNN; fewer if the pool is smaller).
    steps_fraction: see `short_steps`.
    learning_rate: at batch 512; None takes the sweep's first learning rate.
    data_dir: tfds data dir.
    kept: a dict, or None. When given, `kept[pick]` is set to the `finetune.ModelCache` holding
      the pick's model from its short run, so the pick's protocol need not load it again (the
      other candidates' models are released: at most two are held at once).

  Returns:
    A dict: `k`, `learning_rate`, `steps`, `batch_size`, `candidates` (kNN order: expert, knn,
    val_accuracy, seconds; a `diverged` run has val_accuracy None), `pick` (best val accuracy
    of the runs that did not diverge, ties to the better kNN rank; kNN's top if all diverged),
    `seconds` (sum of the short runs) and `images` (train images stepped plus val images
    evaluated by the short runs).
  """
  bounds.positive_int("k", k)
  ranking = [name for name, _ in proxies_lib.rank(knn_scores) if name in experts][:k]
  if not ranking:
    raise ValueError(f"knn_topk needs kNN scores of the pool's experts. Received scores for "
                     f"{sorted(knn_scores)}; pool {sorted(experts)}")
  steps = short_steps(config, steps_fraction)
  lr = config.learning_rates[0] if learning_rate is None else float(learning_rate)
  candidates = []
  leader = leader_cache = None  # the pick so far and its model
  for name in ranking:
    cache = finetune.ModelCache()
    result = protocol.short_run(experts[name], task, config, lr, steps,
                                os.path.join(directory, name), strategy, data_dir, cache)
    candidates.append({"expert": name, "knn": knn_scores[name],
                       "val_accuracy": result["accuracy"], "seconds": result["seconds"],
                       "val_size": result.get("num_eval_examples", 0)})
    if result.get("diverged"):
      candidates[-1]["diverged"] = True
    pick = _pick(candidates, ranking)
    if kept is not None and pick != leader:
      leader, leader_cache = pick, cache
  if kept is not None:
    kept[pick] = leader_cache
  return {"k": k, "learning_rate": lr, "steps": steps, "batch_size": config.batch_size,
          "candidates": candidates, "pick": pick,
          "seconds": sum(c["seconds"] for c in candidates),
          "images": sum(steps * config.batch_size + c["val_size"] for c in candidates)}
