"""bin/select_expert: ranks a pool of experts for a task by a transferability proxy.

  bin/select_expert --task=shapes_fine --experts=export/demo [--proxy=knn|all|NAME,...]
Prints the ranking (expert, score, seconds), writes ranking JSON, CSV and a PNG bar plot per proxy.
"""
import csv
import io
import json
import os

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("task", None, "Task registry name (tfexperts.data.tasks), "
                    "tfds:NAME[/CONFIG][:VERSION][?image=KEY&label=KEY] or folder:PATH.")
flags.DEFINE_list("experts", [], "Collection directories, hub handles (a handle may end in "
                  "?range=-1:1) and/or published collections (tfhub:NAME).")
flags.DEFINE_list("proxy", ["knn"], "Proxies to score with, or `all` (one feature pass).")
flags.DEFINE_string("split", "train800", "Task split whose images are embedded.")
flags.DEFINE_string("data_dir", None, "tfds data dir.")
flags.DEFINE_integer("resolution", 64, "Image size fed to the experts.")
flags.DEFINE_integer("batch_size", 64, "Embedding batch size.")
flags.DEFINE_string("cache_dir", "results/features", "Feature cache directory ('' to disable).")
flags.DEFINE_string("output_dir", "results/selection", "Where rankings and plots are written.")
flags.DEFINE_integer("seed", 0, "Seed of the random proxy.")


def main(argv):
  """Scores the experts on the task and writes the rankings."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.task or not FLAGS.experts:
    raise app.UsageError("--task and --experts are required.")
  from tfexperts import fileio  # pylint: disable=g-import-not-at-top
  from tfexperts.data import builders  # pylint: disable=g-import-not-at-top,unused-import
  from tfexperts.data import tasks  # pylint: disable=g-import-not-at-top
  from tfexperts.select import plots  # pylint: disable=g-import-not-at-top
  from tfexperts.select import proxies as proxies_lib  # pylint: disable=g-import-not-at-top
  from tfexperts.select import selection  # pylint: disable=g-import-not-at-top
  try:
    task = tasks.get_task(FLAGS.task, FLAGS.data_dir)
    splits = task.describe_splits(FLAGS.data_dir)
    print(f"Task {FLAGS.task} ({task.name}, {task.num_classes} classes): splits {splits}")
    names = sorted(proxies_lib.PROXIES) if FLAGS.proxy == ["all"] else FLAGS.proxy
    candidates = selection.load_candidates(FLAGS.experts)
    source = selection.FeatureSource(task, FLAGS.split, FLAGS.data_dir, FLAGS.resolution,
                                     FLAGS.batch_size, FLAGS.cache_dir or None)
    scores, seconds = selection.score(candidates, source, names, seed=FLAGS.seed)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from None
  out_dir = os.path.join(FLAGS.output_dir, task.name)
  rows = []
  for proxy in names:
    ranking = proxies_lib.rank(scores[proxy])
    print(f"\n{proxy} on {FLAGS.task} ({seconds[proxy] + seconds['features']:.2f}s "
          f"incl. features {seconds['features']:.2f}s):")
    for position, (expert, value) in enumerate(ranking, 1):
      print(f"  {position:2d}. {expert:30s} {value: .4f}")
      rows.append({"task": FLAGS.task, "proxy": proxy, "rank": position, "expert": expert,
                   "score": value, "seconds": seconds[proxy]})
    if ranking:
      plots.plot_scores(dict(ranking), os.path.join(out_dir, f"{proxy}.png"),
                        title=f"{proxy} on {FLAGS.task}", ylabel=proxy)
  fileio.write_json_atomic(os.path.join(out_dir, "ranking.json"),
                           {"task": task.name, "task_spec": FLAGS.task, "splits": splits,
                            "split": FLAGS.split, "scores": scores,
                            "seconds": seconds, "images_embedded": source.stats.images_embedded,
                            "experts": candidates.names()})
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, ["task", "proxy", "rank", "expert", "score", "seconds"])
  writer.writeheader()
  writer.writerows(rows)
  fileio.write_bytes_atomic(os.path.join(out_dir, "ranking.csv"), buffer.getvalue().encode())
  print(json.dumps({"output_dir": out_dir, "images_embedded": source.stats.images_embedded}))


if __name__ == "__main__":
  app.run(main)
