"""Hand-made results records for tests of the report and of writing records."""
from tfexperts.transfer import records


def make(task="t", group="natural", selection="knn", accuracy=0.5, **fields):
  """A valid `records.ResultRecord` of `task` with the given accuracy; `fields` replace the
  defaults (one expert "x", no scores, no intervals)."""
  return records.ResultRecord(**{
      "task": task, "task_spec": task, "splits": {}, "group": group, "selection": selection,
      "finetune": "full", "chosen": ["x"], "proxy_scores": {}, "picks": {}, "per_expert": {},
      "test_accuracy": accuracy, "diverged": False, "test_interval": None, "test_size": None,
      "config": {}, "times": {"selection_seconds": 1.0, "finetune_seconds": 2.0},
      "images_embedded": 0, "versions": {}, "num_experts": 1, "proxy_seconds": {},
      "resolution": {}, "precision": {}, **fields})
