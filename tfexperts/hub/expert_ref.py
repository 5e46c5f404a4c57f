"""An expert module as a value: its handle resolved once, at the edge, into everything below needs.

A handle is a string (a path, a URL, `PATH?range=-1,1`); an `ExpertRef` is what it names: the
resolved SavedModel directory (`location`), the handle's options (the input range), the module's
`ModuleMetadata` (hence its resolution), its name and, on first use, its content identity. The
edge (`hub.load.reference`, which `load_expert`, `load_collection`, `selection.load_candidates`
and the public `transfer.apply` / `transfer.export` call) builds it; selection, fine-tuning,
artifacts and reports take it and never parse or resolve the handle again. Records still write
`handle`, the string as the user gave it.
"""
import dataclasses
import functools

from tfexperts.hub import identity as identity_lib
from tfexperts.hub import metadata as metadata_lib
from tfexperts.hub import third_party


@dataclasses.dataclass(frozen=True)
class ExpertRef:
  """A resolved expert module.

  Attributes:
    handle: the handle as given, options included: what records, reports and messages show.
    location: the local (or gs://) SavedModel directory it resolved to.
    metadata: the module's `hub.metadata.ModuleMetadata` (`absent()` for third-party modules).
    name: the module's name (metadata `module`, else `name`, else from the handle).
    options: the handle's options as sorted `(option, value)` pairs (`third_party.OPTIONS`).
  """
  handle: str
  location: str
  metadata: metadata_lib.ModuleMetadata
  name: str
  options: tuple = ()

  @property
  def input_range(self):
    """`(low, high)` the module takes its images in (`?range=`; default (0, 1))."""
    return dict(self.options).get("range", third_party.DEFAULT_RANGE)

  @property
  def has_options(self):
    """True when the handle declares options (the module then runs from its SavedModel)."""
    return bool(self.options)

  @property
  def resolution(self):
    """The image size the metadata says the module is fed at (`metadata.input_resolution`)."""
    return metadata_lib.input_resolution(self.metadata)

  @functools.cached_property
  def identity(self):
    """Digest of the module's content (`identity.of_directory`), computed on first use."""
    return identity_lib.of_directory(self.location)


def check(value, what):
  """`value` when it is an `ExpertRef`; else TypeError naming `what` and the value received (a
  handle string must be resolved at the edge, `hub.load.reference`)."""
  if not isinstance(value, ExpertRef):
    raise TypeError(f"{what} takes an ExpertRef (a handle resolved once by "
                    f"tfexperts.hub.load.reference). Received: {value!r}")
  return value
