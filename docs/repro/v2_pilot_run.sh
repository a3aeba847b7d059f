#!/usr/bin/env bash
# Design v2 (issue 28, docs/reproduction.md): the pilot recipe check on SST-5. Seeds 100 and 101 (never in a
# verdict), one after the other per seed and the two seeds side by side, one thread a job; every job of the grid
# distill.lr in {7.5e-5, 2e-4} x distill.epochs in {3, 6}, the cheaper first. A finished job (its metrics.json) is
# skipped, so a batch cut short goes on where it stopped.
#   MODE=efficient bash docs/repro/v2_pilot_run.sh   # sampler=random and entropy, r = 0.1: 16 jobs, ~65 min
#   MODE=full_kd bash docs/repro/v2_pilot_run.sh     # sampler=none: 8 jobs, ~85 min
#   TEACHER=<folder>  the SST-5 teacher (default: the first in outputs/teachers/sst5/, fine-tuned first if none)
#   python -m dkd.studies.report outputs/pilot --json docs/repro/v2_pilot.json   # per recipe: dev mean ± std, each
#     job's score ("1 class": it collapsed), wall time
set -u
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the checkout this script lies in
export DKD_ROOT="$PWD"
OUT=outputs/pilot
mkdir -p $OUT
LOG=$OUT/batch.log
echo "start ${MODE:?MODE=efficient or full_kd} $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)" >> $LOG
if [ -z "${TEACHER:-}" ]; then
  if ! ls outputs/teachers/sst5/*/metrics.json >/dev/null 2>&1; then
    python train.py experiment=repro_selection_sst5 stage=teacher threads=2 trainer.enable_progress_bar=false \
      >> $OUT/teacher.log 2>&1
    echo "teacher done $(date -u +%FT%TZ) rc=$?" >> $LOG
  fi
  TEACHER=$(dirname "$(ls outputs/teachers/sst5/*/metrics.json | head -1)")
fi
case "$MODE" in
  efficient) SAMPLERS="random entropy";;
  full_kd) SAMPLERS="none";;
  *) echo "MODE=$MODE: efficient or full_kd" >&2; exit 2;;
esac
seed_jobs() {  # seed: this seed's jobs, one after the other, the cheaper first
  local seed=$1
  for epochs in 3 6; do for lr in 7.5e-5 2e-4; do for sampler in $SAMPLERS; do
    local dir="$OUT/$sampler-lr$lr-ep$epochs-seed$seed"
    [ -f "$dir/metrics.json" ] && continue
    python train.py experiment=repro_selection_sst5 sampler=$sampler distill.lr=$lr distill.epochs=$epochs \
      seed=$seed threads=1 teacher.dirs.base="$TEACHER" trainer.enable_progress_bar=false hydra.run.dir="$dir" \
      > "$dir.log" 2>&1
    echo "$(basename "$dir") rc=$? $(date -u +%FT%TZ)" >> $LOG
  done; done; done
}
seed_jobs 100 & seed_jobs 101 & wait
echo "end $MODE $(date -u +%FT%TZ)" >> $LOG
