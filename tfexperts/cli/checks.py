"""Flag checks that load nothing (no TensorFlow, no model, no dataset), run first by every binary.

Each raises `tfexperts.errors.UserError` naming the flag, the value received and what is valid.
Remote paths (gs://, URLs) are left to the library, which checks them when it reads them.
"""
import os

from absl import flags

from tfexperts import errors
from tfexperts.hub import local_pool

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
  if path and local_pool.is_local(path) and not os.path.exists(local_pool.local_path(path)):
    raise errors.UserError(f"--{flag}: {path!r} does not exist.")


def hub_handles(flag, specs):
  """Checks each local spec of flag `flag` is a SavedModel directory or a collection with a sound
  index.json; returns the collections' module names, or None (`hub.local_pool.module_names`)."""
  return local_pool.module_names(specs, f"--{flag}")
