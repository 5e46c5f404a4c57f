"""How every binary runs: flag parsing, `--help`, and the one error convention.

* `--help` (also `-h`, `--helpshort`) prints the binary's usage block (its module docstring) and
  its own flags with their help and defaults, then exits 0. `--helpfull` also lists absl's flags.
* User errors exit with status 2 (`EXIT_USER_ERROR`) after one or a few lines
  `<binary>: error: <message>` on stderr, and no traceback. They are a bad or unknown flag, a
  missing `--flagfile`, and every `tfexperts.errors.UserError` (bad value, unknown task / proxy /
  expert / preset, missing or malformed file, unprepared data, unreachable TPU, ...).
  `--verbose` (or the environment variable `TFEXPERTS_VERBOSE=1`) shows their traceback as well.
* A run stopped by SIGTERM (preemption, `errors.PreemptedError`) has written a checkpoint at its
  current step: `<binary>: preempted: <message>` on stderr, exit status 75 (`EXIT_PREEMPTED`,
  EX_TEMPFAIL: try again). Rerunning the same command resumes.
* Any other exception is an internal error and keeps Python's traceback (exit status 1).
* Each binary holds an exclusive lease on the directories it writes (`take_leases`); a second run
  on one of them is a user error naming the first, unless --force_takeover.
"""
import os
import re
import sys

from absl import app
from absl import flags

from tfexperts import errors
from tfexperts import startup_noise

FLAGS = flags.FLAGS
EXIT_USER_ERROR = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, the same command may be rerun
VERBOSE_ENV = "TFEXPERTS_VERBOSE"
HELP_ARGS = ("-h", "-help", "--help", "-helpshort", "--helpshort", "-?")

flags.DEFINE_bool("verbose", False, f"Show the traceback of user errors too (or set "
                  f"{VERBOSE_ENV}=1); also prints the Python and tfexperts in use.")
flags.DEFINE_bool("force_takeover", False, "Take the output directory's lease even from a run "
                  "that still looks alive (only when you know it is gone: two writers would "
                  "interleave their files).")


def multi_worker_chief(tf_config=None):
  """False only on a non-chief worker of the TF_CONFIG cluster (`tf_config`, default the
  environment's): a `worker` when the cluster has a `chief`, or a worker with index > 0, or a
  parameter server / evaluator. Mirrors tfexperts.train.strategy.is_chief without TensorFlow."""
  import json  # pylint: disable=g-import-not-at-top
  text = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
  try:
    config = json.loads(text) if text else {}
    task_type, task_id = config["task"]["type"], int(config["task"].get("index", 0))
  except (ValueError, KeyError, TypeError):
    return True
  if task_type == "chief":
    return True
  return task_type == "worker" and task_id == 0 and "chief" not in config.get("cluster", {})


def take_leases(*directories):
  """Takes the exclusive lease (tfexperts.lease) on each output directory given (None and
  duplicates skipped) for the rest of the run, honouring --force_takeover; returns the leases.

  Called first thing after the flag checks, before TensorFlow loads, so a second run on the same
  directory is refused within a second or two with the holder's host, pid, start and command.
  The non-chief workers of a multi-worker cluster (TF_CONFIG) run the same command on the same
  directories but write only their own temp files: they take no lease.
  """
  from tfexperts import lease  # pylint: disable=g-import-not-at-top
  if not multi_worker_chief():
    return []
  unique = list(dict.fromkeys(d.rstrip("/") for d in directories if d))
  return lease.acquire_all(unique, force=FLAGS.force_takeover)


def verbose():
  """True when `--verbose` or `TFEXPERTS_VERBOSE=1` asks for tracebacks of user errors."""
  flag = FLAGS["verbose"].value if FLAGS.is_parsed() else False
  return flag or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def preempted(prog, message):
  """Prints `<prog>: preempted: <message>` on stderr and exits with EXIT_PREEMPTED."""
  sys.stderr.write(f"{prog}: preempted: {message}\n")
  sys.stderr.flush()
  sys.exit(EXIT_PREEMPTED)


def fail(prog, message):
  """Prints `<prog>: error: <message>` on stderr and exits with EXIT_USER_ERROR."""
  sys.stderr.write(f"{prog}: error: {message}\n")
  sys.stderr.flush()
  sys.exit(EXIT_USER_ERROR)


BINARIES = ("train_experts", "export_experts", "select_expert", "vtab_eval")


def usage_as_run(doc, argv0):
  """Returns usage text `doc` with binaries named as the user runs them.

  The docstrings write `bin/NAME` (a clone's launcher, `bin/_launch.py` beside it); when the
  program was started as an installed console script (`argv0` not in such a folder), every
  `bin/NAME` becomes `NAME`, which is what the user types there.
  """
  from_clone = os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(argv0)), "_launch.py"))
  if from_clone:
    return doc
  return re.sub(r"(?<![\w/.])bin/(%s)\b" % "|".join(BINARIES), r"\1", doc)


def help_text(module, prog):
  """The `--help` text of the binary whose flags are defined in `module`: usage, then flags."""
  own = FLAGS.module_help(module.__name__).strip().split("\n", 1)[-1]  # drop the module name
  common = FLAGS.module_help(__name__).strip().split("\n", 1)[-1]
  usage = usage_as_run((module.__doc__ or "").strip(), sys.argv[0])
  return (f"{usage}\n\nflags of {prog}:\n{own}\n\ncommon flags:\n"
          f"{common}\n  --flagfile: Read flags from a file, one --name=value a line.\n"
          "  --helpfull: Also list absl's own flags.\n")


def _parse_flags(module, prog, argv):
  args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
  if any(a in HELP_ARGS for a in args):
    sys.stdout.write(help_text(module, prog))
    sys.exit(0)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(prog, e)


def run(module):
  """Runs `module.main(argv)` as a binary with the flags, help and error convention above."""
  prog = os.path.basename(sys.argv[0])
  startup_noise.filter_stderr()

  def main(argv):
    if verbose():
      import tfexperts  # pylint: disable=g-import-not-at-top
      sys.stderr.write(f"{prog}: python {sys.executable}, tfexperts from "
                       f"{os.path.dirname(os.path.abspath(tfexperts.__file__))}\n")
    try:
      return module.main(argv)
    except (errors.UserError, app.UsageError) as e:
      if verbose():
        raise
      fail(prog, e)
    except errors.PreemptedError as e:
      if verbose():  # the traceback, but still the exit status a scheduler retries on
        import traceback  # pylint: disable=g-import-not-at-top
        traceback.print_exc()
      preempted(prog, e)

  app.run(main, flags_parser=lambda argv: _parse_flags(module, prog, argv))
