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
pick() {  # NAME: "<lr> <epochs>" from the variable NAME, checked
  local value=${!1:-} lr epochs extra
  read -r lr epochs extra <<< "$value"
  if [ -z "$lr" ] || ! [[ "$epochs" =~ ^[1-9][0-9]*$ ]] || [ -n "$extra" ]; then
    echo "$1=\"$value\": give the pick as \"<lr> <epochs>\" (python -m dkd.studies.report --pick)" >&2
    return 2
  fi
  echo "$lr $epochs"
}
overrides() {  # arm: the overrides that make it
  local lr epochs picked selection=experiment=repro_selection_sst5
  case "$1" in
    kd_pt|kd_pt_uncertainty|kd_pt_uncertainty_r) echo "experiment=repro_objective variant=$1";;
    full_kd|faithful)
      picked=$(pick FULL) || return 2
      read -r lr epochs <<< "$picked"
      local mode=$([ "$1" = faithful ] && echo "sampler=entropy sampler.mode=faithful" || echo "sampler=none")
      echo "$selection $mode distill.lr=$lr distill.epochs=$epochs";;
    random|entropy|margin|least_confidence|subset|pool_random|pool_entropy)
      picked=$(pick EFF) || return 2
      read -r lr epochs <<< "$picked"
      case "$1" in
        subset) echo "$selection sampler=none distill.train_limit=854 distill.lr=$lr distill.epochs=$((10 * epochs))";;
        pool_*) echo "$selection sampler=${1#pool_} sampler.pool=10 distill.lr=$lr distill.epochs=$((10 * epochs))";;
        *) echo "$selection sampler=$1 distill.lr=$lr distill.epochs=$epochs";;
      esac;;
    *) echo "unknown arm $1: full_kd faithful random entropy margin least_confidence subset pool_random" \
         "pool_entropy kd_pt kd_pt_uncertainty kd_pt_uncertainty_r" >&2; return 2;;
  esac
}
queue=()
for seed in ${SEEDS:=42 1 2 3 4}; do for arm in ${ARMS:?ARMS=<arms>}; do
  o=$(overrides "$arm") || exit 2
  dir="$OUT/$arm-seed$seed"
  [ -f "$dir/predictions.json" ] && continue
  queue+=("$dir|$o seed=$seed")
done; done
run_one() {  # one job: trained (unless an earlier attempt finished training), then evaluated on test
  local dir=${1%%|*} o=${1#*|}
  local train="python train.py $o threads=1 trainer.enable_progress_bar=false hydra.run.dir=$dir"
  local evaluate="python -m dkd.ship.evaluate $dir --threads 1"
  if [ -n "${DRY:-}" ]; then echo "$train && $evaluate"; return; fi
  if [ ! -f "$dir/metrics.json" ]; then
    $train > "$dir.log" 2>&1 && $evaluate >> "$dir.log" 2>&1
  else
    $evaluate >> "$dir.log" 2>&1
  fi
  local rc=$?
  echo "$(basename "$dir") rc=$rc $(date -u +%FT%TZ)" >> "$LOG"
  return $rc
}
export -f run_one
LOG=$OUT/batch.log
export OUT LOG DRY
if [ -n "${DRY:-}" ]; then
  printf '%s\n' "${queue[@]}" | xargs -r -P 2 -I{} bash -c 'run_one "$1"' _ {}
  exit
fi
# the teacher of every arm, found in the store by its recipe or fine-tuned once, before the jobs
python train.py experiment=repro_selection_sst5 stage=teacher threads=2 trainer.enable_progress_bar=false \
  >> $OUT/teacher.log 2>&1 || { echo "the teacher failed: $OUT/teacher.log" >&2; exit 1; }
echo "start $ARMS seeds $SEEDS FULL=${FULL:-} EFF=${EFF:-} $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)," \
  "${#queue[@]} jobs to run" >> $LOG
printf '%s\n' "${queue[@]}" | xargs -r -P 2 -I{} bash -c 'run_one "$1"' _ {}
rc=$?  # xargs: 123 when a job failed (its log: <job folder>.log)
echo "end rc=$rc $(date -u +%FT%TZ)" >> $LOG
exit $rc
