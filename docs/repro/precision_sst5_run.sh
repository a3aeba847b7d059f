#!/usr/bin/env bash
# Issue 27, item 4: bf16 vs fp32 on SST-5, full KD and entropy r=0.1 efficient, paired seeds; two one-thread jobs side by side.
set -u
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the checkout this script lies in
export DKD_ROOT="$PWD"
LOG=outputs/precision/batch.log
mkdir -p outputs/precision
echo "start $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)" >> $LOG
if ! ls outputs/teachers/sst5/*/metrics.json >/dev/null 2>&1; then
  python train.py task=sst5 stage=teacher threads=2 trainer.enable_progress_bar=false >> outputs/precision/teacher.log 2>&1
  echo "teacher done $(date -u +%FT%TZ) rc=$?" >> $LOG
fi
TEACHER=$(dirname $(ls outputs/teachers/sst5/*/metrics.json | head -1))
job() {  # sampler precision seed
  local name="$1-$2-seed$3"
  local dir="outputs/precision/$name"
  if [ -f "$dir/predictions.json" ]; then return; fi
  python train.py experiment=repro_selection_sst5 sampler=$1 trainer.precision=$2 seed=$3 threads=1 \
    teacher.dirs.base=$TEACHER trainer.enable_progress_bar=false hydra.run.dir=$dir > "$dir.log" 2>&1 \
    && python -m dkd.ship.evaluate "$dir" --threads 1 >> "$dir.log" 2>&1
  echo "$name rc=$? $(date -u +%FT%TZ)" >> $LOG
}
for seed in ${SEEDS:-42 1 2 3 4}; do
  for sampler in none entropy; do
    job $sampler 32 $seed & job $sampler bf16-mixed $seed & wait
  done
done
echo "end $(date -u +%FT%TZ)" >> $LOG
