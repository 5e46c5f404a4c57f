"""The import graph between tfexperts' subpackages follows the layering, with no edge upward.

Layers, top to bottom: demo and cli -> transfer -> select -> hub -> train -> models, data -> the
neutral top-level modules (artifacts, side_by_side, lease and precision, then bounds and fileio,
then defaults, errors, lazy, replicated, startup_noise). Every import is counted, also those
inside functions. Run as a script to print the graph: `python tests/test_import_graph.py`.
"""
import ast
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfexperts")
LAYERS = [("demo", "cli"), ("transfer",), ("select",), ("hub",), ("train",), ("models", "data"),
          ("artifacts", "side_by_side", "lease", "precision"), ("bounds", "fileio"),
          ("defaults", "errors", "lazy", "replicated", "startup_noise", "__init__")]
RANK = {node: len(LAYERS) - i for i, layer in enumerate(LAYERS) for node in layer}


def _node(module):
  """The graph node of a dotted module name inside tfexperts ("tfexperts.hub.load" -> "hub")."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else "__init__"


def _imports(path, package):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against the file's package
        base = package.split(".")[:len(package.split(".")) - node.level + 1]
        yield ".".join(base + ([node.module] if node.module else []))
      else:
        yield node.module or ""
        for alias in node.names:  # `from tfexperts import hub` names the subpackage `hub`
          if node.module == "tfexperts":
            yield f"tfexperts.{alias.name}"


def import_graph():
  """`{(from_node, to_node): [file, ...]}` over every tfexperts file's tfexperts imports."""
  edges = {}
  for directory, _, files in os.walk(ROOT):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(directory, name)
      rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
      package = rel.rsplit(".", 1)[0] if not rel.endswith("__init__") else rel[:-len(".__init__")]
      source = _node(rel)
      for module in _imports(path, package):
        if module == "tfexperts" or not module.startswith("tfexperts."):
          continue
        target = _node(module)
        if target != source:
          edges.setdefault((source, target), []).append(os.path.relpath(path, ROOT))
  return edges


def test_every_node_has_a_layer():
  nodes = {n for edge in import_graph() for n in edge}
  assert not nodes - set(RANK), f"subpackages without a layer: {sorted(nodes - set(RANK))}"


def test_no_import_goes_up_a_layer():
  upward = {edge: files for edge, files in import_graph().items()
            if RANK[edge[0]] <= RANK[edge[1]] and set(edge) != {"models", "data"}}
  assert not upward, "imports against the layering: " + "; ".join(
      f"{a} -> {b} in {sorted(set(files))}" for (a, b), files in sorted(upward.items()))


def test_hub_and_select_do_not_import_train():
  edges = import_graph()
  assert ("hub", "train") not in edges and ("select", "train") not in edges


if __name__ == "__main__":
  graph = import_graph()
  for (a, b), files in sorted(graph.items(), key=lambda e: (-RANK[e[0][0]], e[0])):
    print(f"{a:10s} -> {b:10s} ({len(files)} imports)")
  sys.exit(0)
