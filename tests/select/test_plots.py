"""Score bar plots and the expert x task heat map are written as complete PNG files."""
import os

import matplotlib
import numpy as np
import PIL.Image
import pytest

from tfexperts.select import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plot_scores_writes_png(tmp_path):
  path = str(tmp_path / "plots" / "dtd.png")
  plots.plot_scores({"animals": 0.7, "vehicles": 0.4, "all": float("nan")}, path, title="dtd")
  assert open(path, "rb").read(8) == PNG_SIGNATURE
  assert os.listdir(tmp_path / "plots") == ["dtd.png"]


def _near(image, rgb, tolerance=3):
  return np.all(np.abs(image.astype(int) - rgb) <= tolerance, axis=-1)


def test_plot_heatmap_draws_each_cell_in_its_value_colour(tmp_path):
  path = str(tmp_path / "heatmap.png")
  plots.plot_heatmap({"dtd": {"a": 0.0, "b": 1.0}, "eurosat": {"a": 0.5}}, path)
  assert open(path, "rb").read(8) == PNG_SIGNATURE
  image = np.asarray(PIL.Image.open(path).convert("RGB"))
  viridis = matplotlib.colormaps["viridis"]
  masks = {v: _near(image, np.round(np.array(viridis(v)[:3]) * 255))
           for v in (0.0, 0.25, 0.5, 1.0)}  # floats: viridis(1) would be the LUT's second entry
  # Each of the three cells fills a block of its colour (the colour bar alone holds a few rows);
  # the missing (eurosat, b) cell is left blank, so no fourth block of another colour appears.
  assert min(masks[v].sum() for v in (0.0, 0.5, 1.0)) > 2000, {v: m.sum() for v, m in
                                                                  masks.items()}
  assert masks[0.25].sum() < 500
  # Experts are rows, tasks columns: (a, dtd) top left, (b, dtd) below it, (a, eurosat) right.
  (row0, col0), (row1, col1), (row5, col5) = (
      np.argwhere(masks[v]).mean(axis=0) for v in (0.0, 1.0, 0.5))
  assert row1 > row0 + 50 and abs(col1 - col0) < 10
  assert col5 > col0 + 50 and abs(row5 - row0) < 10


def test_plot_errors():
  with pytest.raises(ValueError, match="at least one expert"):
    plots.plot_scores({}, "unused.png")
  with pytest.raises(ValueError, match="tasks to"):
    plots.plot_heatmap({"dtd": 0.5}, "unused.png")
