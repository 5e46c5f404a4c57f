"""Every example exactly once, in order, whatever the batch size (more replicas: tests/train)."""

import numpy as np
import pytest
import tensorflow as tf

from tests import processes
from tfexperts import replicated



def _examples(n):
  images = np.arange(n * 4, dtype="float32").reshape(n, 2, 2, 1)
  return tf.data.Dataset.from_tensor_slices((images, np.arange(n, dtype="int32") % 3)), images


@pytest.mark.parametrize("n,batch", [(37, 8), (8, 8), (1, 8), (5, 1)])
def test_outputs_in_dataset_order_with_the_last_batch_padded(n, batch):
  examples, images = _examples(n)
  counts = []
  sums, labels = replicated.ordered_outputs(
      tf.distribute.OneDeviceStrategy("/cpu:0"),
      lambda example: (tf.reduce_sum(example[0], axis=[1, 2, 3]), example[1]), examples, batch,
      num_examples=n, on_batch=counts.append)
  np.testing.assert_array_equal(sums, images.sum(axis=(1, 2, 3)))
  np.testing.assert_array_equal(labels, np.arange(n) % 3)
  assert counts == [min(batch, n - i) for i in range(0, n, batch)]


def test_padded_batches_are_full_and_numbered():
  batches = list(replicated.padded_batches(_examples(5)[0], 4).as_numpy_iterator())
  assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, -1, -1, -1]]
  assert batches[1][1][0][1:].max() == 0  # padding images are zeros


def test_a_wrong_count_and_dynamic_shapes_are_errors():
  with pytest.raises(ValueError, match="counted 5 examples; the dataset has 6"):
    replicated.ordered_outputs(None, lambda e: e[1], _examples(5)[0], 4, num_examples=6)
  dynamic = tf.data.Dataset.from_generator(lambda: iter([np.zeros((2, 2))]),
                                           output_signature=tf.TensorSpec([None, 2]))
  with pytest.raises(ValueError, match="static shape"):
    replicated.padded_batches(dynamic, 4)


_NEW_STEPS_SCRIPT = """
import numpy as np, tensorflow as tf
from tfexperts import replicated
images = np.arange(40, dtype="float32").reshape(10, 2, 2, 1)
examples = tf.data.Dataset.from_tensor_slices(images)
for k in range(7):
  replicated.ordered_outputs(None, lambda batch, k=k: batch * k, examples, 16)
print("ran 7 steps")
"""


def test_a_reused_step_traces_once_and_new_steps_do_not_warn_of_retracing():
  examples, images = _examples(10)
  step = replicated.OrderedStep(None, lambda example: tf.reduce_sum(example[0], axis=[1, 2, 3]))
  for _ in range(7):
    np.testing.assert_array_equal(replicated.ordered_outputs(None, step, examples, 4),
                                  images.sum(axis=(1, 2, 3)))
  assert step._step.experimental_get_tracing_count() == 1  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="built for"):
    replicated.ordered_outputs(tf.distribute.OneDeviceStrategy("/cpu:0"), step, examples, 4)
  # One step per model (a new function each time, as for every expert of a pool) is traced once
  # each; TensorFlow must not take the seven for one function retraced seven times. A fresh
  # process: TensorFlow's retracing detector keeps its history for the whole process.
  result = processes.run_python(_NEW_STEPS_SCRIPT)
  assert "ran 7 steps" in result.stdout
  assert "retracing" not in result.stderr, result.stderr[-2000:]
