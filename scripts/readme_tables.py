"""Write the result tables of README.md and docs/*.md from ``benchmarks/results/`` (see ``metarl.report``).

    python scripts/readme_tables.py                       # rewrite the generated blocks of README.md and docs/*.md
    python scripts/readme_tables.py --check               # exit 1 if any block differs from the results
    python scripts/readme_tables.py docs/results.md       # only these files

Exit status: 0 when every file is (now) in sync, 1 with ``--check`` when a block differs,
2 when a block names missing results or an unknown kind, or a file cannot be read.

Run it after committing new results; the test suite runs ``--check``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.report import ReportError, check_documents, document_paths, update_documents

ROOT = Path(__file__).resolve().parents[1]


def _describe(stale: dict[Path, list[str]]) -> str:
    return "; ".join(f"{path}: {', '.join(blocks)}" for path, blocks in stale.items())


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with ``--check`` only compare) the generated blocks; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="*", type=Path, help="Markdown files with generated blocks (default: README.md and docs/*.md)"
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--check", action="store_true", help="only report blocks that differ from the results (exit 1)")
    args = parser.parse_args(argv)
    files = args.files or document_paths(ROOT)
    try:
        stale = check_documents(files, args.results) if args.check else update_documents(files, args.results)
    except (ReportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check and stale:
        for path, blocks in stale.items():
            print(f"error: {path} is out of date with {args.results} in: {', '.join(blocks)}.", file=sys.stderr)
        print("Run python scripts/readme_tables.py to rewrite them.", file=sys.stderr)
        return 1
    print(f"{'stale' if args.check else 'rewrote'}: {_describe(stale) or 'nothing'} ({len(files)} file(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
