"""Run ``metarl benchmark`` (MAML vs pretrained / oracle / random on held-out tasks).

    python scripts/benchmark.py --budget smoke
    python scripts/benchmark.py --config 2d-navigation --budget full --seeds 0 1 2 --jobs 2

Takes exactly the options of ``metarl benchmark --help``.
"""

from __future__ import annotations

import sys

from metarl.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
