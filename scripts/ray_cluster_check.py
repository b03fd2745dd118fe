"""A two-node Ray cluster on this machine: both nodes host sampler workers, and training on it logs the local rows.

Starts a head node and a second node with ``ray start`` (their own ports and one CPU each),
checks that a ``RaySampler`` with 2 workers placed one on each node, trains a tiny
2D-navigation run with ``metarl train --set sampler=ray ray_address=...`` and a user family
(``tests/user_families.py``, shipped to the nodes by Ray's ``working_dir``), compares its
``progress.csv`` with the same run sampled locally, and stops the cluster.

    python scripts/ray_cluster_check.py     # prints one line per check; exit status 0 when all hold
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from metarl.logger import TIMING_COLUMNS, read_csv

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HEAD_PORT = 6390
HEAD = [
    "--head", f"--port={HEAD_PORT}", "--num-cpus=1", "--include-dashboard=false", "--node-manager-port=6391",
    "--object-manager-port=6392", "--ray-client-server-port=6393", "--min-worker-port=11000",
    "--max-worker-port=11099", "--dashboard-agent-listen-port=6394", "--metrics-export-port=6395",
    "--runtime-env-agent-port=6396", "--dashboard-agent-grpc-port=6397",
]  # fmt: skip
SECOND = [
    f"--address=127.0.0.1:{HEAD_PORT}", "--num-cpus=1", "--node-manager-port=6401", "--object-manager-port=6402",
    "--min-worker-port=11100", "--max-worker-port=11199", "--dashboard-agent-listen-port=6404",
    "--metrics-export-port=6405", "--runtime-env-agent-port=6406", "--dashboard-agent-grpc-port=6407",
]  # fmt: skip
TINY = [
    "family=user_families:GoodFamily", "horizon=10", "meta_batch_size=4", "episodes_per_task=4",
    "hidden_sizes=[16]", "tensorboard=false", "torch_threads=1", "cg_iters=5", "num_iterations=2",
]  # fmt: skip
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
ENV["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)

CHECK_NODES = f"""
import sys
from metarl.config import load_config
from metarl.families import make_family
from metarl.ray_sampler import RaySampler
from metarl.runtime import build_policy
env = make_family("user_families:GoodFamily")
policy = build_policy(load_config("2d-navigation", ["family=user_families:GoodFamily"]), env)
sampler = RaySampler("user_families:GoodFamily", policy, 5, num_workers=2, address="127.0.0.1:{HEAD_PORT}")
nodes = {{node for _, node in sampler.worker_pids()}}
sampler.close()
print(len(nodes))
"""


def rows(path: Path) -> list[dict[str, object]]:
    """The log's rows without the timing columns."""
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_csv(path)]


def main() -> int:
    ray = str(BIN / "ray")
    subprocess.run([ray, "stop", "--force"], env=ENV, capture_output=True)
    ok = True
    try:
        for args in (HEAD, SECOND):
            subprocess.run([ray, "start", *args, "--disable-usage-stats"], env=ENV, check=True, capture_output=True)
        nodes = subprocess.run([sys.executable, "-c", CHECK_NODES], env=ENV, capture_output=True, text=True)
        hosted = nodes.stdout.strip().splitlines()[-1:] == ["2"]
        print(f"{'ok  ' if hosted else 'FAIL'} 2 workers on 2 nodes: {nodes.stdout.strip() or nodes.stderr[-400:]}")
        ok &= hosted
        with tempfile.TemporaryDirectory() as tmp:
            cluster = ["--set", *TINY, "sampler=ray", "num_workers=2", f"ray_address=127.0.0.1:{HEAD_PORT}"]
            for name, extra in (("local", ["--set", *TINY]), ("cluster", cluster)):
                run = subprocess.run(
                    [str(BIN / "metarl"), "train", "--no-progress", *extra, "--run-dir", f"{tmp}/{name}"],
                    env=ENV, capture_output=True, text=True, cwd=tmp,
                )  # fmt: skip
                if run.returncode != 0:
                    print(f"FAIL metarl train ({name}): {run.stderr.strip()[-400:]}")
                    return 1
            same = rows(Path(tmp, "local", "progress.csv")) == rows(Path(tmp, "cluster", "progress.csv"))
            print(f"{'ok  ' if same else 'FAIL'} training on the cluster logs the local run's rows (2 iterations)")
            ok &= same
    finally:
        subprocess.run([ray, "stop", "--force"], env=ENV, capture_output=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
