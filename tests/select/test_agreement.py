"""`select.agreement`'s rules on hand-made numbers: max difference, accepted picks (the top two
within 0.5 points), same pick, the variant parser and the markdown table. No model runs here;
tests/select/test_precision_agreement.py measures a real collection."""
import dataclasses

import pytest

from tfexperts import errors
from tfexperts.select import agreement

BF16 = agreement.Variant("tensorflow", "bfloat16")


def test_max_difference_points_is_the_largest_absolute_difference():
  reference = {"a": 0.5, "b": 0.25, "c": 0.75}
  variant = {"a": 0.5 + 5 / 1024, "b": 0.25 - 8 / 1024, "c": 0.75}  # dyadic: exact in points
  assert agreement.max_difference_points(reference, variant) == 800 / 1024
  assert agreement.max_difference_points(reference, reference) == 0.0
  assert agreement.max_difference_points({}, {}) == 0.0


def test_accepted_picks_are_the_top_two_within_half_a_point():
  assert agreement.accepted_picks({"a": 0.75, "b": 0.745, "c": 0.7}) == ("a", "b")  # 0.5 points
  assert agreement.accepted_picks({"a": 0.75, "b": 0.744, "c": 0.7}) == ("a",)  # 0.6 points
  assert agreement.accepted_picks({"b": 0.7, "a": 0.7, "c": 0.7}) == ("a", "b")  # ties by name
  assert agreement.accepted_picks({"a": 0.5}) == ("a",)


def test_same_pick_accepts_either_of_a_near_tie_and_nothing_else():
  reference = {"a": 0.75, "b": 0.745, "c": 0.70}
  second = agreement.summarize(BF16, reference, {"a": 0.74, "b": 0.75, "c": 0.70})
  assert second == agreement.VariantSummary(BF16, pytest.approx(1.0), False, ("a", "b"), "b",
                                            True)
  third = agreement.summarize(BF16, reference, {"a": 0.75, "b": 0.745, "c": 0.76})
  assert (third.within_tolerance, third.pick, third.same_pick) == (False, "c", False)
  clear = agreement.summarize(BF16, {"a": 0.75, "b": 0.744}, {"a": 0.747, "b": 0.748})
  assert (clear.within_tolerance, clear.accepted_picks, clear.pick, clear.same_pick) == (
      True, ("a",), "b", False)


def test_parse_variant():
  assert agreement.parse_variant("tensorflow:bfloat16") == BF16
  for text, shown in [("bfloat16", "engine:precision"), ("tensorflow:float64", "float64"),
                      ("cuda:float32", "cuda")]:
    with pytest.raises(errors.UserError, match=shown):
      agreement.parse_variant(text)


def test_markdown_shows_differences_fallbacks_and_picks():
  f32 = agreement.REFERENCE
  ov = agreement.Variant("openvino", "bfloat16")
  rows = (agreement.ExpertRow("x", agreement.Measured(0.5, f32, 0.0),
                              (agreement.Measured(0.5 + 2 / 1024, ov, 0.0123),)),
          agreement.ExpertRow("y", agreement.Measured(0.25, f32, 0.0),
                              (agreement.Measured(0.25, f32, 0.0),)))  # fell back to float32
  summary = agreement.summarize(ov, {"x": 0.5, "y": 0.25}, {"x": 0.5 + 2 / 1024, "y": 0.25})
  result = agreement.Agreement(f32, (ov,), (agreement.TaskAgreement("t", 1024, rows,
                                                                     (summary,)),))
  assert result.agrees
  failing = dataclasses.replace(summary, within_tolerance=False)
  assert not dataclasses.replace(result, tasks=(dataclasses.replace(
      result.tasks[0], summaries=(failing,)),)).agrees
  assert agreement.markdown(result) == (
      "| task | expert | tensorflow/float32 kNN % | openvino/bfloat16 kNN % | diff | max rel err |\n"
      "| --- | --- | --- | --- | --- | --- |\n"
      "| t | x | 50.000 | 50.195 | +0.195 | 1.23e-02 |\n"
      "| t | y | 25.000 | 25.000 (ran tensorflow/float32) | +0.000 | 0.00e+00 |\n"
      "\n"
      "| task | variant | max diff (points) | images | within 0.5 | tensorflow/float32 pick "
      "| variant pick | same pick |\n"
      "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
      "| t | openvino/bfloat16 | 0.195 | 2 of 1024 | yes | x | x | yes |\n")
