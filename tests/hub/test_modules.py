"""The hub module contract: exported modules compute what the Keras models compute."""
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.hub import collection_fixtures as conftest
from tfexperts.hub.tfhub import hub
from tfexperts.models import patches

ATOL = 1e-5


def _path(exported, name):
  return os.path.join(exported.collection_dir, name, "1")


def _close(got, want):
  got, want = np.asarray(got), np.asarray(want)
  np.testing.assert_allclose(got, want, atol=ATOL * max(1.0, np.abs(want).max()), rtol=0)


def test_hub_load_equals_the_keras_pre_logits_and_logits(exported, models):
  x = conftest.images(4)
  want = models.outputs["baseline"]
  module = hub.load(_path(exported, "baseline"))
  _close(module(x), want["pre_logits"])
  _close(module(x, training=True), want["pre_logits"])
  _close(module.logits(x), want["logits"])
  signature = module.signatures["serving_default"](images=tf.constant(x))
  assert sorted(signature) == ["logits", "pre_logits"]
  _close(signature["logits"], want["logits"])
  for name in ("adapter_animal", "adapter_thing_red", "patch_animal", "patch_thing_red"):
    want = models.outputs[name]["pre_logits"]  # the bank's own outputs for that expert's id
    module = hub.load(_path(exported, name))
    _close(module(x), want)
    _close(module.serve(x), want)
    _close(module.train(x), want)
    assert list(module.signatures["serving_default"](images=tf.constant(x))) == ["pre_logits"]
  module = hub.load(_path(exported, "epn"))  # kept: its functions hold its variables weakly
  _close(module.logits(x), models.outputs["epn"]["logits"])


def test_extracted_expert_equals_its_module(exported, models):
  x = conftest.images(4)
  module = hub.load(_path(exported, "adapter_thing_red"))
  _close(module(x), models.adapter_bank.extract_expert(1)(x)["pre_logits"])
  module = hub.load(_path(exported, "patch_animal"))
  _close(module(x), patches.extract_patch_expert(models.patch_bank, 0)(x)["pre_logits"])


def test_experts_of_a_bank_differ(exported):
  x = conftest.images(2)
  a, b = (hub.load(_path(exported, f"adapter_{n}"))(x).numpy() for n in ("animal", "thing_red"))
  assert np.abs(a - b).max() > 1e-2


@pytest.mark.parametrize("kind", ["adapter", "patch"])
def test_bank_module_with_id_e_equals_expert_module_e(exported, kind):
  x = conftest.images(4)
  bank = hub.load(_path(exported, f"{kind}_bank"))
  for e, name in enumerate(["animal", "thing_red"]):
    single = hub.load(_path(exported, f"{kind}_{name}"))(x)
    ids = tf.fill([4], e)
    _close(bank(x, ids), single)
    _close(bank.serve(x, ids), single)
    out = bank.signatures["serving_default"](images=tf.constant(x), expert_ids=ids)
    _close(out["pre_logits"], single)
  mixed = bank(x, tf.constant([0, 1, 1, 0]))
  _close(mixed[1], hub.load(_path(exported, f"{kind}_thing_red"))(x)[1])


def test_expert_modules_are_headless_and_fully_trainable(exported):
  module = hub.load(_path(exported, "adapter_animal"))
  names = [v.name for v in module.variables]
  assert not [n for n in names if "head" in n]
  assert len(module.trainable_variables) == len(module.variables) > 0
  assert all(v.trainable for v in module.variables)
  assert list(module.regularization_losses) == []
  baseline = hub.load(_path(exported, "baseline"))
  assert [v.name for v in baseline.variables if "head" in v.name]
