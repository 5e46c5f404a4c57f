"""Published collections: named, versioned lists of public hub handles shipped with the package.

`tfhub:NAME` (e.g. `tfhub:bit-experts-r50x1-in21k`) names the data file
`tfexperts/hub/collections/NAME.json`:

  {"format": FORMAT, "name": NAME, "version": int, "description": ..., "source": [citations],
   "input": {"range": [0, 1], "resolution": 224}, "feature_dim": int,
   "modules": [{"name", "kind" (baseline / full), "node", "handle"}, ...]}

Handles are remote (tfhub.dev) URLs: they resolve through `tensorflow_hub`'s own resolver and
cache (`TFHUB_CACHE_DIR`, default `<tmp>/tfhub_modules`), so a machine whose cache already holds
the modules needs no network.
"""
import dataclasses
import json
import os

from tfexperts.errors import UserError, did_you_mean
from tfexperts.hub import load as hub_load
from tfexperts.hub import metadata as metadata_lib

PREFIX = "tfhub:"
FORMAT = "tfexperts.hub.published/1"
COLLECTIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "collections")


def is_published(spec):
  """True when `spec` names a published collection ("tfhub:NAME")."""
  return isinstance(spec, str) and spec.startswith(PREFIX)


def names():
  """Sorted names of the published collections shipped with the package."""
  return sorted(f[:-len(".json")] for f in os.listdir(COLLECTIONS_DIR) if f.endswith(".json"))


def read(spec):
  """The data dict of published collection `spec` ("tfhub:NAME" or NAME).

  Raises UserError listing the known names when there is none of that name.
  """
  name = spec[len(PREFIX):] if is_published(spec) else spec
  if name not in names():
    raise UserError(f"Unknown published collection {spec!r}. Known: "
                    f"{[PREFIX + n for n in names()]}."
                    f"{did_you_mean(spec, [PREFIX + n for n in names()] + names())}")
  with open(os.path.join(COLLECTIONS_DIR, f"{name}.json")) as f:
    data = json.load(f)
  if data.get("format") != FORMAT or not isinstance(data.get("modules"), list):
    raise ValueError(f"Published collection file {name}.json is not in format {FORMAT!r}.")
  return data


def load_published(spec, lazy=True):
  """Experts (`hub.load.Expert`) of published collection `spec`, in file order.

  Each handle is resolved now through tensorflow_hub (cache, else download) and loaded on first
  use (`lazy=True`) or now. The expert's metadata is `ModuleMetadata.absent` (the modules carry
  no tfexperts metadata) with what the collection lists: name (as `module` too), kind, node and
  input resolution. Raises UserError for an unknown name, OSError (naming the handle) when a
  module is neither cached nor reachable.
  """
  data = read(spec)
  experts = []
  for entry in data["modules"]:
    metadata = metadata_lib.ModuleMetadata.absent(
        module=entry["name"], name=entry["name"], kind=entry["kind"], node=entry["node"],
        resolution=data["input"]["resolution"])
    ref = dataclasses.replace(hub_load.reference(entry["handle"]), name=entry["name"],
                              metadata=metadata)
    experts.append(hub_load.load_expert(ref, lazy=lazy))
  return experts
