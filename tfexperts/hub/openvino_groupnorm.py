"""Rewrites the GroupNorm subgraphs of a converted tfexperts module into OpenVINO's own
GroupNormalization op (opset12), which the CPU plugin runs as one fused normalisation.

OpenVINO's TensorFlow frontend converts `tfexperts.models.layers.group_norm` (float32 path, as
exported) op by op: per-channel means over a `[b, pixels, c]` view, group means, a squared
difference, rsqrt, and one scale and one offset per channel, ~40 nodes per GroupNorm. None of
OpenVINO's fusions recognise that form, so an R50 runs ~2,500 nodes with ~340 layout reorders, and
at bfloat16 it barely gains over float32. Each recognised subgraph is replaced by
`Transpose(NHWC->NCHW) -> GroupNormalization(gamma, beta, groups, epsilon) -> Transpose(back)`;
the transposes cancel against those the frontend put around the convolutions.

Matching is structural, from the subgraph's SquaredDifference, for both forms tfexperts has
exported (per-group values spread over channels by Broadcast or, since 2026-12-04, by Tile; an
axis inserted by StridedSlice or Unsqueeze), and reads gamma, beta, the group
count and epsilon from the converted constants (a gamma of ones has been folded away by then;
beta is kept as a constant; a one-expert `GroupNormBank` gathers them from one-row tables). A
subgraph of any other shape (third-party modules) is left as it is,
and the caller checks the rewritten model's features against TensorFlow's anyway.
"""
import numpy as np

from openvino import opset12


def _input(node, index):
  return node.input(index).get_source_output().get_node()


def _kind(node):
  return node.get_type_name()


# The op kinds each form of the exported GroupNorm converts into (see the module docstring).
_NEW_AXIS = ("StridedSlice", "Unsqueeze")  # x[:, None, :], tf.expand_dims(x, 1)
_SPREAD = ("Broadcast", "Tile")  # [b, g, 1] -> [b, g, c/g]


def _is(node, kinds):
  """Whether `node` is of kind `kinds` (a kind, or a tuple of alternatives)."""
  return node is not None and _kind(node) in ((kinds,) if isinstance(kinds, str) else kinds)


def _same(a, b):
  return a is not None and b is not None and a.get_instance_id() == b.get_instance_id()


def _constant(node):
  """The value of a Constant node, else None."""
  return node.get_data() if _is(node, "Constant") else None


def _per_channel(node):
  """The per-channel values of `node`: a Constant, or a one-row Constant table gathered per
  example (a `GroupNormBank` of one expert, as an extracted expert exports it); else None."""
  if _is(node, "Gather"):
    table, axis = _constant(_input(node, 0)), _constant(_input(node, 2))
    if table is None or axis is None or int(axis.reshape(())) != 0 or len(table) != 1:
      return None
    return table[0]
  return _constant(node)


def _consumers(node):
  return [target.get_node() for target in node.output(0).get_target_inputs()]


def _other_input(node, known):
  """The input of binary `node` that is not `known`; None when neither input is `known`."""
  first, second = _input(node, 0), _input(node, 1)
  if _same(first, known):
    return second
  return first if _same(second, known) else None


def _only_consumer(node, kinds):
  consumers = _consumers(node)
  return consumers[0] if len(consumers) == 1 and _is(consumers[0], kinds) else None


def _channel_mean(squared_difference, flat):
  """`(per-channel group mean [b, c], groups)` that `squared_difference` subtracts, or None."""
  sliced = _input(squared_difference, 1)
  if not _is(sliced, _NEW_AXIS):
    return None
  mean = _input(sliced, 0)
  chain = [mean]  # Reshape <- spread <- ReduceMean <- Reshape [b, g, c/g] <- ReduceMean <- flat
  for kinds in ("Reshape", _SPREAD, "ReduceMean", "Reshape", "ReduceMean"):
    if not _is(chain[-1], kinds):
      return None
    chain.append(_input(chain[-1], 0))
  if not _same(chain[-1], flat):
    return None
  groups = chain[3].get_output_partial_shape(0)[1]
  return (mean, groups.get_length()) if groups.is_static else None


def _inverse_std(squared_difference):
  """`(rsqrt of the group variance [b, c], epsilon)` computed from `squared_difference`."""
  node, epsilon = squared_difference, None
  for kinds in ("ReduceMean", "Reshape", "ReduceMean", "Add", "Power", _SPREAD, "Reshape"):
    node = _only_consumer(node, kinds)
    if node is None:
      return None
    if kinds == "Add":
      epsilon = _constant(_input(node, 1))
    if kinds == "Power" and not np.allclose(_constant(_input(node, 1)), -0.5):
      return None
  if epsilon is None or epsilon.size != 1:
    return None
  return node, float(epsilon.reshape(()))


def _affine(flat, mean, inverse_std, channels):
  """`(gamma, beta, output node)` of `flat * scale + (beta - mean * scale)` reshaped back."""
  multiplies = [c for c in _consumers(flat) if _kind(c) == "Multiply"]
  if len(multiplies) != 1:
    return None
  normalised = multiplies[0]
  sliced = _other_input(normalised, flat)
  scale = _input(sliced, 0) if _is(sliced, _NEW_AXIS) else None
  if _same(scale, inverse_std):
    gamma = np.ones(channels, np.float32)
  elif _is(scale, "Multiply"):
    gamma = _per_channel(_other_input(scale, inverse_std))
  else:
    return None
  add = _only_consumer(normalised, "Add")
  sliced = _other_input(add, normalised) if add is not None else None
  offset = _input(sliced, 0) if _is(sliced, _NEW_AXIS) else None
  if not _is(offset, "Subtract"):
    return None
  beta, product = _per_channel(_input(offset, 0)), _input(offset, 1)
  if gamma is None or beta is None or not _is(product, "Multiply") or (
      _other_input(product, mean) is None):
    return None
  output = _only_consumer(add, "Reshape")
  if output is None or gamma.size != channels or beta.size != channels:
    return None
  return (np.asarray(gamma, np.float32).reshape(channels),
          np.asarray(beta, np.float32).reshape(channels), output)


def _match(squared_difference):
  """`(input [b, h, w, c], output node, groups, epsilon, gamma, beta)` of the GroupNorm whose
  variance pass starts at `squared_difference`, or None when the subgraph is not one."""
  flat = _input(squared_difference, 0)
  if _kind(flat) != "Reshape":
    return None
  images = flat.input(0).get_source_output()
  shape = images.get_partial_shape()
  if shape.rank.is_dynamic or shape.rank.get_length() != 4 or shape[3].is_dynamic:
    return None
  found_mean = _channel_mean(squared_difference, flat)
  found_std = _inverse_std(squared_difference)
  if found_mean is None or found_std is None:
    return None
  affine = _affine(flat, found_mean[0], found_std[0], shape[3].get_length())
  if affine is None:
    return None
  gamma, beta, output = affine
  return images, output, found_mean[1], found_std[1], gamma, beta


def fuse_group_norms(model):
  """Replaces, in place, every tfexperts GroupNorm subgraph of the converted `model`
  (`openvino.Model`) by opset12 GroupNormalization; returns how many it replaced."""
  count = 0
  for node in [n for n in model.get_ordered_ops() if _kind(n) == "SquaredDifference"]:
    found = _match(node)
    if found is None:
      continue
    images, output, groups, epsilon, gamma, beta = found
    channels_first = opset12.transpose(images, opset12.constant(np.array([0, 3, 1, 2], np.int64)))
    normalised = opset12.group_normalization(channels_first, opset12.constant(gamma),
                                             opset12.constant(beta), groups, epsilon)
    channels_last = opset12.transpose(normalised,
                                      opset12.constant(np.array([0, 2, 3, 1], np.int64)))
    output.output(0).replace(channels_last.output(0))
    count += 1
  if count:
    model.validate_nodes_and_infer_types()
  return count
