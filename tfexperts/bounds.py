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


def _require(name, value, ok, valid, allow_none=False):
  """`value` when `ok(value)` (or it is None and `allow_none`); else UserError saying `valid`."""
  if not (allow_none and value is None) and not ok(value):
    raise errors.UserError(f"`{name}` must be {valid}{' or None' if allow_none else ''}. "
                           f"Received: {name}={value!r}")
  return value


def positive_int(name, value, allow_none=False):
  """`value` if it is an int >= 1 (or None when `allow_none`); else UserError naming `name`."""
  return _require(name, value, lambda v: _is_int(v) and v >= 1, "a positive integer", allow_none)


def non_negative_int(name, value):
  """`value` if it is an int >= 0; else UserError naming `name`."""
  return _require(name, value, lambda v: _is_int(v) and v >= 0, "an integer >= 0")


def positive_number(name, value, allow_none=False):
  """`value` if it is a real number > 0 (or None when `allow_none`); else UserError."""
  return _require(name, value, lambda v: _is_number(v) and v > 0, "a number > 0", allow_none)


def non_negative_number(name, value):
  """`value` if it is a real number >= 0; else UserError naming `name`."""
  return _require(name, value, lambda v: _is_number(v) and v >= 0, "a number >= 0")


def fraction(name, value):
  """`value` if it is a real number in [0, 1); else UserError naming `name`."""
  return _require(name, value, lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")


def positive_fraction(name, value):
  """`value` if it is a real number in (0, 1]; else UserError naming `name`."""
  return _require(name, value, lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]")


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
