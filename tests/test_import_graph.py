"""The layout's import rules (scripts/import_graph.py): no circles, no import pointing up a layer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
assert spec is not None and spec.loader is not None
import_graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_graph)


def test_the_code_has_no_circles_and_no_upward_imports() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/import_graph.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "circles (module-level and deferred imports together): 0" in out.stdout
    assert "imports that point up a layer: 0" in out.stdout


def test_every_module_has_a_layer() -> None:
    for module in import_graph.module_files():
        import_graph.layer_of(module)  # raises KeyError for a module no layer names


def test_a_circle_is_found_through_a_deferred_import() -> None:
    edges = {
        "metarl.trainer": {"metarl.sampler"},
        "metarl.sampler": {"metarl.families"},
        "metarl.families": {"metarl.trainer"},
        "metarl.errors": set(),
    }
    assert import_graph.circles(edges) == [["metarl.families", "metarl.sampler", "metarl.trainer"]]


def test_an_import_that_points_up_is_found() -> None:
    edges = {"metarl.config": {"metarl.learners", "metarl.errors"}, "metarl.envs.navigation": {"metarl.families"}}
    assert import_graph.upward(edges) == [
        ("metarl.config", "metarl.learners"),
        ("metarl.envs.navigation", "metarl.families"),
    ]
    with pytest.raises(KeyError, match="in no layer"):
        import_graph.layer_of("metarl.brand_new_module")


def test_function_level_imports_are_edges(tmp_path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from metarl.errors import ConfigError\n\ndef f():\n    from metarl.trainer import Trainer\n\nif "
        "TYPE_CHECKING:\n    from metarl.sampler import Sampler\n"
    )
    modules = {"metarl.mod": source, "metarl.errors": source, "metarl.trainer": source, "metarl.sampler": source}
    top, deferred = import_graph.imports_of("metarl.mod", source, modules)
    assert top == {"metarl.errors"} and deferred == {"metarl.trainer"}  # TYPE_CHECKING imports are not edges
