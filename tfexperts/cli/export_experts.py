"""bin/export_experts: a training workdir's finished models as a collection of TF-Hub modules.

Every finished model below --workdir (baseline, full experts, adapter and patch banks, the expert
prediction network) becomes modules under <export_dir>/<collection>/<module>/<version>/, each a
reusable SavedModel with assets/metadata.json, checked against the Keras model after writing; the
collection's index.json lists them all (see tfexperts/hub/collection.py for the module names).
A rerun resumes an interrupted export: modules already written are checked and kept, missing ones
are written, and temp directories a killed run left are removed; --overwrite rewrites them all.

Example:
  bin/export_experts --workdir=/tmp/run                 # -> export/run/<module>/1/
  bin/export_experts --workdir=gs://bucket/run --export_dir=gs://bucket/export --version=2
Then: tfexperts.hub.load.load_collection("export/run"), or hub.KerasLayer("export/run/baseline/1").
"""
from absl import app
from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Training workdir whose finished models are exported.")
flags.DEFINE_string("collection", None, "Collection name (default: the workdir's base name).")
flags.DEFINE_string("export_dir", "export", "Root directory of exported collections.")
flags.DEFINE_integer("version", 1, "Version number of every module written (positive).")
flags.DEFINE_bool("overwrite", False, "Rewrite modules that already exist at --version (without "
                  "it they are checked against their finished model and kept).")


def format_entries(entries):
  """A printable table of index entries: module, kind, handle, feature size, logits."""
  rows = [("module", "kind", "handle", "features", "logits")]
  for e in entries:
    outputs = e["metadata"].get("outputs") or {}
    rows.append((e["name"], e["kind"], e["handle"], str(outputs.get("pre_logits", "")),
                 str(outputs.get("logits", ""))))
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv):
  """Runs the export with the parsed flags.

  Returns 0, or 1 after printing the reason when the workdir cannot be exported as asked (no
  finished models, clashing names, an existing module that differs from its finished model
  without --overwrite). Raises
  app.UsageError on bad arguments; a module that does not match its Keras model raises.
  """
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (a training workdir with finished models).")
  # Heavy imports here, so --help answers at once.
  import os  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tfexperts.hub import collection  # pylint: disable=g-import-not-at-top
  try:
    entries = collection.export_workdir(FLAGS.workdir, FLAGS.export_dir, FLAGS.collection,
                                        FLAGS.version, FLAGS.overwrite)
  except (ValueError, FileExistsError, FileNotFoundError) as e:
    print(f"export_experts: error: {e}", file=sys.stderr, flush=True)
    return 1
  name = FLAGS.collection or os.path.basename(FLAGS.workdir.rstrip("/"))
  print(f"Exported {len(entries)} modules to {os.path.join(FLAGS.export_dir, name)}:")
  print(format_entries(entries), flush=True)
  return 0
