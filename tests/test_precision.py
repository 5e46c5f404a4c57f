"""tfexperts.precision: names, Keras policies, and what a device cannot run."""
import keras
import pytest

from tfexperts import errors
from tfexperts import precision


def test_unknown_precision_names_the_choices():
  with pytest.raises(errors.UserError, match=r"'bf16'.*float32.*bfloat16.*float16"):
    precision.check("bf16")


def test_policy_scope_sets_and_restores_the_global_policy():
  before = keras.mixed_precision.global_policy().name
  with precision.policy_scope("bfloat16") as name:
    assert name == "mixed_bfloat16"
    layer = keras.layers.Dense(2)
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
  assert keras.mixed_precision.global_policy().name == before
  assert precision.policy_name("float16") == "mixed_float16"


def test_device_notices(monkeypatch):
  monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512_bf16"})
  assert precision.device_notice("float32", "CPU") is None
  assert precision.device_notice("bfloat16", "CPU") is None
  notice = precision.device_notice("float16", "CPU")
  assert "float16" in notice and "emulates" in notice and "\n" not in notice
  monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2"})
  assert "avx512_bf16" in precision.device_notice("bfloat16", "CPU")
  assert precision.device_notice("bfloat16", "TPU") is None
  with pytest.raises(errors.UserError, match="float16 does not run on TPUs"):
    precision.device_notice("float16", "TPU")
