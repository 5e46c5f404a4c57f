"""Loading hub modules as callables with their metadata: one handle, or a whole collection.

A handle is a local or `gs://` path, a `file://` URL, or a remote handle (tfhub.dev / Kaggle URL),
which goes through `tensorflow_hub` (`hub.resolve` downloads and caches it). Modules written by
`tfexperts.hub.export` carry `assets/metadata.json` (a `metadata.ModuleMetadata`); others (e.g.
the published BiT experts, `https://tfhub.dev/google/experts/bit/r50x1/in21k/<name>/1`) load with
`ModuleMetadata.absent()` and a name taken from the handle. Every module is checked on load: it must map a few images to a `[b, d]`
float feature tensor. Third-party SavedModels work too (`third_party`: `__call__`, `serve` or a
signature; `HANDLE?range=-1,1` for modules expecting another input range).

Handles are resolved once, here (`reference`: the edge), into an `expert_ref.ExpertRef` that every
`Expert` carries and that selection and fine-tuning take.

    experts = load_collection("export/my_collection").experts  # or load_expert(handle)
    features = experts[0].embed(images)                         # [b, d] float32 tf.Tensor
"""
import dataclasses
import os
import re
import typing

import numpy as np
import tensorflow as tf

from tfexperts import errors
from tfexperts.errors import UserError
from tfexperts.hub import expert_ref
from tfexperts.hub import index as index_lib
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import module as module_lib
from tfexperts.hub import third_party
from tfexperts.hub.tfhub import hub
from tfexperts.models import inputs

_REMOTE = re.compile(r"^https?://", re.IGNORECASE)
_TEMP_NAME = re.compile(r"\.tmp-[0-9a-f]{32}$")


def name_from_handle(handle):
  """The last path component of `handle` that is not a version number (query string dropped).

  `https://tfhub.dev/google/experts/bit/r50x1/in21k/animal/1` -> "animal".
  """
  parts = [p for p in handle.split("?")[0].rstrip("/").split("/") if p]
  while len(parts) > 1 and parts[-1].isdigit():
    parts.pop()
  return parts[-1] if parts else handle


def _local_path(handle):
  return handle[len("file://"):] if handle.startswith("file://") else handle


def is_collection_handle(handle):
  """True when `handle` names a collection directory (local, `file://` or `gs://`; with an
  index), False for a module path, a remote URL or anything else."""
  return not _REMOTE.match(handle) and index_lib.is_collection(_local_path(handle))


def _check_handle(handle):
  if not isinstance(handle, str) or not handle:
    raise ValueError(f"A hub handle must be a non-empty string. Received: {handle!r}")


def resolve(handle):
  """Local (or gs://) directory of the module `handle`; fetches remote handles via tensorflow_hub.

  Raises FileNotFoundError when a path does not exist, ValueError when it is not a SavedModel
  directory (or is an unfinished export's temp directory), OSError when a remote handle cannot be
  fetched; every message names the handle.
  """
  _check_handle(handle)
  return _locate(third_party.split_options(handle)[0])  # "?range=..." is ours, not the module's


def reference(handle):
  """The edge: `handle` (a str) resolved once into an `expert_ref.ExpertRef` (location, options,
  metadata, name); an `ExpertRef` is returned as it is.

  Raises UserError naming the handle for bad options (before anything is fetched), and as
  `resolve` for a handle that names no module.
  """
  if isinstance(handle, expert_ref.ExpertRef):
    return handle
  _check_handle(handle)
  base, options = third_party.split_options(handle)
  location = _locate(base)
  metadata = metadata_lib.read(location)
  return expert_ref.ExpertRef(handle, location, metadata, _name(handle, metadata),
                              tuple(sorted(options.items())))


def _locate(handle):
  """`resolve` of a handle without options."""
  if _REMOTE.match(handle):
    try:
      return hub.resolve(handle)
    except Exception as e:  # tensorflow_hub raises many types (URLError, IOError, ValueError...)
      raise errors.UnreachableError(f"Could not fetch hub handle {handle!r}: {type(e).__name__}: "
                                    f"{e}") from e
  path = _local_path(handle).rstrip("/")
  if _TEMP_NAME.search(path):
    raise errors.UserError(f"Hub handle {handle!r} is the temp directory of an unfinished export, "
                           "not a module.")
  if not tf.io.gfile.exists(path):
    raise errors.MissingFileError(f"Hub handle {handle!r} does not exist.")
  if not tf.io.gfile.exists(os.path.join(path, tf.saved_model.SAVED_MODEL_FILENAME_PB)):
    hint = (" It is a collection: use load_collection." if
            index_lib.is_collection(path) else "")
    raise errors.UserError(f"Hub handle {handle!r} is not a SavedModel: no "
                           f"{tf.saved_model.SAVED_MODEL_FILENAME_PB} in {path!r}.{hint}")
  return path


def fixed_input_size(module):
  """`(height, width)` when every traced `__call__` of a loaded module takes only that image size
  (a fixed input signature, common on TF Hub), else None."""
  functions = getattr(getattr(module, "__call__", None), "concrete_functions", None) or []
  sizes = set()
  for function in functions:
    args = function.structured_input_signature[0]
    spec = args[0] if args else None
    if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 4:
      return None
    sizes.add(tuple(spec.shape[1:3]))
  if len(sizes) != 1 or None in next(iter(sizes)):
    return None
  return next(iter(sizes))


def _probe_images(metadata, size=None, count=2):
  resolution = metadata_lib.input_resolution(metadata)
  height, width = size or (resolution, resolution)
  images = np.random.default_rng(0).uniform(size=(count, height, width, 3))
  return tf.constant(images, tf.float32)


def _check_features(handle, outputs, count):
  if isinstance(outputs, dict):
    raise errors.UserError(f"Hub handle {handle!r} returns a dict (keys {sorted(outputs)}), not a "
                           "[batch, d] feature tensor.")
  if not isinstance(outputs, tf.Tensor) or outputs.shape.rank != 2 or (
      outputs.shape[0] != count) or not outputs.dtype.is_floating:
    shape = getattr(outputs, "shape", None)
    dtype = getattr(outputs, "dtype", type(outputs).__name__)
    raise errors.UserError(f"Hub handle {handle!r} is not a feature-vector module: on images ["
                           f"{count}, h, w, 3] it returns shape {shape} dtype {dtype}, expected ["
                           f"{count}, d] float.")


def load_checked(ref, with_ids=False):
  """Loads the module of `ref` (an `ExpertRef`) and checks it maps images (and ids) to `[b, d]`
  features.

  Returns the loaded object (`hub.load`). Raises ValueError naming the handle when it does not
  load, has no `__call__`, fails on probe images or returns something else.
  """
  handle, metadata = ref.handle, ref.metadata
  try:
    module = hub.load(ref.location)
  except Exception as e:  # a corrupt or incompatible SavedModel
    raise UserError(f"Hub handle {handle!r} could not be loaded as a SavedModel: "
                     f"{type(e).__name__}: {e}") from e
  images = _probe_images(metadata, fixed_input_size(module))
  # __call__, serve or a signature; ?range
  module = third_party.feature_module(module, handle, ref.input_range)
  args = (images, tf.zeros([images.shape[0]], tf.int32)) if with_ids else (images,)
  what = "a bank module taking (images, expert_ids)" if with_ids else "a feature-vector module"
  try:
    outputs = module(*args)
  except (TypeError, ValueError, tf.errors.OpError) as e:
    raise errors.UserError(f"Hub handle {handle!r} is not {what}: calling it on probe images "
                           f"{images.shape} failed: {type(e).__name__}: {e}") from e
  _check_features(handle, outputs, images.shape[0])
  return module


def _module_input(images):
  """`images` checked against the input contract (`models.inputs.prepare`), as float32.

  Also raises UserError for a rank other than 4 or a channel count other than 3."""
  images = tf.cast(inputs.prepare(images), tf.float32)
  if images.shape.rank is not None and (images.shape.rank != 4 or images.shape[-1] != 3):
    raise UserError("Images must have shape [batch, height, width, 3] (RGB); received shape "
                    f"{images.shape}.")
  return images


def _of_ref(field):
  """A read-only property giving `self.ref.<field>`."""
  return property(lambda self: getattr(self.ref, field),
                  doc=f"`ExpertRef.{field}` of the module's `ref`.")


@dataclasses.dataclass
class _LoadedModule:
  """A hub module known by its `ExpertRef` (`ref`), loaded and checked on first use of `module`."""
  ref: expert_ref.ExpertRef
  _module: typing.Any = dataclasses.field(default=None, repr=False, compare=False)
  _TAKES_EXPERT_IDS = False  # class constant: banks are probed with (images, expert_ids)
  name = _of_ref("name")
  handle = _of_ref("handle")  # as given, options included
  metadata = _of_ref("metadata")

  @property
  def kind(self):
    """Metadata `kind` (baseline / full / adapter / patch / epn / *_bank), or None if unknown."""
    return self.metadata.kind

  @property
  def input_size(self):
    """`(height, width)` the module requires (a fixed input signature), else None (any size)."""
    return fixed_input_size(self.module)

  def check_input_size(self, height, width):
    """Raises `UserError` naming the handle and both sizes when the module cannot take images of
    `height` x `width`."""
    size = self.input_size
    if size is not None and tuple(size) != (height, width):
      raise UserError(f"Module {self.handle!r} takes only {size[0]}x{size[1]} images (a fixed "
                      f"input signature); requested {height}x{width}. Use --resolution="
                      f"{size[0]} for it, or a module that takes any size.")

  @property
  def content_id(self):
    """Digest of the module's content (`ExpertRef.identity`, computed once)."""
    return self.ref.identity

  @property
  def module(self):
    """The loaded SavedModel (`hub.load`), loaded and checked on first use."""
    if self._module is None:
      self._module = load_checked(self.ref, with_ids=self._TAKES_EXPERT_IDS)
    return self._module


@dataclasses.dataclass
class Expert(_LoadedModule):
  """An expert loaded (lazily) from a hub handle.

  Attributes:
    ref: its `ExpertRef` (the resolved handle), which gives
    name: unique within its collection: the module's directory name (metadata `module`, e.g.
      "adapter_animal"), else the metadata `name`, else derived from the handle. The expert's
      domain is in the metadata (`name`, `node`).
    handle: where it is loaded from.
    metadata: the module's `ModuleMetadata` (`ModuleMetadata.absent()` for modules without
      tfexperts metadata).
  Calling the expert is `embed`.
  """

  @property
  def has_logits(self):
    """True when the module has a `logits` endpoint (the baseline's upstream head, the EPN)."""
    return hasattr(self.module, module_lib.LOGITS)

  def embed(self, images):
    """Features of `images` (`[b, h, w, 3]` floats in [0, 1], or uint8 in [0, 255], converted):
    a `[b, d]` float32 tf.Tensor. Out-of-range floats are an error (see `models.inputs`), and so
    are images of another size than a fixed-size module takes (`check_input_size`)."""
    images = _module_input(images)
    if images.shape.rank == 4 and None not in images.shape[1:3]:
      self.check_input_size(*images.shape[1:3])
    return tf.cast(self.module(images), tf.float32)

  __call__ = embed

  def logits(self, images):
    """Upstream-head logits `[b, classes]` float32; ValueError when the module has no head."""
    if not self.has_logits:
      raise ValueError(f"Module {self.handle!r} ({self.name}) has no 'logits' endpoint; only "
                       "the baseline and the expert prediction network export their head.")
    return tf.cast(self.module.logits(_module_input(images)), tf.float32)


@dataclasses.dataclass
class Bank(_LoadedModule):
  """A bank module: many experts in one SavedModel, routed per image by expert id.

  Attributes: ref (its `ExpertRef`), and from it name, handle, metadata (its `experts` list gives
  each index's name and domain).
  """
  _TAKES_EXPERT_IDS = True

  @property
  def expert_names(self):
    """Expert names by index, from the metadata."""
    return [e.name for e in self.metadata.experts or []]

  def embed(self, images, expert_ids):
    """Features `[b, d]` float32 of `images`, image i through expert `expert_ids[i]`."""
    return tf.cast(self.module(_module_input(images), tf.convert_to_tensor(expert_ids, tf.int32)),
                   tf.float32)

  __call__ = embed


def _name(handle, metadata):
  return metadata.module or metadata.name or name_from_handle(handle)


def load_expert(handle, lazy=False):
  """Loads one expert module from `handle` (path, `file://`, or tfhub/Kaggle URL; or an
  `ExpertRef`, resolved already).

  With `lazy=False` (default) the module is loaded and checked now; with `lazy=True` only the
  handle is checked now. Returns an `Expert`. Raises as `reference`, or ValueError when the module
  is not a feature-vector module (or is a bank: use `load_bank`).
  """
  ref = reference(handle)
  if ref.metadata.kind in metadata_lib.BANK_KINDS:
    raise errors.UserError(f"Hub handle {ref.handle!r} is a {ref.metadata.kind} module taking "
                           "expert ids; load it with load_bank.")
  expert = Expert(ref)
  if not lazy:
    expert.module  # pylint: disable=pointless-statement
  return expert


def load_bank(handle, lazy=False):
  """Loads a bank module (adapter or patch bank) from `handle` (or an `ExpertRef`); returns a
  `Bank`."""
  bank = Bank(reference(handle))
  if not lazy:
    bank.module  # pylint: disable=pointless-statement
  return bank


@dataclasses.dataclass
class Collection:
  """A collection's modules: `experts` (baseline / full / adapter / patch), `epn`, `banks`."""
  name: str
  directory: str
  experts: list
  epn: typing.Optional[Expert]
  banks: list

  @property
  def baseline(self):
    """The baseline expert (with its upstream head), or None."""
    return next((e for e in self.experts if e.kind == "baseline"), None)

  def get(self, name):
    """The expert, EPN or bank named `name` (its module directory name); KeyError if none."""
    everything = self.experts + self.banks + ([self.epn] if self.epn else [])
    for item in everything:
      if item.name == name:
        return item
    raise KeyError(f"No module {name!r} in collection {self.directory!r}. Modules: "
                   f"{sorted(i.name for i in everything)}")


def load_collection(directory, version=None, lazy=True, allow_incomplete=False):
  """Loads the collection at `directory` (holding index.json).

  Args:
    directory: the collection directory (local or gs:// path, or file:// URL).
    version: take this version of every module; default: each module's highest version.
    lazy: load each module on first use (default) rather than now; handles are checked now.
    allow_incomplete: accept an export that has not written every module it planned (an
      interrupted bin/export_experts); by default that is an error.

  Returns:
    A `Collection`. Raises FileNotFoundError / ValueError naming the directory or handle, and
    `UserError` for a version the collection lacks or an incomplete export.
  """
  path = _local_path(directory).rstrip("/")
  index = index_lib.read(path)
  available = index.available_versions()
  if version is not None and version not in available:
    raise UserError(f"Collection {path!r} has no version {version!r}. Available versions: "
                    f"{available}.")
  chosen = index.latest(version)
  if not allow_incomplete:
    checked = available if version is None else [version]
    incomplete = {v: index.missing(v) for v in checked if index.missing(v)}
    if incomplete:
      raise UserError(f"Collection {path!r} is incomplete: its export of version(s) "
                      f"{sorted(incomplete)} lacks modules {incomplete} (interrupted?). Rerun "
                      "bin/export_experts to finish it, or pass allow_incomplete=True to use the "
                      "modules that are there.")
  experts, banks, epn = [], [], None
  for entry in chosen:
    handle = os.path.join(path, entry.handle)
    kind = entry.kind
    if kind in metadata_lib.BANK_KINDS:
      banks.append(load_bank(handle, lazy=lazy))
    elif kind == "epn":
      epn = load_expert(handle, lazy=lazy)
    else:
      experts.append(load_expert(handle, lazy=lazy))
  return Collection(index.collection, path, experts, epn, banks)


