"""The common bounds: what passes, and errors that name the argument, the value and what is valid."""
import numpy as np
import pytest

from tfexperts import bounds
from tfexperts.errors import UserError


@pytest.mark.parametrize("check,good,bad,valid", [
    (bounds.positive_int, [1, np.int64(7)], [0, -1, 1.0, True, None, "3"], "a positive integer"),
    (bounds.non_negative_int, [0, 5], [-1, 0.5, False], "an integer >= 0"),
    (bounds.positive_number, [1e-9, 3, 2.5], [0, -0.1, float("nan"), True], "a number > 0"),
    (bounds.non_negative_number, [0, 0.0, 4], [-1e-9, float("nan")], "a number >= 0"),
    (bounds.fraction, [0, 0.5], [1, 1.0, -0.1], "a number in [0, 1)"),
    (bounds.positive_fraction, [1, 0.25], [0, 0.0, 1.01, float("nan")], "a number in (0, 1]"),
])
def test_numeric_bounds(check, good, bad, valid):
  for value in good:
    assert check("arg", value) is value
  for value in bad:
    with pytest.raises(UserError) as info:
      check("arg", value)
    assert str(info.value) == f"`arg` must be {valid}. Received: arg={value!r}"


def test_none_only_where_allowed():
  assert bounds.positive_int("groups", None, allow_none=True) is None
  assert bounds.positive_number("width", None, allow_none=True) is None
  with pytest.raises(UserError, match=r"a positive integer or None. Received: groups=0"):
    bounds.positive_int("groups", 0, allow_none=True)


def test_choices_list_the_valid_ones_and_suggest_the_closest():
  assert bounds.one_of("decay", "step", ("step", "cosine")) == "step"
  with pytest.raises(UserError) as info:
    bounds.one_of("decay", "cosin", ("step", "cosine"))
  assert str(info.value) == ("`decay` must be one of ['step', 'cosine']. Received: "
                             "decay='cosin' Did you mean 'cosine'?")
  assert bounds.all_of("stage", ["a", "b"], "abc") == ["a", "b"]
  with pytest.raises(UserError, match="Received: stage='d'"):
    bounds.all_of("stage", ["a", "d"], "abc")
  with pytest.raises(UserError, match="must be a list"):
    bounds.all_of("stage", "a", "abc")
