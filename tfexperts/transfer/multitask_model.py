"""The multi-task patch model ("K for the price of 1", simultaneous transfer): one frozen expert,
and per task one GroupNorm patch (every GroupNorm's scale and bias) and one zero-initialised head,
routed per example by task id.

The expert is rebuilt natively (`finetune.native_expert`) and turned into a patch bank
(`models.patches.create_patch_bank`, one row per task, every row starting as the expert's
GroupNorms): its `GroupNormBank`s gather each example's row by task id, the routing the upstream
patch experts train with, so a batch may mix tasks. An adapter expert keeps its own adapters,
frozen, as in single-task patch mode. Only the bank rows and the heads train.

`call(images, task_ids)` returns `[b, max classes]` logits: example i's row holds its task's head,
padded with NEGATIVE where that task has fewer classes, so softmax cross-entropy over the row is
the task's own, and argmax stays within its classes. `task_view(cache, t)` is task t's classifier
(`images -> [b, classes_t]`), `task_model(cache, t)` a single-task patch `TransferModel` holding
task t's patch and head (what `transfer.artifact.save` stores and `transfer.apply` rebuilds); both
are kept by the caller's `finetune.ModelCache` beside the multi-task model it holds.
"""
import weakref

import keras
import tensorflow as tf

from tfexperts import bounds
from tfexperts import precision as precision_lib
from tfexperts.hub import expert_ref as hub_expert_ref
from tfexperts.hub import third_party
from tfexperts.models import adapters
from tfexperts.models import inputs
from tfexperts.models import patches
from tfexperts.transfer import finetune

NEGATIVE = -1e9  # the logit of a class the example's task does not have (softmax weight 0)


def resnet_of(expert):
  """The `ResNetV2` of a native expert: itself, or an adapter expert's backbone."""
  return expert.backbone if isinstance(expert, adapters.AdapterExpertModel) else expert


class MultitaskPatchModel(keras.Model):
  """`expert` (a `hub.expert_ref.ExpertRef`) frozen, with one patch and head per task of `num_classes` (a list of ints,
  one per task, in task-id order), at `precision` (float32 variables; heads and logits float32).

  `call(images, task_ids, training=False)`: `[b, h, w, 3]` images in [0, 1] and `[b]` int task
  ids -> `[b, max(num_classes)]` float32 logits (see the module docstring).
  """

  def __init__(self, expert, num_classes, precision="float32", name="multitask", **kwargs):
    super().__init__(name=name, **kwargs)
    if not isinstance(num_classes, (list, tuple)) or not num_classes:
      raise ValueError(f"`num_classes` must be a non-empty list of positive integers, one per "
                       f"task. Received: {num_classes!r}")
    for classes in num_classes:
      bounds.positive_int("num_classes", classes)
    self.expert_ref = hub_expert_ref.check(expert, "MultitaskPatchModel")
    self.handle, self.num_classes = expert.handle, list(num_classes)
    self.precision = precision_lib.check(precision)
    self.finetune = "patch"
    backbone = finetune.native_expert(expert, precision, "patch")  # UserError when not ours
    with precision_lib.policy_scope(precision):
      self.bank = patches.create_patch_bank(resnet_of(backbone), len(num_classes))
    self.own_adapters = list(getattr(backbone, "adapters", []))
    for adapter in self.own_adapters:
      adapter.trainable = False
    self.input_range = expert.input_range
    self.heads = [keras.layers.Dense(classes, kernel_initializer="zeros", name=f"head{t}",
                                     dtype="float32") for t, classes in enumerate(num_classes)]

  def build(self, input_shape):
    """Builds the heads for the expert's feature size (the bank is built already)."""
    dim = int(self.expert_ref.metadata.feature_dim)
    for head in self.heads:
      head.build((None, dim))
    self.built = True

  def features(self, images, task_ids, training=False):
    """`[b, d]` float32 pre-logits of `images`, example i through task `task_ids[i]`'s patch."""
    del training  # BiT has no batch norm or dropout
    images = third_party.rescale(tf.cast(inputs.prepare(images), tf.float32), self.input_range)
    ids = tf.cast(task_ids, tf.int32)
    own = self.own_adapters or [None] * len(self.bank.blocks)
    x = self.bank.root(images)
    for adapter, block in zip(own, self.bank.blocks):
      if adapter is not None:  # an adapter expert's own (single) adapter
        x = adapter(x, tf.zeros_like(ids))
      x = block(x, ids)
    return tf.cast(self.bank.outputs_from(x, ids)["pre_logits"], tf.float32)

  def call(self, images, task_ids, training=False):
    features = self.features(images, task_ids, training)
    width = max(self.num_classes)
    padded = [tf.pad(head(features), [[0, 0], [0, width - classes]], constant_values=NEGATIVE)
              for head, classes in zip(self.heads, self.num_classes)]
    return tf.gather(tf.stack(padded, axis=1), tf.cast(task_ids, tf.int32), axis=1, batch_dims=1)

  def task_logits(self, images, task, training=False):
    """`[b, num_classes[task]]` logits of `images`, all of task `task` (an int)."""
    ids = tf.fill(tf.shape(images)[:1], tf.constant(task, tf.int32))
    return self.heads[task](self.features(images, ids, training))


class _TaskView(keras.Model):
  """Task `index` of a multi-task model as a classifier: `call(images) -> [b, classes]` logits.

  Holds its model through a weak reference, so it adds no variables of its own."""

  def __init__(self, model, index):
    super().__init__(name=f"{model.name}_task{index}")
    self._model = weakref.ref(model)
    self.index = index
    self.built = True

  def call(self, images, training=False):
    return self._model().task_logits(images, self.index, training)


def task_view(cache, index):
  """Task `index` of `cache.model` (a `MultitaskPatchModel` held by the caller's
  `finetune.ModelCache`) as a Keras classifier `images -> [b, classes]`: the same object while
  the model is cached, so its evaluation step is traced once across runs."""
  return cache.derived(("task_view", index), lambda: _TaskView(cache.model, index))


def task_model(cache, index):
  """A single-task patch `finetune.TransferModel` of the expert of `cache.model` (a
  `MultitaskPatchModel` held by the caller's `finetune.ModelCache`) holding task `index`'s patch
  and head: the model `transfer.apply` rebuilds from that task's artifact. One model per class
  count is built while the multi-task model is cached and refilled on every call."""
  model = cache.model
  classes = model.num_classes[index]

  def build():
    single = finetune.TransferModel(model.expert_ref, classes, precision=model.precision,
                                    finetune="patch")
    single.build((None, None, None, 3))
    return single
  single = cache.derived(("single_task_model", classes), build)
  assigned = patches.copy_patch(model.bank, index, resnet_of(single.expert))
  for target, source in zip(single.head.weights, model.heads[index].weights):
    target.assign(source)
  trained = {id(v) for v in single.trainable_variables}
  if trained != {id(v) for v in assigned + list(single.head.weights)}:
    raise ValueError(f"Task {index}'s patch and head do not cover what a single-task patch model "
                     f"of {model.handle} trains ({len(trained)} variables).")
  return single
