"""The README's Python example runs as written (on a tiny config, in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import TINY

README = Path(__file__).parent.parent / "README.md"


def python_block() -> str:
    section = README.read_text().split("## Python\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under ## Python"
    return match.group(1)


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys) -> None:
    code = python_block()
    assert '"num_iterations=100"' in code and "num_iterations=150" in code and "num_tasks=100" in code
    tiny = ", ".join(repr(o) for o in [*TINY, "num_iterations=3", "checkpoint_every=1"])
    code = code.replace('["num_iterations=100"]', f"[{tiny}]").replace("num_iterations=150", "num_iterations=5")
    code = code.replace("num_tasks=100", "num_tasks=4")
    code = code.replace('metarl.Trainer(config, "runs/demo")', 'metarl.Trainer(config, "runs/demo", progress=False)')
    code = code.replace('metarl.Trainer.resume("runs/demo", ', 'metarl.Trainer.resume("runs/demo", progress=False, ')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "last iteration:" in out and "3 steps:" in out
    assert (tmp_path / "runs/demo/eval.json").is_file()
    assert len((tmp_path / "runs/demo/progress.csv").read_text().splitlines()) == 1 + 5
