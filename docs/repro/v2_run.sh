#!/usr/bin/env bash
# Design v2 (issue 28, docs/reproduction.md): the verdict runs of findings 2 and 3 on SST-5. Each job is trained (one
# thread) and then evaluated on test (python -m dkd.ship.evaluate); two jobs side by side from one queue; a job whose
# predictions.json exists is skipped, so a batch cut short goes on where it stopped.
#   ARMS="full_kd faithful" FULL="<lr> <epochs>" EFF="<lr> <epochs>" bash docs/repro/v2_run.sh
#   ARMS="kd_pt kd_pt_uncertainty" SEEDS="5 6 7 8 9" bash docs/repro/v2_run.sh
# Finding 2 (experiment=repro_selection_sst5), FULL: the pick for full KD (arms full_kd, faithful); EFF: the pick for
# efficient mode (random, entropy, margin, least_confidence; subset, pool_random and pool_entropy at 10 x its epochs,
# the optimizer steps of efficient mode). Finding 3 (experiment=repro_objective, v1's recipe as it is): kd_pt,
# kd_pt_uncertainty, kd_pt_uncertainty_r.
#   SEEDS   the seeds (default 42 1 2 3 4), the outer loop: a batch cut short holds every arm of its first seeds
#   DRY=1   print the jobs, run nothing
# The teacher comes from the store (outputs/teachers, found by its recipe as the v1 jobs found it; fine-tuned once
# first if it is not there), so that the jobs' configs equal those of the v1 jobs they are read beside.
# Jobs land in outputs/v2/<arm>-seed<seed>; read them with, e.g.,
#   python -m dkd.studies.report --study selection outputs/v2/{full_kd,entropy}-seed*/ --save <json>
set -u
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the checkout this script lies in
export DKD_ROOT="$PWD"
OUT=outputs/v2
mkdir -p $OUT
overrides() {  # arm: the overrides that make it
  case "$1" in
    kd_pt|kd_pt_uncertainty|kd_pt_uncertainty_r) echo "experiment=repro_objective variant=$1"; return;;
  esac
  : "${FULL:?FULL=<lr> <epochs>, the pick for full KD (python -m dkd.studies.report --pick)}"
  : "${EFF:?EFF=<lr> <epochs>, the pick for efficient mode}"
  local full_lr full_ep eff_lr eff_ep
  read -r full_lr full_ep <<< "$FULL"
  read -r eff_lr eff_ep <<< "$EFF"
  local full="distill.lr=$full_lr distill.epochs=$full_ep" eff="distill.lr=$eff_lr distill.epochs=$eff_ep"
  local ten="distill.lr=$eff_lr distill.epochs=$((10 * eff_ep))" selection=experiment=repro_selection_sst5
  case "$1" in
    full_kd) echo "$selection sampler=none $full";;
    faithful) echo "$selection sampler=entropy sampler.mode=faithful $full";;
    random|entropy|margin|least_confidence) echo "$selection sampler=$1 $eff";;
    subset) echo "$selection sampler=none distill.train_limit=854 $ten";;
    pool_random|pool_entropy) echo "$selection sampler=${1#pool_} sampler.pool=10 $ten";;
    *) echo "unknown arm $1" >&2; return 2;;
  esac
}
queue=()
for seed in ${SEEDS:=42 1 2 3 4}; do for arm in ${ARMS:?ARMS=<arms>}; do
  o=$(overrides "$arm") || exit 2
  dir="$OUT/$arm-seed$seed"
  [ -f "$dir/predictions.json" ] && continue
  queue+=("$dir|$o seed=$seed")
done; done
LOG=$OUT/batch.log
if [ -z "${DRY:-}" ]; then  # the teacher of every arm, found in the store by its recipe or fine-tuned once, first
  python train.py experiment=repro_selection_sst5 stage=teacher threads=2 trainer.enable_progress_bar=false \
    >> $OUT/teacher.log 2>&1 || { echo "the teacher failed: $OUT/teacher.log" >&2; exit 1; }
fi
echo "start $ARMS seeds $SEEDS FULL=${FULL:-} EFF=${EFF:-} $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)," \
  "${#queue[@]} jobs to run" >> $LOG
run_one() {
  local dir=${1%%|*} o=${1#*|}
  if [ -n "${DRY:-}" ]; then echo "python train.py $o hydra.run.dir=$dir"; return; fi
  # shellcheck disable=SC2086  # the overrides are words
  python train.py $o threads=1 trainer.enable_progress_bar=false hydra.run.dir="$dir" > "$dir.log" 2>&1 \
    && python -m dkd.ship.evaluate "$dir" --threads 1 >> "$dir.log" 2>&1
  echo "$(basename "$dir") rc=$? $(date -u +%FT%TZ)" >> "$LOG"
}
export -f run_one
export OUT LOG DRY
printf '%s\n' "${queue[@]}" | xargs -r -P 2 -I{} bash -c 'run_one "$1"' _ {}
echo "end $(date -u +%FT%TZ)" >> $LOG
