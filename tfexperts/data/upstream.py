"""Upstream data for experts: domains chosen from a label hierarchy, and per-expert tf.data slices.

An example's domains are all ancestors (inclusive) of all its labels, so with multi-label data one
image lies in many domains and expert slices overlap. Expert domains are chosen automatically:
count images per hierarchy node, keep nodes with at least `min_count` images, and take the
`top_k` largest (ties broken by name). Roots (nodes without parents) are excluded by default: a
root holds the whole dataset, which is the baseline's data, not an expert's.

Works on any tfds dataset given its image key and label key. Supported label features:

* `ClassLabel` (one int per image, e.g. ImageNet-1k, the shapes datasets),
* `Sequence(ClassLabel)` (a list of class ids per image, e.g. ImageNet-21k style multi-label),
* a multi-hot `Tensor` of shape `[num_classes]` (then `class_names` must be given).

Dataset elements are dicts: `image` (after preprocessing; default float32 in [0, 1]),
`labels` (multi-hot float32 `[num_classes]`, the upstream targets for every kind of label),
`label` (int32 class id; single-label datasets only) and, for expert pipelines, `expert_id`
(int32, the domain's index in the chosen list, used to route examples through an adapter bank).
Membership is a precomputed dense `[num_classes, num_domains]` bool table gathered by label inside
`Dataset.filter`, before any image is decoded.
"""
import dataclasses

import numpy as np
from scipy import sparse
import tensorflow as tf
import tensorflow_datasets as tfds

from tfexperts import errors
from tfexperts import fileio
from tfexperts.data import hierarchy as hierarchy_lib
from tfexperts.data import pipeline
from tfexperts.data import preprocess as pp

LABEL_KINDS = ("single", "sequence", "multi_hot")
DEFAULT_PREPROCESS = "value_range(0, 1)"  # run after decoding


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """How a dataset stores labels: `kind` (one of LABEL_KINDS) and its class names (id order)."""
  kind: str
  class_names: tuple

  @property
  def num_classes(self):
    return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class Domain:
  """A chosen expert domain: its expert id (rank), hierarchy node name and image count."""
  expert_id: int
  name: str
  count: int


def label_spec(features, label_key, class_names=None):
  """Finds how `features[label_key]` stores labels.

  Takes a tfds `FeaturesDict`, the label key, and optional class names (required for multi-hot
  tensors; for ClassLabel features they replace the feature's own names, e.g. to match hierarchy
  node ids). Returns a `LabelSpec`. Raises ValueError on a missing key or unsupported feature.
  """
  if label_key not in features.keys():
    raise errors.UserError(f"Label key {label_key!r} is not a feature of the dataset. Available "
                           f"keys: {sorted(features.keys())}")
  feature = features[label_key]
  if isinstance(feature, tfds.features.ClassLabel):
    kind, names = "single", feature.names
  elif (isinstance(feature, tfds.features.Sequence) and
        isinstance(feature.feature, tfds.features.ClassLabel)):
    kind, names = "sequence", feature.feature.names
  elif (isinstance(feature, tfds.features.Tensor) and len(feature.shape) == 1 and
        feature.shape[0]):
    if class_names is None:
      raise errors.UserError(f"Label {label_key!r} is a multi-hot tensor of shape {feature.shape}"
                             "; pass `class_names` (one name per position) to map it onto the "
                             "hierarchy.")
    kind, names = "multi_hot", class_names
  else:
    raise errors.UserError(f"Label {label_key!r} must be a ClassLabel, a Sequence of ClassLabel "
                           f"or a 1-D multi-hot Tensor. Received feature: {feature!r}")
  if class_names is not None:
    if len(class_names) != len(names):
      raise ValueError(f"`class_names` must have one name per class ({len(names)}). Received "
                       f"{len(class_names)} names.")
    names = class_names
  return LabelSpec(kind, tuple(str(n) for n in names))


def multi_hot(label, spec):
  """Maps one example's label tensor to a multi-hot bool vector `[num_classes]` (in TF)."""
  if spec.kind == "single":
    return tf.one_hot(tf.cast(label, tf.int32), spec.num_classes, on_value=True, off_value=False)
  if spec.kind == "sequence":
    ids = tf.cast(label, tf.int32)
    hits = tf.scatter_nd(ids[:, None], tf.ones_like(ids), [spec.num_classes])
    return hits > 0
  return tf.cast(label, tf.bool)


def node_matrix(hierarchy, class_names):
  """Sparse `[num_classes, num_nodes]` 0/1 CSR matrix: row c marks class c and its ancestors."""
  rows = hierarchy.class_ancestors(class_names)
  indptr = np.cumsum([0] + [len(r) for r in rows])
  indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  return sparse.csr_matrix((np.ones(len(indices), np.int64), indices, indptr),
                           shape=(len(class_names), len(hierarchy)))


def count_nodes(label_batches, matrix):
  """Counts images per hierarchy node.

  Args:
    label_batches: iterable of `[batch, num_classes]` label indicator matrices (scipy sparse or
      dense 0/1 arrays); an image counts once for a node when any of its labels is under it.
    matrix: the class-to-node matrix from `node_matrix`.

  Returns:
    `(counts, num_images)`: int64 array `[num_nodes]` and the number of images seen.
  """
  counts, num_images = np.zeros(matrix.shape[1], np.int64), 0
  for batch in label_batches:
    batch = sparse.csr_matrix(batch, dtype=np.int64)
    hits = batch @ matrix  # [batch, nodes]; one stored entry per (image, node) reached
    hits.eliminate_zeros()
    counts += np.bincount(hits.indices, minlength=matrix.shape[1])
    num_images += batch.shape[0]
  return counts, num_images


def choose_domains(node_names, counts, top_k=None, min_count=1, exclude=()):
  """Picks expert domains: nodes with >= `min_count` images, the `top_k` largest, not `exclude`d.

  Takes node names, their counts (same order), `top_k` (positive int, or None for all), the
  minimum count and names to skip. Returns a list of `Domain` sorted by count (descending), then
  name; `expert_id` is the position in that list.
  """
  if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0):
    raise ValueError(f"`top_k` must be a positive integer or None. Received: top_k={top_k!r}")
  pipeline.check_non_negative_int("min_count", min_count)
  if len(node_names) != len(counts):
    raise ValueError(f"Got {len(node_names)} node names but {len(counts)} counts.")
  exclude = set(exclude)
  ranked = sorted(((-int(c), n) for n, c in zip(node_names, counts)
                   if int(c) >= min_count and n not in exclude))
  return [Domain(i, name, -negative) for i, (negative, name) in enumerate(ranked[:top_k])]


def format_domains(domains, num_images):
  """Returns a printable table of domains: expert id, node name, images and share of the data."""
  width = max([len(d.name) for d in domains] + [6])
  lines = [f"{'expert':>6}  {'domain':<{width}}  {'images':>9}  share"]
  for d in domains:
    share = d.count / num_images if num_images else 0.0
    lines.append(f"{d.expert_id:>6}  {d.name:<{width}}  {d.count:>9}  {share:6.1%}")
  return "\n".join(lines)


def save_domains(path, domains, **metadata):
  """Writes domains (and JSON-serializable `metadata`, e.g. dataset, split) to `path` atomically.

  The file holds `{"domains": [{"expert_id", "name", "count"}, ...], **metadata}`. Returns `path`.
  """
  if "domains" in metadata:
    raise ValueError("`metadata` may not use the key 'domains'.")
  return fileio.write_json_atomic(
      path, {**metadata, "domains": [dataclasses.asdict(d) for d in domains]})


def load_domains(path):
  """Reads a file written by `save_domains`; returns `(list of Domain, metadata dict)`."""
  data = dict(fileio.read_json(path))
  domains = [Domain(int(d["expert_id"]), str(d["name"]), int(d["count"]))
             for d in data.pop("domains")]
  if [d.expert_id for d in domains] != list(range(len(domains))):
    raise ValueError(f"Domain file {path!r} must list expert ids 0..{len(domains) - 1} in order. "
                     f"Received: {[d.expert_id for d in domains]}")
  return domains, data


class Upstream:
  """One split of a prepared tfds dataset together with its label hierarchy.

  Args:
    name: tfds name, with optional config and version (e.g. "tfexperts_shapes/demo").
    hierarchy: a `Hierarchy` or a path to a hierarchy file (see `tfexperts.data.hierarchy`).
    split: tfds split string (slicing allowed, e.g. "train[:90%]").
    data_dir: tfds data dir (local or gs://); None for tfds's default.
    image_key, label_key: feature keys of the image and of the labels.
    class_names: node names of the classes, in class-id order (default: the ClassLabel names).

  Raises ValueError when the dataset is not prepared, a key is missing, the label feature is
  unsupported, or a class is not a hierarchy node.
  """

  def __init__(self, name, hierarchy, *, split="train", data_dir=None, image_key="image",
               label_key="label", class_names=None):
    self.name, self.split, self.data_dir = name, split, data_dir
    self.image_key, self.label_key = image_key, label_key
    self.hierarchy = (hierarchy if isinstance(hierarchy, hierarchy_lib.Hierarchy)
                      else hierarchy_lib.load_hierarchy(hierarchy))
    try:
      self.builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise errors.UserError(f"Unknown tfds dataset {name!r}: {str(e).splitlines()[0]}") from e
    if not self.builder.is_prepared():
      raise errors.UserError(f"Dataset {name!r} is not prepared in {self.builder.data_dir}. Build "
                             "it first (tfexperts.data.offline.prepare_offline_datasets for the "
                             "offline datasets, `tfds build` for others).")
    features = self.builder.info.features
    if image_key not in features.keys():
      raise errors.UserError(f"Image key {image_key!r} is not a feature of {name!r}. Available "
                             f"keys: {sorted(features.keys())}")
    self.spec = label_spec(features, label_key, class_names)
    self.hierarchy.check_classes(self.spec.class_names)
    self.num_images = self.builder.info.splits[split].num_examples  # also validates the split
    self._matrix = None

  @property
  def class_names(self):
    return self.spec.class_names

  @property
  def num_classes(self):
    return self.spec.num_classes

  def raw_dataset(self):
    """Returns the split as `{"image": encoded image, "label": raw label}`, in a fixed order."""
    decoders = None
    if isinstance(self.builder.info.features[self.image_key], tfds.features.Image):
      decoders = {self.image_key: tfds.decode.SkipDecoding()}  # decoded after filtering
    ds = self.builder.as_dataset(split=self.split, shuffle_files=False, decoders=decoders)
    return ds.map(lambda ex: {"image": ex[self.image_key], "label": ex[self.label_key]})

  def _label_batches(self, batch_size):
    labels = self.raw_dataset().map(lambda ex: ex["label"])
    if self.spec.kind == "single":
      for batch in labels.batch(batch_size):
        ids = batch.numpy()
        yield sparse.csr_matrix((np.ones(len(ids), np.int64), ids, np.arange(len(ids) + 1)),
                                shape=(len(ids), self.num_classes))
    elif self.spec.kind == "sequence":
      for batch in labels.ragged_batch(batch_size):
        ids, splits = batch.flat_values.numpy(), batch.row_splits.numpy()
        yield sparse.csr_matrix((np.ones(len(ids), np.int64), ids, splits),
                                shape=(len(splits) - 1, self.num_classes))
    else:
      for batch in labels.batch(batch_size):
        yield sparse.csr_matrix(batch.numpy().astype(bool))

  def count_nodes(self, batch_size=4096):
    """Counts images per hierarchy node; returns `{node: count}` in hierarchy node order."""
    if self._matrix is None:
      self._matrix = node_matrix(self.hierarchy, self.class_names)
    counts, _ = count_nodes(self._label_batches(batch_size), self._matrix)
    return dict(zip(self.hierarchy.nodes, counts.tolist()))

  def choose_domains(self, top_k=None, min_count=1, exclude_roots=True, exclude=(), counts=None):
    """Chooses expert domains (see `choose_domains`); roots are excluded unless told otherwise.

    `counts` may be a precomputed `count_nodes()` result. Returns a list of `Domain`.
    """
    counts = self.count_nodes() if counts is None else counts
    skip = set(exclude) | (set(self.hierarchy.roots) if exclude_roots else set())
    return choose_domains(list(counts), list(counts.values()), top_k, min_count, skip)

  def membership(self, domains):
    """Dense `[num_classes, len(domains)]` bool table: is class c inside domain k."""
    return self.hierarchy.ancestor_matrix(self.class_names, [d.name for d in domains])

  def _targets(self, features):
    out = {"image": features["image"],
           "labels": tf.cast(multi_hot(features["label"], self.spec), tf.float32)}
    if self.spec.kind == "single":
      out["label"] = tf.cast(features["label"], tf.int32)
    return out

  def _in_domain(self, column):
    """Returns a filter predicate: does an example have a label inside the domain `column`."""
    column = tf.constant(column)
    if self.spec.kind == "single":
      return lambda ex: tf.gather(column, tf.cast(ex["label"], tf.int32))
    if self.spec.kind == "sequence":
      return lambda ex: tf.reduce_any(tf.gather(column, tf.cast(ex["label"], tf.int32)))
    return lambda ex: tf.reduce_any(tf.logical_and(tf.cast(ex["label"], tf.bool), column))

  def _preprocess_fn(self, preprocess):
    return pp.compose("decode", DEFAULT_PREPROCESS if preprocess is None else preprocess)

  def _expert_slice(self, domains, expert_id):
    if not 0 <= expert_id < len(domains):
      raise ValueError(f"`expert_id` must be in [0, {len(domains)}). Received: "
                       f"expert_id={expert_id!r}")
    column = self.membership(domains)[:, expert_id]
    ds = self.raw_dataset().filter(self._in_domain(column))
    return ds.map(lambda ex: {**self._targets(ex), "expert_id": tf.constant(expert_id, tf.int32)})

  def baseline_dataset(self, preprocess=None, **pipeline_kwargs):
    """The whole split for the baseline: dicts `image`, `labels` (and `label` if single-label).

    `preprocess` is a preprocessing spec run on the decoded uint8 image (default
    `DEFAULT_PREPROCESS`: values to [0, 1] at the stored size); `pipeline_kwargs` go to
    `pipeline.finish` (shuffle_buffer, repeat, batch_size, drop_remainder, seed). Returns a
    `tf.data.Dataset`.
    """
    ds = self.raw_dataset().map(self._targets)
    return pipeline.finish(ds, self._preprocess_fn(preprocess), **pipeline_kwargs)

  def expert_dataset(self, domains, expert_id, preprocess=None, **pipeline_kwargs):
    """Exactly the images of `domains[expert_id]`, each with `expert_id` attached.

    Takes the chosen domains, the expert's index, and the same options as `baseline_dataset`.
    Returns a `tf.data.Dataset` of dicts `image`, `labels`, (`label`), `expert_id`.
    """
    ds = self._expert_slice(domains, expert_id)
    return pipeline.finish(ds, self._preprocess_fn(preprocess), **pipeline_kwargs)

  def subset_dataset(self, mask, expert_id=None, preprocess=None, **pipeline_kwargs):
    """The examples whose position in the split has `mask[position]` True, e.g. a random control
    slice of the same size as an expert's. Takes a `[num_images]` bool mask, an optional expert
    id to attach, and the options of `baseline_dataset`; returns a `tf.data.Dataset`.
    """
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (self.num_images,):
      raise ValueError(f"`mask` must be a bool array of shape ({self.num_images},). Received: "
                       f"dtype={mask.dtype}, shape={mask.shape}")
    table = tf.constant(mask)
    ds = self.raw_dataset().enumerate().filter(lambda i, ex: tf.gather(table, i))
    ds = ds.map(lambda i, ex: self._targets(ex))
    if expert_id is not None:
      ds = ds.map(lambda ex: {**ex, "expert_id": tf.constant(expert_id, tf.int32)})
    return pipeline.finish(ds, self._preprocess_fn(preprocess), **pipeline_kwargs)

  def label_counts(self, batch_size=4096):
    """Label occurrences per class over the split: `[num_classes]` int64 (a multi-label image
    counts once for each of its labels)."""
    counts = np.zeros(self.num_classes, np.int64)
    for batch in self._label_batches(batch_size):
      counts += np.asarray(batch.sum(axis=0), np.int64).ravel()
    return counts

  def _example_weight(self, class_weights):
    """`example -> weight`: its class's weight, or the mean over its labels (multi-label)."""
    table = tf.constant(np.asarray(class_weights, np.float32))
    if self.spec.kind == "single":
      return lambda ex: tf.gather(table, tf.cast(ex["label"], tf.int32))
    if self.spec.kind == "sequence":
      return lambda ex: tf.math.divide_no_nan(
          tf.reduce_sum(tf.gather(table, tf.cast(ex["label"], tf.int32))),
          tf.cast(tf.size(ex["label"]), tf.float32))
    return lambda ex: tf.math.divide_no_nan(
        tf.reduce_sum(table * tf.cast(ex["label"], tf.float32)),
        tf.reduce_sum(tf.cast(ex["label"], tf.float32)))

  def weighted_dataset(self, class_weights, preprocess=None, seed=0, **pipeline_kwargs):
    """An endless stream of upstream examples drawn in proportion to per-class weights.

    Rejection sampling on the labels, before any image is decoded: the split is repeated, and the
    example at stream position i is kept when `stateless_uniform(seed, i) < w_i / max(w)`, w_i its
    weight (see `_example_weight`). So the kept examples follow the weighted distribution, each
    epoch keeps a different subset, and the stream is a function of `seed` only.

    Takes `[num_classes]` non-negative class weights (e.g. `transfer.dat_weights.class_weights`),
    and the options of `baseline_dataset` (`repeat` is implied). Returns a `tf.data.Dataset`.
    """
    weights = np.asarray(class_weights, np.float64)
    if weights.shape != (self.num_classes,) or not np.all(np.isfinite(weights)) or (
        np.any(weights < 0)) or not np.any(weights > 0):
      raise ValueError(f"`class_weights` must be {self.num_classes} finite non-negative numbers, "
                       f"not all 0. Received shape={weights.shape}")
    weight_of = self._example_weight(weights / weights.max())

    def keep(position, example):
      draw = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64), position]))
      return draw < weight_of(example)

    ds = self.raw_dataset().repeat().enumerate().filter(keep)
    ds = ds.map(lambda position, example: self._targets(example))
    pipeline_kwargs.pop("repeat", None)
    return pipeline.finish(ds, self._preprocess_fn(preprocess), seed=seed, **pipeline_kwargs)

  def experts_dataset(self, domains, preprocess=None, shuffle_buffer=1024, seed=0,
                      **pipeline_kwargs):
    """An endless mixture of all expert slices, drawn uniformly, for training an adapter bank.

    Each slice is repeated and shuffled on its own (seed + expert id), then examples are sampled
    from the slices with equal probability (seeded). Other options as `baseline_dataset`.
    """
    slices = [self._expert_slice(domains, k).repeat().shuffle(shuffle_buffer, seed=seed + k)
              for k in range(len(domains))]
    ds = tf.data.Dataset.sample_from_datasets(slices, seed=seed)
    return pipeline.finish(ds, self._preprocess_fn(preprocess), seed=seed, **pipeline_kwargs)


def select_expert_domains(upstream, top_k=None, min_count=1, exclude_roots=True, output_path=None,
                          print_fn=print):
  """Counts, chooses, prints and (optionally) saves the expert domains of an `Upstream`.

  Returns the list of `Domain`. The JSON at `output_path` (written atomically) also records the
  dataset, split, image count and the selection settings.
  """
  domains = upstream.choose_domains(top_k, min_count, exclude_roots)
  if print_fn:
    print_fn(f"Expert domains of {upstream.name} [{upstream.split}] ({upstream.num_images} images,"
             f" top_k={top_k}, min_count={min_count}, roots excluded={exclude_roots}):\n"
             + format_domains(domains, upstream.num_images))
  if output_path:
    save_domains(output_path, domains, dataset=upstream.name, split=upstream.split,
                 num_images=upstream.num_images, top_k=top_k, min_count=min_count,
                 exclude_roots=exclude_roots, roots=list(upstream.hierarchy.roots))
  return domains
