"""bin/select_expert: ranks a pool of experts for a task by a transferability proxy.

Usage: bin/select_expert --task=TASK --experts=COLLECTION_DIR_OR_HANDLE[,...] [flags]

  bin/select_expert --task=shapes_fine --experts=export/shapes --proxy=all
  bin/select_expert --task=shapes_fine --experts=export/shapes --proxy=knn,logme --resolution=64
  bin/select_expert --task=caltech101 --data_dir=~/tensorflow_datasets \\
      --experts=https://tfhub.dev/google/experts/bit/r50x1/in21k/animal/1

Prints the ranking (expert, score, seconds) and writes ranking JSON, CSV and a PNG bar plot per
proxy. Each expert is fed at its own resolution (its metadata's input.resolution, else 224) unless
--resolution sets one for all. One run at a time writes a task's output directory: a second is
refused naming the first (--force_takeover).
"""
import csv
import io
import json
import os
import sys

from absl import flags

from tfexperts import defaults
from tfexperts import errors
from tfexperts import precision as precision_lib
from tfexperts.cli import checks
from tfexperts.cli import run as run_lib
from tfexperts.data import tasks
from tfexperts.hub import openvino_engine
from tfexperts.select import proxies as proxies_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("task", None, "Task registry name (tfexperts.data.tasks), "
                    "tfds:NAME[/CONFIG][:VERSION][?image=KEY&label=KEY] or folder:PATH.")
flags.DEFINE_list("experts", [], "Collection directories, hub handles (a handle may end in "
                  "?range=-1:1) and/or published collections (tfhub:NAME).")
flags.DEFINE_list("proxy", ["knn"], "Proxies to score with, or `all` (one feature pass): "
                  f"{', '.join(sorted(proxies_lib.PROXIES))}.")
flags.DEFINE_string("split", "train800", "Task split whose images are embedded.")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: tfds's own).")
flags.DEFINE_integer("resolution", None, "Image size fed to every expert (default: each expert's "
                     f"metadata input.resolution, else {defaults.RESOLUTION}).", lower_bound=1)
flags.DEFINE_integer("batch_size", defaults.EMBED_BATCH_SIZE, "Embedding batch size.",
                     lower_bound=1)
flags.DEFINE_string("cache_dir", "results/features", "Feature cache directory ('' to disable).")
flags.DEFINE_string("output_dir", "results/selection", "Where rankings and plots are written.")
flags.DEFINE_integer("seed", 0, "Seed of the random proxy.")
flags.DEFINE_string("engine", "tensorflow", "Engine computing the experts' features: "
                    f"{' or '.join(openvino_engine.ENGINES)} (CPU; `{openvino_engine.INSTALL_HINT}`"
                    "; converted once per module, cached under --cache_dir).")
flags.DEFINE_enum("precision", precision_lib.DEFAULT, precision_lib.PRECISIONS,
                  "Compute precision of the embedding (tfexperts' own modules run under Keras' "
                  "mixed policy; other modules at float32, said in a notice line).")


def proxy_names():
  """The proxies --proxy asks for (`all`: every registered proxy)."""
  return sorted(proxies_lib.PROXIES) if FLAGS.proxy == ["all"] else FLAGS.proxy


def check_flags(argv):
  """Checks every flag that needs nothing loaded; raises UserError naming a bad value."""
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {argv[1:]}")
  checks.required("task", FLAGS.task)
  checks.required("experts", FLAGS.experts, " (collection directories and/or hub handles)")
  task = tasks.get_task(FLAGS.task, FLAGS.data_dir)
  checks.known_names("split", FLAGS.split, list(task.splits))
  checks.known_names("proxy", proxy_names(), sorted(proxies_lib.PROXIES) + ["all"])
  checks.hub_handles("experts", FLAGS.experts)
  checks.existing_path("data_dir", FLAGS.data_dir)
  openvino_engine.check_engine(FLAGS.engine)


def main(argv):
  """Scores the experts on the task and writes the rankings."""
  check_flags(argv)
  run_lib.take_leases(os.path.join(FLAGS.output_dir, tasks.get_task(FLAGS.task,
                                                                    FLAGS.data_dir).name))
  from tfexperts import fileio  # pylint: disable=g-import-not-at-top
  from tfexperts.select import plots  # pylint: disable=g-import-not-at-top
  from tfexperts.select import selection  # pylint: disable=g-import-not-at-top
  names = proxy_names()
  task = tasks.get_task(FLAGS.task, FLAGS.data_dir)
  splits = task.describe_splits(FLAGS.data_dir)
  print(f"Task {FLAGS.task} ({task.name}, {task.num_classes} classes): splits {splits}")
  candidates = selection.load_candidates(FLAGS.experts)
  source = selection.FeatureSource(task, FLAGS.split, FLAGS.data_dir, FLAGS.resolution,
                                   FLAGS.batch_size, FLAGS.cache_dir or None,
                                   engine=FLAGS.engine)
  resolutions = {n: source.resolution_of(e) for n, e in zip(candidates.names(),
                                                                candidates.experts)}
  print(source.describe_resolution(candidates.experts), flush=True)
  print(f"engine: {FLAGS.engine}", flush=True)
  notice = precision_lib.device_notice(FLAGS.precision)
  print(f"precision: {FLAGS.precision}" + (f" (notice: {notice})" if notice else ""), flush=True)
  scores, seconds = selection.score(candidates, source, names, seed=FLAGS.seed,
                                    precision=FLAGS.precision)
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
                            "experts": candidates.names(), "resolution": resolutions,
                            "engine": FLAGS.engine,
                            "precision": {n: source.precision_of(e) for n, e in zip(
                                candidates.names(), candidates.experts)}})
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, ["task", "proxy", "rank", "expert", "score", "seconds"])
  writer.writeheader()
  writer.writerows(rows)
  fileio.write_bytes_atomic(os.path.join(out_dir, "ranking.csv"), buffer.getvalue().encode())
  print(json.dumps({"output_dir": out_dir, "images_embedded": source.stats.images_embedded}))


def run():
  """Console-script entry point (`select_expert`)."""
  run_lib.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
