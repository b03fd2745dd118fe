#!/usr/bin/env bash
# Bit-identity of two source trees (e.g. before and after a refactor), with one Python environment:
#   git worktree add /tmp/old <commit>; scripts/compare_trees.sh /tmp/old .
# Trains short runs of every learner (plus 2 inner steps, DiCE, HalfCheetahVel) with each tree's code,
# resumes the committed HalfCheetahVel seed-0 checkpoint by one iteration, and compares progress.csv
# (without its timing columns) and the final policy tensors. Prints "ALL IDENTICAL" or "DIFFERENT".
set -euo pipefail
PY=${PY:-$(pwd)/.venv/bin/python}
OLD=$(cd "$1" && pwd); NEW=$(cd "$2" && pwd); OUT=$(mktemp -d)
T="meta_batch_size=6 episodes_per_task=5 hidden_sizes=[16] tensorboard=false torch_threads=1 num_iterations=4 checkpoint_every=2 curvature_subsample=2"
for side in old new; do
  TREE=$([ $side = old ] && echo "$OLD" || echo "$NEW"); mkdir -p "$OUT/$side"
  for spec in "maml-trpo:" "promp:" "maml-ppo:" "reptile:" "maml-trpo:num_steps=2" "maml-trpo:estimator=dice"; do
    l=${spec%%:*}; extra=${spec#*:}; name=$l${extra:+-${extra//=/}}
    (cd "$OUT" && PYTHONPATH=$TREE "$PY" -m metarl.cli train --config 2d-navigation --set $T learner=$l $extra \
      --run-dir "$OUT/$side/$name" --no-progress > /dev/null)
  done
  (cd "$OUT" && PYTHONPATH=$TREE "$PY" -m metarl.cli train --config halfcheetah-vel --no-progress --run-dir "$OUT/$side/hcvel" \
    --set meta_batch_size=4 episodes_per_task=3 hidden_sizes=[16] tensorboard=false torch_threads=1 num_iterations=2 \
    checkpoint_every=1 horizon=20 "env_kwargs={action_scale: 10.0, batch_threads: 1}" > /dev/null)
  cp -r "$NEW/benchmarks/results/halfcheetah-vel/seed0" "$OUT/$side/resume"
  N=$(tail -1 "$OUT/$side/resume/progress.csv" | cut -d, -f1)
  (cd "$OUT" && PYTHONPATH=$TREE "$PY" -m metarl.cli train --resume "$OUT/$side/resume" --iterations $((N + 1)) --no-progress > /dev/null)
done
"$PY" - "$OUT/old" "$OUT/new" <<'PY'
import csv, pathlib, sys
import torch
a, b = map(pathlib.Path, sys.argv[1:3])
TIMING = {"sample_seconds", "update_seconds", "adapt_seconds", "grad_seconds", "cg_seconds", "line_search_seconds", "env_steps_per_second"}
ok = True
for run in sorted(p.name for p in a.iterdir() if p.is_dir()):
    rows = [[{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(open(d / run / "progress.csv"))] for d in (a, b)]
    ca, cb = (torch.load(d / run / "checkpoints" / "last.pt", weights_only=True)["policy"] for d in (a, b))
    same = rows[0] == rows[1] and all(torch.equal(ca[k], cb[k]) for k in ca)
    ok &= same
    print(f"{run:28s} rows {len(rows[0])}/{len(rows[1])} identical: {same}")
print("ALL IDENTICAL" if ok else "DIFFERENT")
sys.exit(0 if ok else 1)
PY
