"""The objects written as hub modules (reusable SavedModels) around tfexperts Keras 3 models.

`ExpertModule` follows the hub module contract of DESIGN.md: a polymorphic
`__call__(images, training=False)` traced for both values of `training` and returning `[b, d]`
pre-logits; `variables`, `trainable_variables`, `regularization_losses`; the Keras 3 endpoints
`serve(images)` and `train(images)` (for `keras.layers.TFSMLayer`); and the `serving_default`
signature mapping `images` to `{"pre_logits": ...}`. With `with_logits` (the baseline and the
expert prediction network keep their upstream head) it also has a `logits(images)` endpoint and
`serving_default` returns `{"pre_logits", "logits"}`; `__call__` still returns the features only.
A task module (an expert with a fine-tuned head and what the fine-tune trained, see
`tfexperts.transfer.reuse`) is an `ExpertModule` whose `__call__` returns the logits
(`call_output=LOGITS`): `hub.KerasLayer(handle, trainable=True)` then predicts and fine-tunes.

`BankModule` holds a whole adapter or patch bank: the same API with `expert_ids` (`[b]` int32)
after `images` (`__call__(images, expert_ids, training=False)`, `serve`, `train`, and a
`serving_default` taking both inputs), so many experts are loaded into memory once.

Only the model's variables and the traced functions are saved, not the Keras objects, so loading
needs TensorFlow (plus tensorflow_hub or Keras for their wrappers) but no tfexperts code.

Each saved variable is a TensorFlow variable named by its Keras path (`resnet/block1/unit01/a/
group_norm/gamma`), so every graph name is unique. Keras 3 names a backend variable by the name
scope it was created in (`resnet/block1/gamma` for every unit of block 1), and session-based
loaders (`saved_model_cli run`, TF Serving) and OpenVINO's TensorFlow frontend resolve variables
by those names: with repeated names they fail or read the wrong weights. The module holds its own
renamed copies; the Keras model reads them only while a function is being traced (`_renamed`).
"""
import contextlib
import re

import tensorflow as tf

from tfexperts.hub import copies

IMAGES = "images"
EXPERT_IDS = "expert_ids"
PRE_LOGITS = "pre_logits"
LOGITS = "logits"

IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name=IMAGES)
EXPERT_IDS_SPEC = tf.TensorSpec([None], tf.int32, name=EXPERT_IDS)


def _function(fn, specs):
  # autograph off, as keras.export does: the models have no data-dependent Python control flow.
  return tf.function(fn, input_signature=specs, autograph=False)


def graph_name(path):
  """A TensorFlow variable name for the Keras variable path `path` (characters TF rejects -> _)."""
  name = re.sub(r"[^A-Za-z0-9_./-]", "_", path)
  return name if re.match(r"[A-Za-z0-9.]", name) else "v" + name


def renamed_copies(variables):
  """New TensorFlow variables, one per Keras variable in `variables`, named by its path.

  Each copy has the value, dtype and creation trainability of the Keras variable's backend
  variable. Raises ValueError when two paths give the same name. Returns a list in input order.
  """
  names = [graph_name(v.path) for v in variables]
  if len(set(names)) != len(names):
    repeated = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(f"Variables share the graph names {repeated[:5]}; every variable of an "
                     "exported model needs a unique path.")
  with tf.init_scope():
    return [tf.Variable(v.value, name=name, trainable=copies.created_trainable(v))
            for v, name in zip(variables, names)]


@contextlib.contextmanager
def _renamed(keras_variables, tf_variables):
  # Swaps the backend variable under each Keras variable for the trace only: the traced graph
  # captures the renamed copies, and the caller's model is left as it was.
  old = [v._value for v in keras_variables]  # pylint: disable=protected-access
  try:
    for v, new in zip(keras_variables, tf_variables):
      v._value = new  # pylint: disable=protected-access
    yield
  finally:
    for v, value in zip(keras_variables, old):
      v._value = value  # pylint: disable=protected-access


class _NotSaved:
  """Keeps the Keras model out of the SavedModel's object graph (its variables are saved)."""

  def __init__(self, model):
    self.model = model


# AutoTrackable, as keras.export.ExportArchive uses, rather than tf.Module: on tf.Module the
# reusable-SavedModel attributes `variables` and `trainable_variables` are read-only properties.
class _Base(tf.__internal__.tracking.AutoTrackable):
  """Variables, `regularization_losses`, `serve`/`train` and the optional `logits` endpoint."""

  call_output = PRE_LOGITS  # what `__call__` (and `serve`, `train`) return

  def __init__(self, model, with_logits, extra_specs):
    super().__init__()
    if not model.built:
      raise ValueError(f"Model {model.name!r} is not built; build it before export.")
    if with_logits and not copies.head_size(model):
      raise ValueError(f"with_logits=True needs a model with a head. Model {model.name!r} has "
                       "num_classes=0.")
    self._keras = _NotSaved(model)
    self._extra_specs = tuple(extra_specs)
    self.with_logits = with_logits
    self.variables = renamed_copies(model.variables)
    # What the SavedModel records (see copies.created_trainable), not Keras' current flags.
    self.trainable_variables = [v for v in self.variables if v.trainable]
    self.regularization_losses = []  # weight decay is the optimizer's business, not the graph's
    # serve, train and serving_default call the traced __call__ / logits instead of tracing the
    # model again: a model trace takes about a second even for the tiny test model.
    self.serve = _function(lambda *args: self.__call__(*args, training=False), self._specs())
    self.train = _function(lambda *args: self.__call__(*args, training=True), self._specs())
    if with_logits:
      self.logits = _function(lambda *args: self._outputs(args, False)[LOGITS], self._specs())

  @property
  def model(self):
    """The wrapped Keras model (not itself part of the SavedModel)."""
    return self._keras.model

  def _specs(self):
    return [IMAGES_SPEC, *self._extra_specs]

  def _outputs(self, args, training):
    with _renamed(self._keras.model.variables, self.variables):
      return self._keras.model(*args, training=training)

  def _serving_outputs(self, *args):
    if self.call_output != PRE_LOGITS:
      outputs = self._outputs(args, False)
      return {PRE_LOGITS: outputs[PRE_LOGITS], LOGITS: outputs[LOGITS]}
    outputs = {PRE_LOGITS: self.__call__(*args, training=False)}
    if self.with_logits:
      outputs[LOGITS] = self.logits(*args)
    return outputs

  def signatures(self):
    """Traces `__call__` for both values of `training`; returns the signatures for saving."""
    for training in (True, False):
      self.__call__.get_concrete_function(*self._specs(), training=training)
    serving = _function(self._serving_outputs, self._specs())
    return {"serving_default": serving.get_concrete_function()}


class ExpertModule(_Base):
  """One expert: `__call__(images, training=False) -> [b, d]` pre-logits (float32).

  Args:
    model: a built Keras model whose call returns `{"pre_logits", "logits"}` (logits with a
      head): a `ResNetV2` or single-expert `AdapterExpertModel`, normally
      `copies.export_ready(...)` so that every variable is trainable, or a task model.
    with_logits: also export the model's head as `logits(images)` and in `serving_default`.
    call_output: what `__call__` returns: PRE_LOGITS (experts) or LOGITS (task modules, which
      need `with_logits`).
  """

  def __init__(self, model, with_logits=False, call_output=PRE_LOGITS):
    if call_output not in (PRE_LOGITS, LOGITS) or (call_output == LOGITS and not with_logits):
      raise ValueError(f"`call_output` must be {PRE_LOGITS!r}, or {LOGITS!r} with "
                       f"with_logits=True. Received: call_output={call_output!r}, "
                       f"with_logits={with_logits!r}")
    super().__init__(model, with_logits, ())
    self.call_output = call_output

  @tf.function(autograph=False)
  def __call__(self, images, training=False):
    return self._outputs((images,), training)[self.call_output]


class BankModule(_Base):
  """A bank of experts: `__call__(images, expert_ids, training=False) -> [b, d]` pre-logits.

  Example i is run through expert `expert_ids[i]`, so a batch may mix experts.

  Args:
    model: a built adapter bank (`AdapterExpertModel`) or patch bank (`ResNetV2` with
      `patch_experts > 0`), normally `copies.export_ready(...)`.
    with_logits: also export the head as `logits(images, expert_ids)`.
  """

  def __init__(self, model, with_logits=False):
    super().__init__(model, with_logits, (EXPERT_IDS_SPEC,))

  @tf.function(autograph=False)
  def __call__(self, images, expert_ids, training=False):
    return self._outputs((images, expert_ids), training)[PRE_LOGITS]
