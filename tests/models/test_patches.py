"""Model-patch banks: identity at init, isolation of experts, routing, parameter cost."""
import numpy as np
import tensorflow as tf

from tfexperts.models import bit
from tfexperts.models import checkpoints
from tfexperts.models import patches

IMAGES = np.random.default_rng(0).uniform(size=(4, 32, 32, 3)).astype("float32")


def _baseline():
  model = bit.create_model("tiny", num_classes=3)
  rng = np.random.default_rng(1)
  for v in model.weights:
    v.assign(rng.normal(1.0 if v.path.endswith("gamma") else 0.0, 0.3, v.shape).astype("float32"))
  return model


def test_fresh_patch_bank_equals_baseline_and_only_patches_train():
  baseline = _baseline()
  bank = patches.create_patch_bank(baseline, num_experts=3)
  want = baseline(IMAGES)
  got = bank(IMAGES, np.array([0, 2, 1, 2], "int32"))
  for key in ("pre_logits", "logits"):
    np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())
  assert bank.trainable_weights and all("group_norm" in v.path for v in bank.trainable_weights)
  per_expert = patches.patch_parameter_count(bank)
  assert sum(int(np.prod(v.shape)) for v in bank.trainable_weights) == 3 * per_expert


def test_patch_training_isolates_experts_and_routing_equals_extraction():
  bank = patches.create_patch_bank(_baseline(), num_experts=3)
  rng = np.random.default_rng(2)
  for v in bank.trainable_weights:
    v.assign(v.numpy() + rng.normal(0, 0.1, v.shape).astype("float32"))
  before = {v.path: v.numpy() for v in bank.weights}
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(bank(IMAGES, np.full(4, 2, "int32"))["pre_logits"] ** 2)
  grads = tape.gradient(loss, bank.trainable_weights)
  tf.keras.optimizers.SGD(0.01).apply_gradients(zip(grads, bank.trainable_weights))
  for v in bank.weights:
    if "group_norm" in v.path:
      np.testing.assert_array_equal(before[v.path][:2], v.numpy()[:2])
    else:
      np.testing.assert_array_equal(before[v.path], v.numpy())
  assert any(not np.array_equal(before[v.path][2], v.numpy()[2]) for v in bank.trainable_weights)
  ids = np.array([2, 0, 1, 2], "int32")
  mixed = bank(IMAGES, ids)["pre_logits"].numpy()
  for e in range(3):
    single = patches.extract_patch_expert(bank, e)
    assert single.patch_experts == 0
    rows = ids == e
    np.testing.assert_allclose(mixed[rows], single(IMAGES[rows])["pre_logits"].numpy(),
                               rtol=1e-5, atol=1e-5)


def test_r50x1_patch_cost_is_all_groupnorm_parameters():
  r50 = bit.create_model("r50x1")
  per_expert = patches.patch_parameter_count(r50)
  brute = sum(int(np.prod(v.shape)) for n, v in checkpoints.checkpoint_variables(r50).items()
              if n.endswith(("group_norm/gamma", "group_norm/beta")))
  # GN before conv a sees the unit's input (the block input, then 4F); before b and c, F each.
  before_a = (64 + 2 * 256) + (256 + 3 * 512) + (512 + 5 * 1024) + (1024 + 2 * 2048)
  before_b_and_c = 2 * (3 * 64 + 4 * 128 + 6 * 256 + 3 * 512)
  assert per_expert == brute == 2 * (before_a + before_b_and_c + 2048) == 45_440
  assert round(per_expert / r50.count_params(), 5) == 0.00193
