"""Adapter banks: identity at init, isolation of experts in training, routing, closed-form size."""
import numpy as np
import pytest
import tensorflow as tf

from tfexperts.models import adapters
from tfexperts.models import bit

IMAGES = np.random.default_rng(0).uniform(size=(6, 32, 32, 3)).astype("float32")


@pytest.fixture(scope="module")
def baseline():
  model = bit.create_model("tiny", num_classes=5)
  rng = np.random.default_rng(1)
  for v in model.weights:  # a non-trivial "trained" baseline, head included
    v.assign(rng.normal(1.0 if v.path.endswith("gamma") else 0.0, 0.3, v.shape).astype("float32"))
  return model


def _randomize_adapters(model, seed):
  rng = np.random.default_rng(seed)
  for v in model.adapters[0].weights + [w for a in model.adapters[1:] for w in a.weights]:
    v.assign(rng.normal(1.0 if v.path.endswith("gamma") else 0.0, 0.2, v.shape).astype("float32"))


def test_fresh_bank_gives_exactly_the_baseline_outputs(baseline):
  bank = adapters.create_adapter_experts(baseline, num_experts=3)
  want = baseline(IMAGES)
  for ids in ([0] * 6, [2] * 6, [0, 1, 2, 2, 1, 0]):
    got = bank(IMAGES, np.array(ids, "int32"))
    for key in ("pre_logits", "logits"):
      np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())


def test_training_expert_2_changes_only_expert_2(baseline):
  bank = adapters.create_adapter_experts(baseline, num_experts=3)
  _randomize_adapters(bank, seed=2)
  ids = np.full(6, 2, "int32")
  labels = np.arange(6) % 5
  frozen_before = [v.numpy() for v in bank.backbone.weights]
  adapters_before = [v.numpy() for a in bank.adapters for v in a.weights]
  assert not bank.backbone.trainable_weights
  with tf.GradientTape() as tape:
    logits = bank(IMAGES, ids)["logits"]
    loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                         from_logits=True))
  grads = tape.gradient(loss, bank.trainable_weights)
  assert len(grads) == len(adapters_before)
  for g in grads:
    g = tf.convert_to_tensor(g).numpy()
    np.testing.assert_array_equal(g[:2], 0.0)
  assert any(np.abs(tf.convert_to_tensor(g).numpy()[2]).max() > 0 for g in grads)
  optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9)
  optimizer.apply_gradients(zip(grads, bank.trainable_weights))
  for old, v in zip(frozen_before, bank.backbone.weights):
    np.testing.assert_array_equal(old, v.numpy())
  changed = False
  for old, v in zip(adapters_before, [v for a in bank.adapters for v in a.weights]):
    np.testing.assert_array_equal(old[:2], v.numpy()[:2])
    changed |= not np.array_equal(old[2], v.numpy()[2])
  assert changed


def test_mixed_ids_equal_each_examples_extracted_expert(baseline):
  bank = adapters.create_adapter_experts(baseline, num_experts=3)
  _randomize_adapters(bank, seed=3)
  ids = np.array([1, 0, 2, 1, 2, 0], "int32")
  mixed = bank(IMAGES, ids)["pre_logits"].numpy()
  singles = {e: bank.extract_expert(e) for e in range(3)}
  for i, e in enumerate(ids):
    alone = singles[int(e)](IMAGES[i:i + 1])["pre_logits"].numpy()
    np.testing.assert_allclose(mixed[i:i + 1], alone, rtol=1e-5, atol=1e-5)
  assert not np.allclose(singles[0](IMAGES)["pre_logits"], singles[1](IMAGES)["pre_logits"])


def test_extracted_expert_is_independent_of_the_bank(baseline):
  bank = adapters.create_adapter_experts(baseline, num_experts=2)
  single = bank.extract_expert(1)
  before = single(IMAGES)["pre_logits"].numpy()
  _randomize_adapters(bank, seed=4)
  np.testing.assert_array_equal(single(IMAGES)["pre_logits"].numpy(), before)


def test_r50x1_adapter_costs_closed_form_per_expert():
  r50 = bit.create_model("r50x1")
  closed_form = adapters.adapter_parameter_count(r50.block_input_channels)
  assert closed_form == 1_385_920
  assert round(closed_form / r50.count_params(), 3) == 0.059
  bank = adapters.AdapterExpertModel(r50, num_experts=2)
  bank.build((None, None, None, 3))
  assert sum(int(np.prod(v.shape)) for v in bank.trainable_weights) == 2 * closed_form
  assert sum(int(np.prod(v.shape)) for v in bank.non_trainable_weights) == 23_500_352


def test_bank_requires_ids_and_checks_expert_index(baseline):
  bank = adapters.create_adapter_experts(baseline, num_experts=2)
  with pytest.raises(ValueError, match="expert_ids=None"):
    bank(IMAGES)
  with pytest.raises(ValueError, match="expert=5"):
    bank.extract_expert(5)
  with pytest.raises(ValueError, match="num_experts=0"):
    adapters.AdapterExpertModel(baseline, 0)
