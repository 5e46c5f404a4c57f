"""Flag checks that load nothing (no TensorFlow, no model, no dataset), run first by every binary.

Each raises `tfexperts.errors.UserError` naming the flag, the value received and what is valid.
Remote paths (gs://, URLs) are left to the library, which checks them when it reads them.
"""
import json
import os
import re

from absl import flags

from tfexperts import errors

SAVED_MODEL_FILE = "saved_model.pb"  # tf.saved_model.SAVED_MODEL_FILENAME_PB
INDEX_FILE = "index.json"  # tfexperts.hub.index.INDEX_FILE


def is_local(path):
  """True for a path on this machine (a plain path or file:// URL), False for gs://, https://,
  tfhub:NAME and other scheme-prefixed handles."""
  return path.startswith("file://") or not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path)


def _local(path):
  path = path.split("?")[0]  # "?range=..." options are not part of the path
  return path[len("file://"):] if path.startswith("file://") else path


def required(flag, value, hint=""):
  """Raises UserError when flag `flag` has no value."""
  if not value:
    raise errors.UserError(f"--{flag} is required{hint}.")


def known_names(flag, values, valid):
  """Raises UserError unless every name in `values` (a str or list) is in `valid`."""
  values = [values] if isinstance(values, str) else list(values)
  unknown = [v for v in values if v not in valid]
  if unknown:
    shown = ", ".join(unknown)
    raise errors.UserError(f"--{flag}: unknown {shown!r}. Choose from: {', '.join(valid)}."
                           f"{errors.did_you_mean(unknown[0], valid)}")


def numbers(flag, values, kind, minimum=0, inclusive=False):
  """Parses the list flag `values` as `kind` (int or float), each > minimum (>= if inclusive)."""
  parsed = []
  for v in values:
    try:
      number = kind(v)
    except ValueError:
      raise errors.UserError(f"--{flag}: {v!r} is not a{'n integer' if kind is int else ' number'}"
                             ".") from None
    if number != number or number < minimum or (number == minimum and not inclusive):
      raise errors.UserError(f"--{flag}: {v!r} must be {'>=' if inclusive else '>'} {minimum}.")
    parsed.append(number)
  return parsed


def must_be_positive(*flag_names):
  """Registers absl validators: each float flag must be > 0 (checked while flags are parsed)."""
  for name in flag_names:
    flags.register_validator(name, lambda v: v is None or v > 0, message="must be > 0")


def existing_path(flag, path):
  """Raises UserError when the local `path` of flag `flag` does not exist."""
  if path and is_local(path) and not os.path.exists(_local(path)):
    raise errors.UserError(f"--{flag}: {path!r} does not exist.")


def _collection_names(flag, index_file):
  """Module names of a local collection index; each listed module directory must exist."""
  try:
    with open(index_file) as f:
      modules = json.load(f)["modules"]
    entries = [(m["name"], m["handle"]) for m in modules]
  except (ValueError, KeyError, TypeError) as e:
    raise errors.UserError(f"--{flag}: {index_file!r} is not a valid collection index "
                           f"({type(e).__name__}: {e}).") from None
  for name, handle in entries:
    if not os.path.isdir(os.path.join(os.path.dirname(index_file), handle)):
      raise errors.UserError(f"--{flag}: {index_file!r} lists module {name!r} at {handle!r}, "
                             "which does not exist (a moved or partly deleted collection).")
  return [name for name, _ in entries]


def hub_handles(flag, specs):
  """Checks each local spec is a SavedModel directory or a collection with a sound index.json.

  Returns the module names of the collections when every spec is a local collection, else None
  (names of single or remote modules are only known once their metadata is read).
  """
  names = []
  for spec in specs:
    if not is_local(spec):
      names = None
      continue
    existing_path(flag, spec)
    path = _local(spec)
    index_file = os.path.join(path, INDEX_FILE)
    if os.path.isfile(index_file):
      found = _collection_names(flag, index_file)
      names = None if names is None else names + found
    elif os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
      names = None
    else:
      raise errors.UserError(f"--{flag}: {spec!r} is neither a hub module (no {SAVED_MODEL_FILE}) "
                             f"nor a collection of them (no {INDEX_FILE}).")
  return names
