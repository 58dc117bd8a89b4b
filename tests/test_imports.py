"""No import circles inside ``augur_nas/``: the graph is built from every module's import
statements (function-local ones included, since a lazy import that dodges a circle is still a
circle in the design) and must have no cycle except the known ones listed below."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "augur_nas"

# Known cycles, each as the sorted tuple of its modules (a strongly connected component); any
# other cycle fails the test. None is left: the pricing path's (lowering <-> _segments ->
# analysis -> lowering) went when totals, buffer sharing and liveness moved to ``_totals`` below
# all three, and io/onnx <-> models when models.py began to read files through its READERS
# registry, where io/onnx registers the .onnx reader (issues 12 and 15).
KNOWN_CYCLES: set = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list:
    """The absolute names an ``from ... import ...`` statement reaches (a module, or its names
    that are submodules)."""
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def import_graph() -> dict:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: set() for m in modules}
    for m, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = _resolve(m, path.name == "__init__.py", node)
            else:
                continue
            for n in names:
                # importing a.b.c runs the packages a and a.b first: edges to them too, except to the
                # module's own parent packages, which are imported with it (``from . import _check``
                # reaches the sibling module, not the package)
                parts = n.split(".")
                for k in range(1, len(parts) + 1):
                    t = ".".join(parts[:k])
                    if t in modules and t != m and not m.startswith(t + "."):
                        graph[m].add(t)
    return graph


def _cycles(graph: dict) -> set:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), set()
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_relative_and_local_imports():
    g = import_graph()
    assert "augur_nas._errors" in g["augur_nas.cli"]
    assert "augur_nas.cli.search" in g["augur_nas.cli"]
    assert "augur_nas.search._workers" in g["augur_nas.search._worker"]
    assert "augur_nas.measure._torch" in g["augur_nas.measure._runners"]  # a function-local import


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == {("a", "b", "c")}


def test_no_import_circles():
    found = _cycles(import_graph())
    new = found - KNOWN_CYCLES
    assert not new, f"import circles in augur_nas/: {sorted(new)}"


# Functions allowed over MAX_FUNCTION_LINES, each as (module path, name): none (the last one,
# LayoutRules.reorders, was cut into the named steps of costmodel/_fusion._LayoutWalk).
MAX_FUNCTION_LINES = 100
KNOWN_LONG: set = set()


def long_functions(limit: int = MAX_FUNCTION_LINES) -> set:
    """``(path, name, lines)`` of every function in augur_nas/ longer than ``limit`` lines."""
    out = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.add((rel, node.name, lines))
    return out


def test_the_length_check_sees_functions():
    assert any(name == "main" for _, name, _ in long_functions(limit=3))


def test_no_function_over_100_lines():
    new = {(p, n, k) for p, n, k in long_functions() if (p, n) not in KNOWN_LONG}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (cut them into named steps): {sorted(new)}"


# ------------------------------------------------------------------------- function-local imports

# Function-local imports allowed, each as (module, imported module): the pricing path's circle
# above dodges itself with them (issue 12 removes it), and measure/_torch.py imports torch at its
# top, so the torch runner imports it only when torch runs. Every other import sits at its
# module's top; the optional dependencies go through ``augur_nas._imports.optional``.
KNOWN_LOCAL = {
    ("augur_nas._segments", "augur_nas.lowering"),
    ("augur_nas._segments", "augur_nas.analysis"),
    ("augur_nas.lowering", "augur_nas._segments"),
    ("augur_nas.measure._runners", "augur_nas.measure._torch"),
}


def _imports(path: Path, module: str):
    """``(node, imported module, inside a function?)`` of every import statement of a file."""
    tree = ast.parse(path.read_text(), str(path))
    local = set()
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local.update(id(n) for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            targets = _resolve(module, path.name == "__init__.py", node)[:1]
        else:
            continue
        for t in targets:
            yield node, t, id(node) in local


def function_local_imports() -> set:
    """``(module, imported module, line)`` of every import statement inside a function."""
    out = set()
    for path in PACKAGE.rglob("*.py"):
        m = _module_name(path)
        out.update((m, t, node.lineno) for node, t, local in _imports(path, m) if local)
    return out


def test_the_local_import_finder_sees_local_imports():
    found = {(m, t) for m, t, _ in function_local_imports()}
    assert ("augur_nas.measure._runners", "augur_nas.measure._torch") in found


def test_no_function_local_imports():
    new = sorted((m, t, line) for m, t, line in function_local_imports() if (m, t) not in KNOWN_LOCAL)
    assert not new, (f"imports inside functions (move them to the module's top; an optional dependency goes "
                     f"through augur_nas._imports.optional): {new}")


def test_optional_dependencies_only_through_the_helper():
    from augur_nas._imports import OPTIONAL

    helper = PACKAGE / "_imports.py"
    found = sorted((_module_name(p), t) for p in PACKAGE.rglob("*.py") if p != helper
                   for _, t, _ in _imports(p, _module_name(p)) if t.split(".")[0] in OPTIONAL)
    assert not found, f"optional dependencies imported directly (use augur_nas._imports.optional): {found}"


def test_optional_raises_one_paragraph_with_the_install_hint(monkeypatch):
    import sys

    import pytest

    from augur_nas import AugurError, MeasurementError
    from augur_nas._imports import available, optional

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(MeasurementError) as exc:
        optional("torch", "the torch backend", MeasurementError)
    msg = str(exc.value)
    assert msg.startswith("the torch backend needs the `torch` package, which could not be imported (")
    assert "install it with pip install 'augur-nas[torch]' (torch==2.13.0)" in msg and "\n" not in msg
    with pytest.raises(AugurError, match=r"install it with pip install no_such_package_s15$"):
        optional("no_such_package_s15.sub", "testing")
    assert optional("json", "testing").dumps([1]) == "[1]"
    assert available("json") and not available("no_such_package_s15") and not available("torch")


# --------------------------------------------------------------------------------------- start-up

HEAVY = ("torch", "onnx", "onnxruntime", "lightgbm", "matplotlib", "optuna")

_START_UP = """
import contextlib, io, json, sys
heavy = {heavy!r}
seen = {{}}
import augur_nas, augur_nas.cli
seen["import"] = [m for m in heavy if m in sys.modules]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        augur_nas.cli.main(["--help"])
    except SystemExit:
        pass
seen["--help"] = [m for m in heavy if m in sys.modules]
with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = augur_nas.cli.main(["predict", {model!r}, "--device", "tx1-gpu", "--json"])
assert rc == 0 and json.loads(out.getvalue())
seen["predict"] = [m for m in heavy if m in sys.modules]
print(json.dumps(seen))
"""


def test_start_up_imports_no_optional_dependency():
    """``import augur_nas``, ``augur-nas --help`` and a plain ``predict`` stay fast: none of them
    imports torch, onnx, onnxruntime, lightgbm, matplotlib or optuna."""
    import json
    import subprocess
    import sys

    code = _START_UP.format(heavy=HEAVY, model=str(ROOT / "spaces" / "zoo" / "alexnet.yaml"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {"import": [], "--help": [], "predict": []}


def test_missing_onnx_is_one_paragraph_at_the_cli(tmp_path):
    """An optional dependency missing at the CLI: exit 2 and its install hint, no traceback."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['onnx'] = None\nfrom augur_nas.cli import main\n"
            f"sys.exit(main(['export', {str(ROOT / 'spaces' / 'zoo' / 'alexnet.yaml')!r}, '-o', "
            f"{str(tmp_path / 'a.onnx')!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("\n") == 1 and "`onnx`" in p.stderr and "pip install 'augur-nas[onnx]'" in p.stderr
    assert not (tmp_path / "a.onnx").exists()
