"""Check the CUDA path end to end (run on a machine with an NVIDIA GPU).

1. The same MAML-TRPO meta-update on the same episodes, in float64, on CPU and on CUDA,
   must give the same new parameters (rollouts stay on the CPU; the update runs on the GPU).
2. A short training run with ``device=cuda`` must keep the policy on the GPU, log finite
   returns and write its checkpoints.

    python scripts/check_cuda.py                # exits 0 with "skipped" when no GPU is present
    python scripts/check_cuda.py --device cpu   # the same checks with CPU as the "device" (smoke test)
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile

import torch

from metarl.config import load_config
from metarl.learners.maml_trpo import MAMLTRPO, TRPOSettings
from metarl.trainer import Trainer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device to compare against the CPU (default cuda)")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="*",
        default=[],
        help="extra config overrides (e.g. a tiny problem for smoke tests)",
    )
    args = parser.parse_args()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: torch sees no CUDA GPU")
        return 0
    overrides = [
        "meta_batch_size=10",
        "episodes_per_task=10",
        "tensorboard=false",
        "curvature_subsample=2",
        *args.overrides,
    ]
    cfg = load_config("2d-navigation", overrides + ["device=cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        cpu = Trainer(cfg, tmp, progress=False)
        cpu.policy.double()
        tasks = cpu.family.unwrapped.sample_tasks(cfg.meta_batch_size)
        gpu_policy = copy.deepcopy(cpu.policy).to(device)
        gpu = MAMLTRPO(
            gpu_policy, TRPOSettings.from_config(cfg), cfg.gamma, cfg.gae_lambda, cfg.normalize_advantages, device
        )
        params = cpu.learner.initial_params()
        train = cpu.sampler.sample({k: v.float() for k, v in params.items()}, tasks, cfg.episodes_per_task)
        adaptation_cpu = cpu.learner.adapt(train)
        adaptation_gpu = gpu.adapt(train)
        adapted_cpu, adapted_gpu = adaptation_cpu.params, adaptation_gpu.params
        diff = max((adapted_cpu[k] - adapted_gpu[k]).abs().max().item() for k in adapted_cpu)
        print(f"inner step CPU vs {device} (float64): max abs diff {diff:.2e}")
        assert diff < 1e-8, diff
        valid = cpu.sampler.sample({k: v.float() for k, v in adapted_cpu.items()}, tasks, cfg.episodes_per_task)
        s_cpu = cpu.learner.step(adaptation_cpu, valid)
        s_gpu = gpu.step(adaptation_gpu, valid)
        pdiff = max(
            (p.detach() - q.detach().cpu()).abs().max().item()
            for p, q in zip(cpu.policy.parameters(), gpu_policy.parameters())
        )
        print(
            f"meta-update CPU vs {device} (float64): accepted {s_cpu.accepted}/{s_gpu.accepted}, max abs parameter "
            f"diff {pdiff:.2e}"
        )
        assert s_cpu.accepted == s_gpu.accepted and pdiff < 1e-6, pdiff

    cfg = load_config("2d-navigation", overrides + [f"device={device}", "num_iterations=5", "checkpoint_every=5"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, progress=False)
        rows = trainer.train()
        assert all(p.device.type == torch.device(device).type for p in trainer.policy.parameters())
        assert len(rows) == 5 and all(
            torch.isfinite(torch.tensor([r["pre_return"], r["post_return"]])).all() for r in rows
        )
        for r in rows:
            print(
                f"iter {r['iteration']}: pre {r['pre_return']:.2f} post {r['post_return']:.2f} sample "
                f"{r['sample_seconds']:.3f}s update {r['update_seconds']:.3f}s"
            )
        resumed = Trainer.resume(tmp, progress=False, num_iterations=6)
        resumed.train()
        assert resumed.iteration == 6
    print(f"{device} path OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
