"""Label hierarchies: a DAG of "is-a" edges between named nodes (a class may have several parents).

Two plain file formats are read, chosen by the file extension:

* JSON (`.json`): an object with `"edges"`, a list of `[child, parent]` pairs, and optionally
  `"nodes"`, the list of every node. When `"nodes"` is given, an edge naming any other node is an
  error (a typo check); nodes without edges (e.g. a lone root) must be listed there. Other keys
  (e.g. `"description"`) are ignored.

      {"nodes": ["shape", "polygon", "triangle"],
       "edges": [["polygon", "shape"], ["triangle", "polygon"]]}

* TSV (`.tsv`, `.txt`): one `child<TAB>parent` edge per line; a line with a single name declares a
  node without parents. Blank lines and lines starting with `#` are ignored.

Node order (the column order of `ancestor_matrix`) is the order of first appearance in the file.
Cycles (including self-loops) and empty names are rejected.
"""
import json

import numpy as np
import tensorflow as tf

from tfexperts import errors
from tfexperts import fileio
from tfexperts.errors import UserError

FORMATS = (".json", ".tsv", ".txt")


class Hierarchy:
  """An "is-a" DAG over named nodes.

  Args:
    edges: iterable of `(child, parent)` name pairs; duplicates are ignored.
    nodes: optional sequence of every node name. When given, edges may only use these names.

  Raises ValueError on empty or non-string names, unknown nodes (when `nodes` is given), or a
  cycle (the message shows it, e.g. `a -> b -> a`).
  """

  def __init__(self, edges, nodes=None):
    self._parents = {}
    declared = None
    if nodes is not None:
      declared = set()
      for node in nodes:
        _check_name(node, "node")
        declared.add(node)
        self._parents.setdefault(node, [])
    unknown = []
    for edge in edges:
      if not isinstance(edge, (tuple, list)) or len(edge) != 2:
        raise errors.UserError("Each hierarchy edge must be a (child, parent) pair. Received: "
                               f"{edge!r}")
      child, parent = edge
      _check_name(child, "child")
      _check_name(parent, "parent")
      if declared is not None:
        unknown += [n for n in (child, parent) if n not in declared and n not in unknown]
      self._parents.setdefault(child, [])
      self._parents.setdefault(parent, [])
      if parent not in self._parents[child]:
        self._parents[child].append(parent)
    if unknown:
      raise errors.UserError(f"Hierarchy edges name {len(unknown)} node(s) missing from the "
                             f"declared nodes: {_preview(unknown)}")
    self.nodes = tuple(self._parents)
    self.index = {node: i for i, node in enumerate(self.nodes)}
    self._children = {node: [] for node in self.nodes}
    for child, parents in self._parents.items():
      for parent in parents:
        self._children[parent].append(child)
    self._topological = _topological_order(self.nodes, self._parents)
    self._ancestors = {}
    for node in self._topological:  # parents come first, so their sets are ready
      ancestors = {node}
      for parent in self._parents[node]:
        ancestors |= self._ancestors[parent]
      self._ancestors[node] = frozenset(ancestors)

  def __len__(self):
    return len(self.nodes)

  def __contains__(self, node):
    return node in self.index

  @property
  def roots(self):
    """Nodes without parents, in node order."""
    return tuple(n for n in self.nodes if not self._parents[n])

  @property
  def edges(self):
    """All `(child, parent)` pairs, in node order."""
    return tuple((c, p) for c in self.nodes for p in self._parents[c])

  def parents(self, node):
    """Returns the direct parents of `node` (a tuple of names)."""
    return tuple(self._parents[self._check_known(node)])

  def children(self, node):
    """Returns the direct children of `node` (a tuple of names)."""
    return tuple(self._children[self._check_known(node)])

  def ancestors(self, node):
    """Returns the frozenset of all ancestors of `node`, including `node` itself."""
    return self._ancestors[self._check_known(node)]

  def check_classes(self, class_names):
    """Raises ValueError naming every class of `class_names` that is not a hierarchy node."""
    unknown = [c for c in class_names if c not in self.index]
    if unknown:
      raise errors.UserError(f"{len(unknown)} of {len(class_names)} dataset classes are not in "
                             f"the hierarchy ({len(self.nodes)} nodes): {_preview(unknown)}")

  def class_ancestors(self, class_names):
    """Maps each class to its ancestor node indices.

    Takes the dataset's class names (index = class id); returns a list (one entry per class) of
    sorted int arrays of node indices (into `nodes`) of the class and all its ancestors.
    Raises ValueError listing the classes that are not nodes.
    """
    self.check_classes(class_names)
    return [np.array(sorted(self.index[a] for a in self._ancestors[c]), np.int64)
            for c in class_names]

  def ancestor_matrix(self, class_names, domains=None):
    """Dense membership table: `[num_classes, num_domains]` bool.

    Entry `[c, d]` is True when domain `d` is class `c` or one of its ancestors. `domains` is a
    sequence of node names (default: all nodes, in node order). Raises ValueError on unknown
    classes or domains.
    """
    self.check_classes(class_names)
    domains = self.nodes if domains is None else tuple(domains)
    unknown = [d for d in domains if d not in self.index]
    if unknown:
      raise errors.UserError(f"Unknown domain node(s): {_preview(unknown)}")
    column = {d: j for j, d in enumerate(domains)}
    matrix = np.zeros((len(class_names), len(domains)), bool)
    for i, name in enumerate(class_names):
      for ancestor in self._ancestors[name]:
        if ancestor in column:
          matrix[i, column[ancestor]] = True
    return matrix

  def to_json_dict(self):
    """Returns the JSON form `{"nodes": [...], "edges": [[child, parent], ...]}`."""
    return {"nodes": list(self.nodes), "edges": [list(e) for e in self.edges]}

  def save(self, path):
    """Writes the hierarchy as JSON to `path` atomically (through tf.io.gfile); returns `path`."""
    return fileio.write_json_atomic(path, self.to_json_dict())

  def _check_known(self, node):
    if node not in self.index:
      raise errors.UserError(f"Unknown hierarchy node {node!r}. The hierarchy has "
                             f"{len(self.nodes)} nodes, e.g. {_preview(self.nodes)}."
                             f"{errors.did_you_mean(node, self.nodes)}")
    return node


def _check_name(name, what):
  if not isinstance(name, str) or not name.strip() or name != name.strip():
    raise errors.UserError(f"Hierarchy {what} names must be non-empty strings without surrounding "
                           f"whitespace. Received: {name!r}")


def _preview(names, limit=10):
  shown = ", ".join(repr(n) for n in list(names)[:limit])
  return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _topological_order(nodes, parents):
  """Orders nodes so parents precede children; raises ValueError showing a cycle if there is one."""
  order, state = [], {}  # state: 1 = on the current path, 2 = done
  for start in nodes:
    if state.get(start):
      continue
    stack, path = [(start, iter(parents[start]))], [start]
    state[start] = 1
    while stack:
      node, pending = stack[-1]
      parent = next(pending, None)
      if parent is None:
        stack.pop()
        path.pop()
        state[node] = 2
        order.append(node)
      elif state.get(parent) == 1:
        cycle = path[path.index(parent):] + [parent]
        raise errors.UserError("The label hierarchy must be acyclic, but it has the cycle (child "
                               f"-> parent): {' -> '.join(cycle)}")
      elif not state.get(parent):
        state[parent] = 1
        stack.append((parent, iter(parents[parent])))
        path.append(parent)
  return order


def parse_json(text):
  """Parses the JSON hierarchy format (see module docstring); returns a `Hierarchy`."""
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise errors.UserError(f"Hierarchy JSON is not valid JSON: {e}") from e
  if not isinstance(data, dict) or "edges" not in data:
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise errors.UserError("Hierarchy JSON must be an object with an 'edges' list of [child, "
                           f"parent] pairs (and optionally 'nodes'). Received keys: {keys}")
  return Hierarchy(data["edges"], nodes=data.get("nodes"))


def parse_tsv(text):
  """Parses the TSV hierarchy format (`child<TAB>parent` lines); returns a `Hierarchy`."""
  edges, nodes, seen = [], [], set()
  lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
           if line.strip() and not line.lstrip().startswith("#")]
  has_tabs = any("\t" in line for _, line in lines)
  for number, line in lines:
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) not in (1, 2):
      raise UserError(f"Hierarchy TSV line {number} must be 'child<TAB>parent' or a single node "
                      f"name. Received: {line!r}")
    if not has_tabs and len(line.split()) > 1:
      # Without a single tab the file has no edge at all: spaces were most likely meant as tabs.
      raise UserError(f"Hierarchy TSV line {number} is {line!r}: no line of the file has a tab, "
                      "so it would be one node with spaces in its name and the hierarchy would "
                      "have no edges. Separate child and parent with a tab character.")
    for name in fields:  # keep first-appearance order for nodes
      if name not in seen:
        seen.add(name)
        nodes.append(name)
    if len(fields) == 2:
      edges.append(tuple(fields))
  return Hierarchy(edges, nodes=nodes)


def load_hierarchy(path):
  """Reads a hierarchy file (JSON, or TSV for `.tsv`/`.txt`) through tf.io.gfile.

  Returns a `Hierarchy`. Raises UserError (a ValueError) naming the file when it is missing, has
  an unknown extension or holds an invalid hierarchy.
  """
  lower = str(path).lower()
  if not lower.endswith(FORMATS):
    raise errors.UserError(f"Hierarchy files must end with one of {FORMATS}. Received: {path!r}")
  if not tf.io.gfile.exists(path):
    raise errors.MissingFileError(f"Hierarchy file {path!r} does not exist.")
  with tf.io.gfile.GFile(path, "r") as f:
    text = f.read()
  try:
    return parse_json(text) if lower.endswith(".json") else parse_tsv(text)
  except errors.UserError as e:
    raise errors.UserError(f"Hierarchy file {path!r}: {e}") from e
