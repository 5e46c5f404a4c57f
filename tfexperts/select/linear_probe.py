"""Linear-probe accuracy: logistic regression on standardised features, scored on a held-out split.

A seeded split (stratified when every class has at least 2 images and the holdout can hold one of
each) keeps the score deterministic; it is the most expensive proxy here (one L-BFGS fit).
"""
import numpy as np

from tfexperts.select import _checks


def _split(classes, num_classes, holdout_fraction, seed):
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top  (slow import)
  n = len(classes)
  counts = np.bincount(classes, minlength=num_classes)
  num_holdout = int(np.ceil(holdout_fraction * n))
  # Stratifying needs 2+ images per class and room for every class on both sides.
  can_stratify = counts.min() >= 2 and num_classes <= num_holdout <= n - num_classes
  return model_selection.train_test_split(np.arange(n), test_size=num_holdout, random_state=seed,
                                          stratify=classes if can_stratify else None)


def linear_probe_accuracy(features, labels, holdout_fraction=0.2, seed=0, c=1.0, max_iter=1000):
  """Holdout accuracy of an L2-regularised logistic regression trained on the rest.

  Args:
    features: `[n, d]` features; labels: `[n]` labels with at least 2 classes.
    holdout_fraction: fraction of images held out (0 < f < 1; at least 1 image each side).
    seed: seed of the split. c: inverse L2 strength. max_iter: L-BFGS iterations.
  Returns the holdout accuracy, a float in [0, 1].
  """
  features = _checks.features_2d(features)
  classes, num_classes = _checks.class_indices(labels, features.shape[0])
  if num_classes < 2:
    raise ValueError(f"`labels` must have at least 2 classes. Received: {num_classes} class")
  n = len(classes)
  if not 0 < holdout_fraction < 1 or not 1 <= np.ceil(holdout_fraction * n) <= n - 1:
    raise ValueError("`holdout_fraction` must be in (0, 1) and leave at least one image on each "
                     f"side. Received: holdout_fraction={holdout_fraction!r} with {n} images")
  train, holdout = _split(classes, num_classes, holdout_fraction, seed)
  if len(np.unique(classes[train])) < 2:
    raise ValueError("The training split has a single class; use more images or a smaller "
                     f"`holdout_fraction`. Received: holdout_fraction={holdout_fraction!r}")
  from sklearn import linear_model, pipeline, preprocessing  # pylint: disable=g-import-not-at-top
  model = pipeline.make_pipeline(
      preprocessing.StandardScaler(),
      linear_model.LogisticRegression(C=c, max_iter=max_iter))
  model.fit(features[train], classes[train])
  return float(np.mean(model.predict(features[holdout]) == classes[holdout]))
