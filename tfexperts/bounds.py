"""The common argument bounds, checked one way by every config and constructor.

Each check returns the value it was given and raises `errors.UserError` (a `ValueError`) naming
the argument, the value received and what is valid, e.g. "`batch_size` must be a positive
integer. Received: batch_size=0". Imports nothing heavy, so configs check before TensorFlow loads.
"""
import numbers

from tfexperts import errors


def _is_int(value):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
  return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value


def _fail(name, value, valid, allow_none):
  raise errors.UserError(f"`{name}` must be {valid}{' or None' if allow_none else ''}. "
                         f"Received: {name}={value!r}")


def positive_int(name, value, allow_none=False):
  """`value` if it is an int >= 1 (or None when `allow_none`); else UserError naming `name`."""
  if not (allow_none and value is None) and not (_is_int(value) and value >= 1):
    _fail(name, value, "a positive integer", allow_none)
  return value


def non_negative_int(name, value):
  """`value` if it is an int >= 0; else UserError naming `name`."""
  if not (_is_int(value) and value >= 0):
    _fail(name, value, "an integer >= 0", False)
  return value


def positive_number(name, value, allow_none=False):
  """`value` if it is a real number > 0 (or None when `allow_none`); else UserError."""
  if not (allow_none and value is None) and not (_is_number(value) and value > 0):
    _fail(name, value, "a number > 0", allow_none)
  return value


def non_negative_number(name, value):
  """`value` if it is a real number >= 0; else UserError naming `name`."""
  if not (_is_number(value) and value >= 0):
    _fail(name, value, "a number >= 0", False)
  return value


def fraction(name, value):
  """`value` if it is a real number in [0, 1); else UserError naming `name`."""
  if not (_is_number(value) and 0 <= value < 1):
    _fail(name, value, "a number in [0, 1)", False)
  return value


def one_of(name, value, valid):
  """`value` if it is in `valid` (a sequence); else UserError listing the choices."""
  if value not in valid:
    raise errors.UserError(f"`{name}` must be one of {list(valid)}. Received: {name}={value!r}"
                           f"{errors.did_you_mean(value, valid) if isinstance(value, str) else ''}")
  return value


def all_of(name, values, valid):
  """`values` (a list) if each is in `valid`; else UserError naming the first that is not."""
  if not isinstance(values, (list, tuple)):
    raise errors.UserError(f"`{name}` must be a list. Received: {name}={values!r}")
  for value in values:
    one_of(name, value, valid)
  return values
