"""The package's folders stand in an order, and no module imports upwards or in a cycle.

Every import is read from the source (those inside functions too), so a lazy import cannot
hide a dependency the order forbids.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "actsearch"

# Low to high: a module may import its own floor and the floors below it, never above.
FLOORS = [
    # leaves: no actsearch imports but these; the registries' primitive
    {"errors", "version", "cache", "data", "registry"},
    {"space"},                                          # what can be chosen
    {"models"},                                         # backbones and their slots
    {"train"},                                          # the engine every command shares
    {"strategies", "plots"},                            # how architectures are found; pictures
    # the record and the retrain's report, configs, their checks, user code, statistics
    {"architecture", "results", "configs", "checks", "usercode", "stats"},
    {"commands"},                                       # search, retrain, reproduce, bench
    # the command line, the compatibility names from before the folders, the facade
    {"cli", "__main__", "activations", "mixed", "checkpoint", "api", "__init__"},
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}
# Names the public facade (``actsearch.search(...)``, ...) keeps for itself at the top level.
FACADE_NAMES = {"search", "retrain", "load", "apply", "export", "register", "reproduce"}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in PACKAGE.rglob("*.py"):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set[str]:
  """The actsearch modules ``name`` imports, anywhere in its source."""
  tree = ast.parse(path.read_text(), str(path))
  is_package = path.name == "__init__.py"
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.split(".")[0] == "actsearch"}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: resolve against this module's package
        pkg = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(pkg + ([base] if base else []))
      if base.split(".")[0] != "actsearch":
        continue
      for alias in node.names:  # `from pkg import mod` imports the module pkg.mod
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
  return {m for m in found if m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(module: str) -> int:
  parts = module.split(".")
  return FLOOR["__init__" if len(parts) == 1 else parts[1]]


def test_every_module_has_a_floor():
  unplaced = sorted({m.split(".")[1] for m in MODULES if "." in m} - set(FLOOR))
  assert not unplaced, f"add these to FLOORS: {unplaced}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
  upward = sorted(m for m in GRAPH[module] if _floor(m) > _floor(module))
  assert not upward, f"{module} (floor {_floor(module)}) imports from above: {upward}"


def test_no_import_cycles():
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  path: list[str] = []

  def visit(m):
    state[m] = 1
    path.append(m)
    for dep in sorted(GRAPH.get(m, ())):
      if state.get(dep) == 1:
        cycle = path[path.index(dep):] + [dep]
        raise AssertionError("import cycle: " + " -> ".join(cycle))
      if dep not in state:
        visit(dep)
    path.pop()
    state[m] = 2

  for m in sorted(GRAPH):
    if m not in state:
      visit(m)


def test_folders_say_what_they_own():
  for init in PACKAGE.glob("*/__init__.py"):
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc.split()) >= 15, f"{init.parent.name}/__init__.py needs a docstring"


def test_the_top_level_leaves_room_for_the_facade():
  taken = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                    if p.is_dir()}
  assert not taken & FACADE_NAMES, sorted(taken & FACADE_NAMES)


def test_the_graph_is_read():  # the test above would pass on an empty graph
  assert "actsearch.train.loop" in GRAPH["actsearch.commands.search"] or any(
      m.startswith("actsearch.strategies") for m in GRAPH["actsearch.commands.search"])
  assert "actsearch.space.activations" in GRAPH["actsearch.space.mixed"]


def _name_lists(path: pathlib.Path) -> list[tuple[int, frozenset]]:
  """Every list or tuple literal of three or more strings in a module, with its line."""
  out = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) >= 3 and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
      out.append((node.lineno, frozenset(e.value for e in node.elts)))
  return out


def test_each_list_of_names_is_stated_once():
  """The groups ``default`` and ``wide``, the strategies' names and the benchmark's candidates
  are each written in one module: no other module or experiment holds a literal list of the
  same names (it reads them from there)."""
  from actsearch.space import activations, implementation
  from actsearch.strategies import table
  facts = {"group default": (set(activations.DEFAULT), "space/activations.py"),
           "group wide": (set(activations.WIDE), "space/activations.py"),
           "the benchmark's candidates": (set(implementation.MEASURED_CANDIDATES),
                                          "space/implementation.py"),
           "the strategies": (set(table.STRATEGIES), "strategies/table.py")}
  files = [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "experiments").glob("*.py")]
  again = [f"{path.relative_to(PACKAGE.parent)}:{line} restates {what}"
           for path in files for line, names in _name_lists(path)
           for what, (fact, home) in facts.items()
           if (names == fact or what == "the strategies" and len(names & fact) >= 5)
           and not str(path).endswith(home)]
  assert not again, again
