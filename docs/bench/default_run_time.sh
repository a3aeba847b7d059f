#!/usr/bin/env bash
# The default run's wall time from a fresh clone (issue 27): `python train.py` as the README's first screen runs it
# (teacher fine-tuned into an empty store, then the 3-layer student distilled, exported, its card and compression
# report written), once per precision, one after the other on the whole machine, each in a clone of its own so that
# no teacher, tokenization or teacher-output cache of the other is reused.
#
#   bash docs/bench/default_run_time.sh                           # PRECISIONS="32 bf16-mixed"
#   PRECISIONS=bf16-mixed WORK=/tmp/drt bash docs/bench/default_run_time.sh
#   EXTRA="task.train_limit=64 finetune.epochs=1 distill.epochs=1" bash docs/bench/default_run_time.sh   # a smoke run
#
# Prints one Markdown row per run: precision, wall seconds of the whole command, the teacher's and the student's dev
# accuracy, and the run's own figures (metrics.json: total_wall_time_s, train_examples_per_s).
set -euo pipefail
REPO=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
SHARED=$(cd "$REPO/../shared" && pwd)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/default_run_time.XXXXXX")}
COMMIT=$(git -C "$REPO" rev-parse --short HEAD)
ln -sfn "$SHARED" "$WORK/shared"  # each clone finds the data as ../shared, as a fresh clone beside shared/ does
echo "DKD at $COMMIT$(git -C "$REPO" diff --quiet HEAD -- dkd conf train.py || echo ' (with local changes)'), $(nproc) CPUs; clones under $WORK" >&2
echo "| precision | wall s (command) | teacher dev acc | student dev acc | metrics.json total_wall_time_s | train examples/s |"
echo "|---|---:|---:|---:|---:|---:|"
for precision in ${PRECISIONS:-32 bf16-mixed}; do
  clone="$WORK/$precision"
  rm -rf "$clone" && git clone -q "$REPO" "$clone"
  start=$(date +%s.%N)
  (cd "$clone" && env -u GLUE_DIR -u IMDB_DIR -u SST5_DIR -u DKD_ROOT python train.py trainer.precision="$precision" \
    trainer.enable_progress_bar=false hydra.run.dir=outputs/default_run ${EXTRA:-}) > "$WORK/$precision.log" 2>&1 \
    || { echo "python train.py trainer.precision=$precision failed: $WORK/$precision.log" >&2; tail -20 "$WORK/$precision.log" >&2; exit 1; }
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  python - "$clone/outputs/default_run/metrics.json" "$precision" "$wall" <<'PY'
import json, sys
m, precision, wall = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3])
teacher = next(iter(m["teachers"].values()))["dev"]["dev/acc"]
print(f"| {precision} | {wall:.0f} | {teacher:.4f} | {m['dev']['dev/acc']:.4f} | {m['total_wall_time_s']} | "
      f"{m['train_examples_per_s']} |")
PY
done
