"""A workdir's recorded settings: what its checkpoints and finished models mean.

The first run of a workdir records its settings (`config.json`, and `flags.txt` usable as
--flagfile). A later run compares its own with them: a difference in a setting that changes the
meaning of what is on disk (dataset, hierarchy, model, resolution, expert domains, slices,
optimisation) is refused with the list of differences, since resuming would silently mix the old
checkpoints and expert indices with the new settings. Settings that only change how the run goes
(`HARMLESS`: logging, checkpoint interval, devices, which stages run) and more training steps
(`EXTENDABLE`) are allowed, logged, and recorded for the next run.
"""
import json
import os

import tensorflow as tf
from absl import logging

from tfexperts import fileio
from tfexperts.errors import UserError

SETTINGS_FILE = "config.json"
FLAGS_FILE = "flags.txt"
HARMLESS = frozenset({"workdir", "stage", "tpu", "tpu_timeout", "strategy", "data_dir",
                      "prepare_offline", "checkpoint_every", "log_every", "steps_per_loop",
                      "deterministic"})
EXTENDABLE = frozenset({"baseline_steps", "expert_steps"})  # may grow, never shrink


def differences(recorded, current):
  """`[(name, recorded value, current value)]` for every setting that differs, sorted by name."""
  names = sorted(set(recorded) | set(current))
  return [(n, recorded.get(n), current.get(n)) for n in names if recorded.get(n) != current.get(n)]


def _refused(name, old, new):
  if name in HARMLESS:
    return False
  if name in EXTENDABLE:
    return not (isinstance(old, int) and isinstance(new, int) and new >= old)
  return True


def _write(workdir, settings, flag_lines):
  fileio.write_json_atomic(os.path.join(workdir, SETTINGS_FILE), settings)
  if flag_lines is not None:
    fileio.write_bytes_atomic(os.path.join(workdir, FLAGS_FILE),
                              ("\n".join(flag_lines) + "\n").encode())


def check_and_record(workdir, settings, flag_lines=None, write=True):
  """Checks `settings` (a JSON-ready `{name: value}` dict) against the workdir's record.

  Args:
    workdir: the training workdir (local or gs://).
    settings: this run's settings (the binary's flags; unset ones may be left out).
    flag_lines: this run's flags serialized as `--name=value` lines, written to flags.txt.
    write: record the settings (the chief does; other workers only check).

  Returns:
    The allowed differences `[(name, old, new)]` (empty on a first run). Raises `UserError` listing
    every refused difference, leaving the record unchanged.
  """
  path = os.path.join(workdir, SETTINGS_FILE)
  if not tf.io.gfile.exists(path):
    if write:
      _write(workdir, settings, flag_lines)
    return []
  try:
    recorded = fileio.read_json(path)
  except (ValueError, json.JSONDecodeError) as e:
    raise UserError(f"The workdir's settings file {path!r} is not valid JSON ({e}); restore it "
                    "or start a new workdir.") from e
  diffs = differences(recorded, settings)
  refused = [d for d in diffs if _refused(*d)]
  if refused:
    lines = "\n".join(f"  --{n}: {old!r} on disk, {new!r} now" for n, old, new in refused)
    raise UserError(f"Workdir {workdir!r} was created with other settings; resuming would mix "
                    f"them with what is on disk. Differences:\n{lines}\nRun with the recorded "
                    f"settings (--flagfile={os.path.join(workdir, FLAGS_FILE)}) or use a new "
                    "--workdir. (More --baseline_steps/--expert_steps and logging, checkpoint "
                    "and device flags may change.)")
  for name, old, new in diffs:
    logging.info("Workdir %s: --%s changed from %r to %r (allowed).", workdir, name, old, new)
  if write and diffs:
    _write(workdir, settings, flag_lines)
  return diffs
