"""Exported experts fine-tune inside new models: tf_keras + hub.KerasLayer, Keras 3 + TFSMLayer."""
import os

import keras
import numpy as np
import pytest
import tf_keras

from tests.hub import collection_fixtures as conftest
from tfexperts.hub.tfhub import hub

LABELS = np.arange(8) % 3


def _module(exported):
  # An adapter expert: its backbone was frozen in the bank, and must fine-tune all the same.
  return os.path.join(exported.collection_dir, "adapter_thing_red", "1")


def _changed(layer, before):
  return sum(not np.array_equal(old, w.numpy()) for old, w in zip(before, layer.weights))


@pytest.mark.parametrize("trainable", [True, False])
def test_hub_keras_layer_in_tf_keras(exported, trainable):
  layer = hub.KerasLayer(_module(exported), trainable=trainable)
  model = tf_keras.Sequential([tf_keras.Input((32, 32, 3)), layer, tf_keras.layers.Dense(3)])
  model.compile(tf_keras.optimizers.SGD(0.1),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = [w.numpy() for w in layer.weights]
  assert len(layer.trainable_weights) == (len(layer.weights) if trainable else 0)
  model.fit(conftest.images(8), LABELS, batch_size=4, epochs=1, verbose=0)
  if trainable:
    # All but the zero-gradient ones move; the root convolution (backbone) among them.
    assert _changed(layer, before) > len(before) // 2
    root = [i for i, w in enumerate(layer.weights) if "root_block" in w.name]
    assert root and not np.array_equal(before[root[0]], layer.weights[root[0]].numpy())
  else:
    assert _changed(layer, before) == 0


@pytest.mark.parametrize("trainable", [True, False])
def test_tfsm_layer_in_keras_3(exported, trainable):
  layer = keras.layers.TFSMLayer(_module(exported), call_endpoint="serve",
                                 call_training_endpoint="train", trainable=trainable)
  inputs = keras.Input((32, 32, 3))
  model = keras.Model(inputs, keras.layers.Dense(3)(layer(inputs)))
  model.compile(keras.optimizers.SGD(0.1),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = [w.numpy() for w in layer.weights]
  model.fit(conftest.images(8), LABELS, batch_size=4, epochs=1, verbose=0)
  if trainable:
    assert _changed(layer, before) > len(before) // 2
  else:
    assert _changed(layer, before) == 0
