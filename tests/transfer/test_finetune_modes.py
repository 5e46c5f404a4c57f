"""--finetune modes (issue 29 item 1): what each mode trains, counted against the closed forms on
R50x1 and the tiny model, and one step that moves exactly those variables; the protocol's mode
field, its learning-rate grids and run directories; third-party modules."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.hub import collection_fixtures
from tests.hub import third_party_modules
from tfexperts import defaults
from tfexperts import errors
from tfexperts.data import tasks
from tfexperts.hub import load as hub_load
from tfexperts.models import architecture
from tfexperts.models import bit
from tfexperts.transfer import finetune
from tfexperts.transfer import modes
from tfexperts.transfer import protocol

CLASSES = 5
TINY = bit.PRESETS["tiny"]


def test_r50x1_trained_parameters_equal_the_closed_forms():
  r50x1 = bit.PRESETS["r50x1"]
  resnet = architecture.rebuild(
      architecture.Architecture(family=architecture.FAMILY, preset="r50x1",
                                units=tuple(r50x1["units"]), width=r50x1["width"],
                                groups=r50x1.get("groups", 32), adapters=False, patch_experts=0))
  head = 2048 * CLASSES + CLASSES
  closed = {mode: modes.closed_form(mode, (3, 4, 6, 3), 1, CLASSES)
            for mode in ("patch", "adapter", "head")}
  assert closed == {"patch": 45_440 + head, "adapter": 1_385_920 + head, "head": head}
  for mode in ("patch", "head", "adapter"):
    prepared = modes.prepare(resnet, mode)
    assert modes.count(modes.trained_variables(prepared)) + head == closed[mode], mode
  assert modes.count(resnet.weights) == 23_500_352


@pytest.fixture(scope="module")
def handles(exported):
  return {name: os.path.join(exported.collection_dir, name, "1")
          for name in ("baseline", "adapter_animal")}


def _perturb(variables, seed):
  rng = np.random.default_rng(seed)
  for v in variables:
    center = 1.0 if v.path.endswith("gamma") else 0.0
    v.assign(rng.normal(center, 0.1, v.shape).astype("float32"))


@pytest.mark.parametrize("mode,module", [("patch", "baseline"),
                                         ("adapter", "adapter_animal"), ("head", "baseline")])
def test_one_step_moves_exactly_the_modes_variables(handles, mode, module):
  model = finetune.TransferModel(hub_load.reference(handles[module]), CLASSES, finetune=mode)
  model.build((None, None, None, 3))
  trained = modes.trained_variables(model)
  assert modes.count(trained) == modes.closed_form(mode, TINY["units"], TINY["width"], CLASSES)
  # Non-zero values everywhere that trains, so that every trained variable gets a gradient
  # (from the zero-initialised head and adapter convs, the first step reaches only those).
  _perturb(trained, seed=1)
  frozen = [v for v in model.variables if not any(v is t for t in trained)]
  before = {id(v): v.numpy() for v in model.variables}
  images = collection_fixtures.images(8)
  labels = np.arange(8) % CLASSES
  with tf.GradientTape() as tape:
    loss = keras.losses.sparse_categorical_crossentropy(labels, model(images, training=True),
                                                        from_logits=True)
  gradients = tape.gradient(loss, trained)
  assert all(g is not None for g in gradients)
  gradients = [tf.convert_to_tensor(g) for g in gradients]  # the banks' gathers: IndexedSlices
  assert [v.path for v, g in zip(trained, gradients) if not np.abs(g.numpy()).max()] == []
  keras.optimizers.SGD(0.1).apply_gradients(zip(gradients, trained))
  assert all(not np.array_equal(v.numpy(), before[id(v)]) for v in trained)
  assert frozen and all(np.array_equal(v.numpy(), before[id(v)]) for v in frozen)
  if mode != "head":  # every GroupNorm / adapter lives in the expert; the rest of it is frozen
    assert any("conv2d/kernel" in v.path for v in frozen)


def test_third_party_module_patch_is_one_error_head_trains_the_head(tmp_path):
  handle = str(tmp_path / "colour")
  third_party_modules.write_tf_module(handle, dim=6)
  expert = hub_load.reference(handle)
  for mode in ("patch", "adapter"):
    with pytest.raises(errors.UserError) as caught:
      finetune.TransferModel(expert, 3, finetune=mode)
    message = str(caught.value)
    assert "\n" not in message and handle in message and f"--finetune={mode}" in message
    assert "third-party" in message and "--finetune=head" in message
    with pytest.raises(errors.UserError, match="third-party"):
      finetune.check_mode(expert, mode)
  model = finetune.TransferModel(expert, 3, finetune="head")
  model.build((None, None, None, 3))
  assert modes.count(modes.trained_variables(model)) == 6 * 3 + 3


def test_protocol_config_finetune_field():
  with pytest.raises(errors.UserError) as caught:
    protocol.ProtocolConfig(finetune="patches")
  assert "'patches'" in str(caught.value) and str(list(modes.MODES)) in str(caught.value)
  assert protocol.ProtocolConfig().learning_rates == (0.01, 0.001)  # today's, unchanged
  for mode in modes.MODES:
    assert protocol.ProtocolConfig(finetune=mode).learning_rates == defaults.LEARNING_RATES[mode]
    quick = protocol.ProtocolConfig.quick(finetune=mode)
    assert quick.learning_rates == defaults.QUICK_LEARNING_RATES[mode]
  assert protocol.ProtocolConfig(finetune="head", learning_rates=(0.5,)).learning_rates == (0.5,)
  assert protocol.ProtocolConfig.quick().with_finetune("patch").learning_rates == (1.0, 0.3)
  assert protocol.ProtocolConfig(learning_rates=(0.2,)).with_finetune("head").learning_rates == (
      0.2,)
  task = tasks.get_task("shapes_fine_tiny")
  directory = lambda config: os.path.basename(protocol._spec(  # pylint: disable=protected-access
      config, "h", task, "sweep", 0.1, 5, 0, "d", None).directory)
  config = protocol.ProtocolConfig(resolution=32)
  assert directory(config) == "sweep_lr0.1_steps5_seed0"
  assert directory(config.with_finetune("adapter")) == "sweep_lr0.1_steps5_seed0_adapter"
  assert directory(protocol.ProtocolConfig(resolution=32, finetune="patch",
                                           precision="bfloat16")) == (
      "sweep_lr0.1_steps5_seed0_patch_bfloat16")
