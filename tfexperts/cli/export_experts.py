"""bin/export_experts: a training workdir's finished models as a collection of TF-Hub modules.

Usage: bin/export_experts --workdir=DIR [--collection=NAME] [--export_dir=DIR] [flags]
       bin/export_experts --artifact=RUN_DIR/artifact [--expert=HANDLE] --output=DIR

  bin/export_experts --workdir=runs/shapes --collection=shapes     # -> export/shapes/<module>/1/
  bin/export_experts --workdir=gs://bucket/run --export_dir=gs://bucket/export --version=2

Every finished model below --workdir (baseline, full experts, adapter and patch banks, the expert
prediction network) becomes modules under <export_dir>/<collection>/<module>/<version>/, each a
reusable SavedModel with assets/metadata.json, checked against the Keras model after writing; the
collection's index.json lists them all (see tfexperts/hub/collection.py for the module names).
A rerun resumes an interrupted export: modules already written are checked and kept, missing ones
are written, and temp directories a killed run left are removed; --overwrite rewrites them all.
One export at a time writes a collection: a second is refused naming the first (--force_takeover).
Then: tfexperts.hub.load.load_collection("export/shapes") or
hub.KerasLayer("export/shapes/baseline/1").

--artifact exports one task module instead: the expert (--expert, default the module the
artifact records) with what a `vtab_eval --finetune=patch|adapter|head` run trained (its
artifact directory), as one hub module at --output whose `__call__` returns the task's logits:
hub.KerasLayer(OUTPUT, trainable=True) predicts and fine-tunes. An artifact trained on another
module than --expert is refused, naming both (API: tfexperts.transfer.export).
"""
import os
import sys

from absl import flags

from tfexperts import errors
from tfexperts.cli import checks
from tfexperts.cli import run as run_lib

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Training workdir whose finished models are exported.")
flags.DEFINE_string("collection", None, "Collection name (default: the workdir's base name).")
flags.DEFINE_string("export_dir", "export", "Root directory of exported collections.")
flags.DEFINE_integer("version", 1, "Version number of every module written.", lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Rewrite modules that already exist at --version (without "
                  "it they are checked against their finished model and kept).")
flags.DEFINE_string("artifact", None, "A fine-tuning artifact directory (a non-full vtab_eval "
                    "run's artifact/) to export with its expert as one task module at --output.")
flags.DEFINE_string("expert", None, "--artifact: the expert module's handle (default: the one "
                    "the artifact records).")
flags.DEFINE_string("output", None, "--artifact: the task module's directory.")


def export_artifact():
  """Exports --expert + --artifact as one task module at --output; prints where."""
  checks.existing_path("artifact", FLAGS.artifact)
  checks.required("output", FLAGS.output, " (the task module's directory)")
  # No lease: it would create --output, and the module is written to a temp directory renamed
  # into place, so two exports cannot interleave their files.
  from tfexperts import transfer  # pylint: disable=g-import-not-at-top
  from tfexperts.transfer import artifact  # pylint: disable=g-import-not-at-top
  expert = FLAGS.expert or artifact.read(FLAGS.artifact)[0]["expert"]["handle"]
  transfer.export(expert, FLAGS.artifact, FLAGS.output, FLAGS.overwrite)
  print(f"Exported {expert} + {FLAGS.artifact} to {FLAGS.output}", flush=True)


def main(argv):
  """Exports the workdir's finished models with the parsed flags; prints the modules written.

  Raises UserError when the workdir cannot be exported as asked (missing, no finished models,
  clashing names, modules already exported without --overwrite); a module that does not match
  its Keras model raises an internal error.
  """
  if len(argv) > 1:
    raise errors.UserError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.artifact:
    export_artifact()
    return
  checks.required("workdir", FLAGS.workdir, " (a training workdir with finished models)")
  checks.existing_path("workdir", FLAGS.workdir)
  name = FLAGS.collection or os.path.basename(FLAGS.workdir.rstrip("/"))
  run_lib.take_leases(os.path.join(FLAGS.export_dir, name))
  from tfexperts.hub import collection  # pylint: disable=g-import-not-at-top
  entries = collection.export_workdir(FLAGS.workdir, FLAGS.export_dir, FLAGS.collection,
                                      FLAGS.version, FLAGS.overwrite)
  print(f"Exported {len(entries)} modules to {os.path.join(FLAGS.export_dir, name)}:")
  print(collection.format_entries(entries), flush=True)


def run():
  """Console-script entry point (`export_experts`)."""
  run_lib.run(sys.modules[__name__])


if __name__ == "__main__":
  run()
