"""LEEP (Nguyen et al., ICML 2020): log expected empirical prediction of a source model's head.

theta(x) is the source (upstream) head's softmax on a task image. With n task images:
joint P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z, P(y | z) = P(y, z) / sum_y' P(y', z), and
LEEP = 1/n sum_i log sum_z P(y_i | z) theta(x_i)_z. Upstream labels z that no image gives any
probability have P(z) = 0; their P(y | z) is undefined but always multiplied by 0, so it is taken
as 0 (the published code would produce NaN there).
"""
import numpy as np

from tfexperts.select import _checks


def leep(source_probs, labels):
  """LEEP score (<= 0; higher is better) of a source model on a task.

  Args:
    source_probs: `[n, C_s]` softmax over the source model's upstream labels, one row per image.
    labels: `[n]` task labels.
  Returns a float.
  """
  probs = _checks.probabilities(source_probs, "source_probs", ndim=2)
  classes, num_classes = _checks.class_indices(labels, probs.shape[0])
  n = probs.shape[0]
  joint = np.zeros((num_classes, probs.shape[1]))
  np.add.at(joint, classes, probs / n)
  marginal = joint.sum(axis=0, keepdims=True)
  conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
  expected = np.sum(probs * conditional[classes], axis=1)  # P(y_i | x_i) under the EEP
  return float(np.mean(np.log(expected)))
