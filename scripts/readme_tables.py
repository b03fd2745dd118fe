"""Write the README's result tables from ``benchmarks/results/`` (see ``metarl.report``).

    python scripts/readme_tables.py           # rewrite README.md's generated blocks
    python scripts/readme_tables.py --check   # exit 1 if any block differs from the results

Run it after committing new results; the test suite runs ``--check``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.report import ReportError, check_readme, update_readme

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--check", action="store_true", help="only report blocks that differ from the results (exit 1)")
    args = parser.parse_args(argv)
    try:
        stale = check_readme(args.readme, args.results) if args.check else update_readme(args.readme, args.results)
    except (ReportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check and stale:
        print(f"error: {args.readme} is out of date with {args.results} in: {', '.join(stale)}. Run python scripts/readme_tables.py.", file=sys.stderr)
        return 1
    print(f"{'stale' if args.check else 'rewrote'}: {', '.join(stale) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
