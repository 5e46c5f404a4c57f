"""Score bar plots and the expert x task heat map are written as complete PNG files."""
import os

import pytest

from tfexperts.select import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_scores_writes_png(tmp_path):
  path = str(tmp_path / "plots" / "dtd.png")
  plots.plot_scores({"animals": 0.7, "vehicles": 0.4, "all": float("nan")}, path, title="dtd")
  assert open(path, "rb").read(8) == PNG_SIGNATURE
  assert os.listdir(tmp_path / "plots") == ["dtd.png"]


def test_plot_heatmap_writes_png(tmp_path):
  path = str(tmp_path / "heatmap.png")
  plots.plot_heatmap({"dtd": {"a": 0.5, "b": 0.6}, "eurosat": {"a": 0.9}}, path)
  assert open(path, "rb").read(8) == PNG_SIGNATURE


def test_plot_errors():
  with pytest.raises(ValueError, match="at least one expert"):
    plots.plot_scores({}, "unused.png")
  with pytest.raises(ValueError, match="tasks to"):
    plots.plot_heatmap({"dtd": 0.5}, "unused.png")
