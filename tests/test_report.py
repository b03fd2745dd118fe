"""The generated result tables of README.md and docs/*.md (metarl/report.py, scripts/readme_tables.py),
and the relative links between those files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.report import (
    ReportError,
    check_documents,
    check_readme,
    document_paths,
    render_benchmark,
    render_block,
    render_readme,
    update_documents,
    update_readme,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = document_paths(ROOT)


def synthetic_report() -> dict:
    """Two seeds x two tasks, hand-made: every rendered number can be checked by eye."""

    def row(k: int, mean: float, low: float, high: float) -> dict:
        return {"steps": k, "mean": mean, "mean_ci": [low, high], "iqm": mean, "iqm_ci": [low, high]}

    returns = {
        "maml": [[-20.0, -10.0], [250.0, 270.0]],
        "pretrained": [[-14.0, -12.0], [-13.0, -11.0]],
        "oracle": [[300.0, 310.0], [301.0, 309.0]],
        "random": [[-30.0, -20.0], [-15.0, -5.0]],
    }
    per_seed = [
        {
            "seed": 0,
            "returns": returns,
            "learning_curve": {"iteration": [1, 2, 3], "pre_return": [0, 0, 0], "post_return": [0, 0, 0]},
        },
        {
            "seed": 1,
            "returns": {m: [[v + 2.0 for v in r] for r in rs] for m, rs in returns.items()},
            "learning_curve": {"iteration": [1, 2, 3], "pre_return": [0, 0, 0], "post_return": [0, 0, 0]},
        },
    ]
    return {
        "family": "HalfCheetahDir",
        "budget": {"eval_tasks": 2, "eval_episodes": 5, "ppo_timesteps": 1_000_000},
        "config": {"horizon": 100, "meta_batch_size": 40, "episodes_per_task": 20},
        "summary": {
            "maml": [row(0, -14.0, -20.0, -8.0), row(1, 261.0, 250.0, 272.0)],
            "pretrained": [row(0, -12.0, -14.0, -10.0), row(1, -11.0, -13.0, -9.0)],
            "random": [row(0, -24.0, -30.0, -18.0), row(1, -9.0, -15.0, -3.0)],
            "oracle": [row(0, 306.0, 300.0, 312.0), row(1, 306.0, 301.0, 311.0)],
        },
        "claim_one_step": {
            "pretrained": {"maml_mean": 261.0, "other_mean": -11.0, "non_overlapping": True},
            "random": {"maml_mean": 261.0, "other_mean": -9.0, "non_overlapping": True},
        },
        "per_seed": per_seed,
    }


def test_render_benchmark_writes_every_number_from_the_report() -> None:
    text = render_benchmark(synthetic_report(), "benchmark-x")
    assert (
        "HalfCheetahDir: 2 seed(s) x 2 held-out tasks x 5 episodes, horizon 100; MAML 3 meta-iterations of 40 tasks x "
        "20 episodes" in text
    )
    assert "PPO baselines 1,000,000 env steps each" in text and "`benchmarks/results/benchmark-x/`" in text
    stronger = synthetic_report()
    stronger["budget"]["oracle_timesteps"] = 3_000_000
    assert "PPO pretrained 1,000,000 and oracle 3,000,000 env steps;" in render_benchmark(stronger, "benchmark-x")
    assert "| MAML | -14.0 [-20.0, -8.0] | **+261.0 [+250.0, +272.0]** |" in text  # signed: some returns are positive
    assert "| random initialization | -24.0 [-30.0, -18.0] | -9.0 [-15.0, -3.0] |" in text
    # paired: MAML minus pretrained per task is 263 and 281 in both seeds (mean 272), recomputed from per_seed
    assert (
        "- After one step MAML +261.0 vs pretrained -11.0: 95% CIs do not overlap; paired over the same tasks, MAML "
        "minus pretrained +272.0 [+263.0, +281.0]." in text
    )
    # per-seed means after one step: seed 0 (250 + 270) / 2, seed 1 the same + 2
    assert "- Per-seed means after one step (seeds 0 / 1): maml +260.0 / +262.0; pretrained -12.0 / -10.0;" in text


def test_render_benchmark_adds_the_success_table_of_a_family_that_reports_success() -> None:
    report = synthetic_report()
    assert "Success rate" not in render_benchmark(report, "benchmark-x")
    success = {
        "maml": [[0.0, 0.0], [0.5, 0.7]],
        "pretrained": [[0.0, 0.1], [0.1, 0.1]],
        "oracle": [[0.9, 1.0], [0.9, 1.0]],
        "random": [[0.0, 0.0], [0.0, 0.2]],
    }
    for s in report["per_seed"]:
        s["success"] = success

    def row(k: int, mean: float, low: float, high: float) -> dict:
        return {"steps": k, "mean": mean, "mean_ci": [low, high]}

    report["success_summary"] = {
        "maml": [row(0, 0.0, 0.0, 0.0), row(1, 0.6, 0.5, 0.7)],
        "pretrained": [row(0, 0.05, 0.0, 0.1), row(1, 0.1, 0.1, 0.1)],
        "random": [row(0, 0.0, 0.0, 0.0), row(1, 0.1, 0.0, 0.55)],  # overlaps MAML's 0.5
        "oracle": [row(0, 0.95, 0.9, 1.0), row(1, 0.95, 0.9, 1.0)],
    }
    text = render_benchmark(report, "benchmark-x")
    assert "| MAML | 0.0% [0.0, 0.0] | **60.0% [50.0, 70.0]** |" in text
    assert "| random initialization | 0.0% [0.0, 0.0] | 10.0% [0.0, 55.0] |" in text
    # paired: MAML minus pretrained per task is 0.4 and 0.6 in both seeds (mean 0.5), from per_seed's success
    assert (
        "- Success after one step: MAML 60.0% vs pretrained 10.0%: 95% CIs do not overlap; paired, MAML minus "
        "pretrained +50.0 points [+40.0, +60.0]." in text
    )
    assert "MAML 60.0% vs random 10.0%: 95% CIs OVERLAP" in text


def test_the_documents_are_readme_and_every_docs_page() -> None:
    assert DOCUMENTS[0] == ROOT / "README.md"
    assert set(DOCUMENTS[1:]) == set((ROOT / "docs").glob("*.md"))
    assert {"algorithms.md", "cli.md", "results.md", "task-families.md"} <= {p.name for p in DOCUMENTS[1:]}


def test_readme_and_docs_are_in_sync_with_the_committed_results() -> None:
    assert check_documents(DOCUMENTS, RESULTS) == {}, "run: python scripts/readme_tables.py"


def test_the_readme_keeps_one_results_table_and_docs_hold_the_rest() -> None:
    names = {p: re.findall(r"^<!-- generated: (\w+ [\w.-]+) -->$", p.read_text(), re.MULTILINE) for p in DOCUMENTS}
    assert names[ROOT / "README.md"] == ["benchmark benchmark-halfcheetah-dir-lvc-500-ppo-normalized"]
    results = set(names[ROOT / "docs" / "results.md"])
    assert {
        "benchmark benchmark-navigation2d",
        "evaluation navigation2d",
        "learners learners",
        "speed speed",
        "sampler mujoco_sampler",
    } <= results


@pytest.mark.parametrize(
    ("document", "block"),
    [
        ("README.md", "benchmark benchmark-halfcheetah-dir-lvc-500-ppo-normalized"),
        ("docs/results.md", "benchmark benchmark-navigation2d"),
    ],
)
def test_a_hand_edited_number_is_found_and_rewritten(tmp_path: Path, document: str, block: str) -> None:
    original = (ROOT / document).read_text()
    start = original.index(f"<!-- generated: {block} -->")
    cell = original.index("| MAML | ", start)
    edited = original[:cell] + original[cell:].replace("| MAML | ", "| MAML | 1", 1)
    copy = tmp_path / Path(document).name
    copy.write_text(edited)
    assert check_readme(copy, RESULTS) == [block]
    assert update_readme(copy, RESULTS) == [block]
    assert copy.read_text() == original
    assert render_readme(original, RESULTS) == original


def write_tree(root: Path, readme: str, page: str) -> tuple[Path, Path]:
    """A repository root with a README.md, a docs/page.md and results/benchmark-x/benchmark.json."""
    (root / "docs").mkdir(parents=True)
    (root / "results" / "benchmark-x").mkdir(parents=True)
    (root / "results" / "benchmark-x" / "benchmark.json").write_text(json.dumps(synthetic_report()))
    (root / "README.md").write_text(readme)
    (root / "docs" / "page.md").write_text(page)
    return root / "README.md", root / "docs" / "page.md"


STALE = "<!-- generated: benchmark benchmark-x -->\nold\n<!-- end generated -->\n"


def test_a_stale_block_in_a_docs_page_fails_the_check(tmp_path: Path) -> None:
    readme, page = write_tree(tmp_path, "# t\n\n" + STALE, "# page\n\n" + STALE)
    results = tmp_path / "results"
    assert update_readme(readme, results) == ["benchmark benchmark-x"]  # the README is in sync now, the page is not
    fresh = readme.read_text()
    assert check_documents(document_paths(tmp_path), results) == {page: ["benchmark benchmark-x"]}
    assert update_documents(document_paths(tmp_path), results) == {page: ["benchmark benchmark-x"]}
    assert check_documents(document_paths(tmp_path), results) == {}
    assert readme.read_text() == fresh and "**+261.0 [+250.0, +272.0]**" in page.read_text()


def test_update_writes_nothing_when_any_document_fails(tmp_path: Path) -> None:
    readme, page = write_tree(
        tmp_path, "# t\n\n" + STALE, "<!-- generated: benchmark benchmark-gone -->\n<!-- end generated -->\n"
    )
    with pytest.raises(ReportError, match="benchmark-gone/benchmark.json is missing"):
        update_documents([readme, page], tmp_path / "results")
    assert readme.read_text() == "# t\n\n" + STALE


@pytest.mark.parametrize(
    "text",
    [
        "<!-- generated: benchmark benchmark-x -->\nno end marker\n",
        "<!-- generated: benchmark two words here -->\n<!-- end generated -->\n",
    ],
)
def test_a_malformed_block_is_an_error_not_skipped(tmp_path: Path, text: str) -> None:
    path = tmp_path / "page.md"
    path.write_text("# t\n\n" + text)
    with pytest.raises(ReportError, match="page.md, line 3: .* starts no block"):
        check_readme(path, RESULTS)


def test_unknown_kind_and_missing_results_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="Unknown generated block kind 'tables'"):
        render_block("tables", "x", RESULTS)
    with pytest.raises(ReportError, match="benchmark-nope/benchmark.json is missing"):
        render_block("benchmark", "benchmark-nope", RESULTS)
    with pytest.raises(ReportError, match="commit the training runs there first"):
        render_block("runs", "nope", tmp_path)


def test_script_check_exits_1_on_a_stale_document_and_2_on_missing_results(tmp_path: Path) -> None:
    readme, page = write_tree(tmp_path, "# t\n\n" + STALE, "# page\n\nno blocks\n")

    def script(*args: str, files: tuple[Path, ...] = (readme, page)) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "scripts/readme_tables.py",
            *map(str, files),
            "--results",
            str(tmp_path / "results"),
            *args,
        ]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)

    out = script("--check")
    assert (
        out.returncode == 1
        and out.stderr.startswith(f"error: {readme} is out of date")
        and "benchmark benchmark-x" in out.stderr
    )
    out = script()
    assert out.returncode == 0 and f"rewrote: {readme}: benchmark benchmark-x (2 file(s))" in out.stdout
    assert "**+261.0 [+250.0, +272.0]**" in readme.read_text()
    assert script("--check").returncode == 0
    page.write_text("# page\n\n" + STALE)  # a stale docs page fails the check just as the README does
    out = script("--check")
    assert out.returncode == 1 and f"error: {page} is out of date" in out.stderr and str(readme) not in out.stderr
    assert script().returncode == 0 and script("--check").returncode == 0
    page.write_text("<!-- generated: benchmark benchmark-gone -->\n<!-- end generated -->\n")
    out = script("--check")
    assert (
        out.returncode == 2
        and out.stderr.startswith("error: ")
        and "is missing" in out.stderr
        and "Traceback" not in out.stderr
    )
    out = script("--check", files=(tmp_path / "nope.md",))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_script_checks_readme_and_docs_by_default() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/readme_tables.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert f"stale: nothing ({len(DOCUMENTS)} file(s))" in out.stdout


# -- links ---------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document (``#`` headings outside code)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def relative_links(path: Path) -> list[str]:
    """The link and image targets of a Markdown file that are neither URLs nor mail addresses."""
    targets = LINK.findall(_prose(path.read_text()))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def test_github_anchors_follow_githubs_rules() -> None:
    text = (
        "# Results and speed\n## 6. Optional: a batched fast path\n```\n# not a heading\n```\n"
        "## `metarl train`\n## Speed\n## Speed\n"
    )
    assert github_anchors(text) == {
        "results-and-speed",
        "6-optional-a-batched-fast-path",
        "metarl-train",
        "speed",
        "speed-1",
    }
    assert relative_links(ROOT / "README.md")  # the README links to docs/


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        file, _, anchor = target.partition("#")
        linked = (document.parent / file).resolve() if file else document
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in github_anchors(linked.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{document.relative_to(ROOT)}: " + "; ".join(broken)


def test_benchmark_header_states_the_meta_batch_the_maml_runs_trained_with() -> None:
    """--maml-runs may have trained with another meta-batch than --config (AntDir: 20 x 10 vs 40 x 20)."""
    import copy
    import json

    from metarl.report import render_benchmark

    report = json.loads((ROOT / "benchmarks" / "results" / "benchmark-ant-dir" / "benchmark.json").read_text())
    assert "MAML 200 meta-iterations of 20 tasks x 10 episodes" in render_benchmark(report, "benchmark-ant-dir")
    older = copy.deepcopy(report)  # benchmarks written before maml_config was recorded: the config's
    for s in older["per_seed"]:
        del s["maml_config"]
    assert "of 40 tasks x 20 episodes" in render_benchmark(older, "benchmark-ant-dir")


def test_benchmark_header_names_a_meta_gradient_estimator_other_than_plain() -> None:
    """Runs trained with ``estimator=lvc`` say so; plain runs (and configs before the key) say nothing."""
    import copy
    import json

    from metarl.report import render_benchmark

    report = json.loads((ROOT / "benchmarks" / "results" / "benchmark-ant-dir" / "benchmark.json").read_text())
    assert "estimator" not in render_benchmark(report, "benchmark-ant-dir").splitlines()[0]
    lvc = copy.deepcopy(report)
    for s in lvc["per_seed"]:
        s["maml_config"]["estimator"] = "lvc"
    assert "of 20 tasks x 10 episodes (lvc meta-gradient estimator);" in render_benchmark(lvc, "benchmark-ant-dir")
    for s in lvc["per_seed"]:
        s["maml_config"]["init_from"] = "benchmarks/results/ant-dir/seed0"
    header = render_benchmark(lvc, "benchmark-ant-dir").splitlines()[0]
    assert "(lvc meta-gradient estimator after a warm start from earlier runs);" in header


def test_a_benchmark_of_another_meta_learner_names_it() -> None:
    """A benchmark of ProMP runs (``--maml-runs`` of a ``learner: promp`` config) says ProMP, not MAML."""
    report = synthetic_report()
    for s in report["per_seed"]:
        s["maml_config"] = {**report["config"], "learner": "promp"}
    text = render_benchmark(report, "benchmark-x")
    assert "horizon 100; ProMP 3 meta-iterations of 40 tasks x 20 episodes" in text
    assert "| ProMP | -14.0 [-20.0, -8.0] | **+261.0 [+250.0, +272.0]** |" in text
    assert "- After one step ProMP +261.0 vs pretrained -11.0: 95% CIs do not overlap; paired over the same" in text
    assert "ProMP minus pretrained +272.0" in text and "(seeds 0 / 1): ProMP +260.0 / +262.0;" in text
    assert "MAML" not in text
