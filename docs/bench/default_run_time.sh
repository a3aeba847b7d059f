#!/usr/bin/env bash
# The default run's wall time from a fresh clone (issue 27): `python train.py` as the README's first screen runs it
# (teacher fine-tuned into an empty store, then the 3-layer student distilled, exported, its card and compression
# report written), once per commit and precision, one after the other on the whole machine, each in a clone of its own
# at that commit so that no teacher, tokenization or teacher-output cache of another run is reused.
#
#   bash docs/bench/default_run_time.sh                        # RUNS="HEAD:32 HEAD:bf16-mixed"
#   RUNS="a8b64e6:32 HEAD:32 HEAD:bf16-mixed" bash docs/bench/default_run_time.sh   # before issue 27, and after
#   EXTRA="task.train_limit=64 finetune.epochs=1 distill.epochs=1" bash docs/bench/default_run_time.sh   # a smoke run
#
# Prints one Markdown row per run: commit, precision, wall seconds of the whole command, the teacher's and the
# student's dev accuracy, and the run's own figures (metrics.json: total_wall_time_s, train_examples_per_s).
set -euo pipefail
REPO=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
SHARED=$(cd "$REPO/../shared" && pwd)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/default_run_time.XXXXXX")}
mkdir -p "$WORK" && ln -sfn "$SHARED" "$WORK/shared"  # each clone finds the data as ../shared, as a fresh clone beside shared/ does
git -C "$REPO" diff --quiet HEAD -- dkd conf train.py || echo "local changes are not in the clones (committed code only)" >&2
echo "$(nproc) CPUs; clones under $WORK" >&2
echo "| commit | precision | wall s (command) | teacher dev acc | student dev acc | metrics.json total_wall_time_s | train examples/s |"
echo "|---|---|---:|---:|---:|---:|---:|"
for run in ${RUNS:-HEAD:32 HEAD:bf16-mixed}; do
  commit=$(git -C "$REPO" rev-parse --short "${run%%:*}") precision=${run#*:}
  clone="$WORK/$commit-$precision"
  rm -rf "$clone" && git clone -q "$REPO" "$clone" && git -C "$clone" checkout -q "$commit"
  start=$(date +%s.%N)
  (cd "$clone" && env -u GLUE_DIR -u IMDB_DIR -u SST5_DIR -u DKD_ROOT python train.py trainer.precision="$precision" \
    trainer.enable_progress_bar=false hydra.run.dir=outputs/default_run ${EXTRA:-}) > "$clone.log" 2>&1 \
    || { echo "python train.py trainer.precision=$precision at $commit failed: $clone.log" >&2; tail -20 "$clone.log" >&2; exit 1; }
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  python - "$clone/outputs/default_run/metrics.json" "$commit" "$precision" "$wall" <<'PY'
import json, sys
m, commit, precision, wall = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], float(sys.argv[4])
teacher = next(iter(m["teachers"].values()))["dev"]["dev/acc"]
print(f"| {commit} | {precision} | {wall:.0f} | {teacher:.4f} | {m['dev']['dev/acc']:.4f} | {m['total_wall_time_s']} | "
      f"{m['train_examples_per_s']} |")
PY
done
