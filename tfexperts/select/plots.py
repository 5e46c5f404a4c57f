"""PNG plots of selection results: per-expert proxy scores for one task, expert x task heat map.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, so no global backend state)
and written atomically through tf.io.gfile.
"""
import io
import math

import numpy as np
from matplotlib.backends import backend_agg
from matplotlib import figure as mpl_figure

from tfexperts import fileio


def _save(fig, path, dpi):
  backend_agg.FigureCanvasAgg(fig)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
  return fileio.write_bytes_atomic(path, buffer.getvalue())


def plot_scores(scores, path, title="", ylabel="score", dpi=100):
  """Bar plot of `{expert: score}` for one task, best first, the best bar highlighted.

  NaN scores are drawn as missing bars. Writes a PNG to `path`; returns `path`.
  """
  if not scores:
    raise ValueError("`scores` must map at least one expert to a score. Received: {}")
  ranked = sorted(scores.items(), key=lambda kv: (
      math.isnan(kv[1]), -kv[1] if not math.isnan(kv[1]) else 0.0, str(kv[0])))
  names = [str(name) for name, _ in ranked]
  values = np.array([value for _, value in ranked], dtype=np.float64)
  fig = mpl_figure.Figure(figsize=(max(4.0, 0.45 * len(names) + 1.5), 4.0))
  ax = fig.add_subplot()
  colors = ["tab:orange" if i == 0 else "tab:blue" for i in range(len(names))]
  ax.bar(np.arange(len(names)), np.nan_to_num(values, nan=0.0), color=colors)
  ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  finite = values[np.isfinite(values)]
  if finite.size and finite.min() >= 0 and finite.max() <= 1:
    ax.set_ylim(0, 1)
  return _save(fig, path, dpi)


def plot_heatmap(accuracy, path, title="kNN accuracy", dpi=100):
  """Heat map of `{task: {expert: value}}` with experts as rows and tasks as columns.

  Missing (task, expert) pairs are blank; cells are annotated when the grid is small. Writes a PNG
  to `path`; returns `path`.
  """
  if not accuracy or not all(isinstance(row, dict) for row in accuracy.values()):
    raise ValueError("`accuracy` must map tasks to {expert: value} dicts. "
                     f"Received: {type(accuracy).__name__} with {len(accuracy or {})} tasks")
  tasks = list(accuracy)
  experts = sorted({e for row in accuracy.values() for e in row}, key=str)
  grid = np.full((len(experts), len(tasks)), np.nan)
  for j, task in enumerate(tasks):
    for i, expert in enumerate(experts):
      if expert in accuracy[task]:
        grid[i, j] = accuracy[task][expert]
  fig = mpl_figure.Figure(figsize=(max(4.0, 0.6 * len(tasks) + 3), max(3.0, 0.35 * len(experts)
                                                                        + 1.5)))
  ax = fig.add_subplot()
  image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis")
  fig.colorbar(image, ax=ax)
  ax.set_xticks(np.arange(len(tasks)), [str(t) for t in tasks], rotation=60, ha="right")
  ax.set_yticks(np.arange(len(experts)), [str(e) for e in experts])
  ax.set_title(title)
  if grid.size <= 400:
    for (i, j), value in np.ndenumerate(grid):
      if np.isfinite(value):
        light = image.norm(value) > 0.6  # viridis is light at the top: dark text there
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                color="black" if light else "white")
  return _save(fig, path, dpi)
