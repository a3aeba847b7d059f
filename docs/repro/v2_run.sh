#!/usr/bin/env bash
# Design v2 (issues 28, 29 and 30, docs/reproduction.md): the verdict runs of findings 1, 2 and 3 on SST-5, and of
# finding 2 on SST-2's pool. Each job is trained (one thread) and then evaluated on test where the task has one, else
# on dev (python -m dkd.ship.evaluate); two jobs side by side from one queue; a job whose predictions.json exists is
# skipped, so a batch cut short goes on where it stopped.
#   ARMS="full_kd faithful" FULL="<lr> <epochs>" EFF="<lr> <epochs>" bash docs/repro/v2_run.sh
#   ARMS="kd_pt kd_pt_uncertainty" SEEDS="5 6 7 8 9" bash docs/repro/v2_run.sh
#   ARMS="smallest largest ensemble hard soft soft_instance hard_faithful soft_faithful" FULL="<lr> <epochs>" bash …
# Finding 2 (experiment=repro_selection_sst5), FULL: the pick for full KD (arms full_kd, faithful); EFF: the pick for
# efficient mode (random, entropy, margin, least_confidence; subset, pool_random and pool_entropy at 10 x its epochs,
# the optimizer steps of efficient mode). Finding 3 (experiment=repro_objective, v1's recipe as it is): kd_pt,
# kd_pt_uncertainty, kd_pt_uncertainty_r. Finding 1 (experiment=repro_adoption, both teachers), FULL: smallest,
# largest, ensemble, hard, soft, soft_instance, and hard_faithful, soft_faithful (the authors' adoption semantics,
# adoption.faithful=true, the rest of the recipe the same). Finding 2 on SST-2's pool of 67,349 phrases
# (experiment=repro_selection_pool, issue 30: the final model on dev, no checkpoint selection), FULL: sst2_full_kd,
# sst2_faithful; EFF: sst2_random, sst2_entropy (r = 0.1), sst2_random_r05, sst2_entropy_r05 (r = 0.5), and
# sst2_subset (a fixed random 10%, 6,735 phrases, at 10 x EFF's epochs: the optimizer steps of r = 0.1). The combined
# run (experiment=repro_combined, issue 29: the choices committed there), FULL: static_kd, selection_alone,
# adoption_alone, objective_alone, combined (OUT=outputs/combined).
#   SEEDS   the seeds (default 42 1 2 3 4), the outer loop: a batch cut short holds every arm of its first seeds
#   DRY=1   print the jobs, run nothing
#   OUT     where the jobs land (default outputs/v2; a pilot: OUT=outputs/pilot_adoption SEEDS="100 101")
#   EXTRA   overrides added to every job, not to the teacher's fine-tuning before them: a key of the teacher's recipe
#           (any trainer key) needs the teacher named as is, or each job fine-tunes its own (the pool's timing pilot:
#           EXTRA="+trainer.max_steps=300 teacher.dirs.base=<folder>", the folder from python -m dkd.teachers)
# The teachers come from the store (outputs/teachers, found by their recipe as the v1 jobs found theirs; fine-tuned
# once first if not there), so that the jobs' configs equal those of the v1 jobs they are read beside.
# Jobs land in $OUT/<arm>-seed<seed>; read them with, e.g.,
#   python -m dkd.studies.report --study selection outputs/v2/{full_kd,entropy}-seed*/ --save <json>
set -u
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"  # the checkout this script lies in
export DKD_ROOT="$PWD"
OUT=${OUT:-outputs/v2}
mkdir -p "$OUT"
pick() {  # NAME: "<lr> <epochs>" from the variable NAME, checked
  local value=${!1:-} lr epochs extra
  read -r lr epochs extra <<< "$value"
  if [ -z "$lr" ] || ! [[ "$epochs" =~ ^[1-9][0-9]*$ ]] || [ -n "$extra" ]; then
    echo "$1=\"$value\": give the pick as \"<lr> <epochs>\" (python -m dkd.studies.report --pick)" >&2
    return 2
  fi
  echo "$lr $epochs"
}
# Finding 1 and the combined run fine-tune their teachers here, and a model's last bits depend on the instruction set
# of the CPU kernels that trained it: AVX2 and AVX-512 machines refit two different teachers from one recipe and seed
# (docs/reproduction.md, batch 23). Their teachers and jobs run on AVX2 kernels, which every x86-64 machine has, so
# that any machine refits the same teachers bit for bit (dkd.cpu.KERNEL_PINS; metrics.json records the kernels).
AVX2="ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
kernels() {  # overrides: the environment the job runs in ("env <pins> " or nothing: the machine's own kernels)
  case " $1 " in *" experiment=repro_adoption "*|*" experiment=repro_combined "*) echo "env $AVX2 ";; esac
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
    smallest|largest|ensemble|hard|soft|soft_instance|hard_faithful|soft_faithful)
      picked=$(pick FULL) || return 2
      read -r lr epochs <<< "$picked"
      local faithful=$([[ "$1" == *_faithful ]] && echo true || echo false)
      echo "experiment=repro_adoption adoption=${1%_faithful} adoption.faithful=$faithful distill.lr=$lr" \
        "distill.epochs=$epochs";;
    static_kd|selection_alone|adoption_alone|objective_alone|combined)
      picked=$(pick FULL) || return 2  # the combined run selects in faithful mode: full KD's pick
      read -r lr epochs <<< "$picked"
      # the experiment names the three strategies; an arm without one sets its mode back, as the experiment's
      # sampler.mode and adoption.faithful apply to any sampler and adoption
      local no_selection="sampler=none sampler.mode=efficient" no_adoption="adoption=single adoption.faithful=false"
      local arm
      case "$1" in
        static_kd) arm="$no_selection $no_adoption teacher=base variant=kd";;
        selection_alone) arm="$no_adoption teacher=base variant=kd";;
        adoption_alone) arm="$no_selection variant=kd";;
        objective_alone) arm="$no_selection $no_adoption teacher=base";;
        combined) arm="";;
      esac
      echo "experiment=repro_combined${arm:+ $arm} distill.lr=$lr distill.epochs=$epochs";;
    sst2_full_kd|sst2_faithful)
      picked=$(pick FULL) || return 2
      read -r lr epochs <<< "$picked"
      local mode=$([ "$1" = sst2_faithful ] && echo "sampler=entropy sampler.mode=faithful" || echo "sampler=none")
      echo "experiment=repro_selection_pool $mode distill.lr=$lr distill.epochs=$epochs";;
    sst2_random|sst2_entropy|sst2_random_r05|sst2_entropy_r05|sst2_subset)
      picked=$(pick EFF) || return 2
      read -r lr epochs <<< "$picked"
      local arm=${1#sst2_} pool=experiment=repro_selection_pool
      case "$arm" in
        subset) echo "$pool sampler=none distill.train_limit=6735 distill.lr=$lr distill.epochs=$((10 * epochs))";;
        *_r05) echo "$pool sampler=${arm%_r05} sampler.ratio=0.5 distill.lr=$lr distill.epochs=$epochs";;
        *) echo "$pool sampler=$arm distill.lr=$lr distill.epochs=$epochs";;
      esac;;
    *) echo "unknown arm $1: full_kd faithful random entropy margin least_confidence subset pool_random" \
         "pool_entropy kd_pt kd_pt_uncertainty kd_pt_uncertainty_r smallest largest ensemble hard soft" \
         "soft_instance hard_faithful soft_faithful sst2_full_kd sst2_faithful sst2_random sst2_entropy" \
         "sst2_random_r05 sst2_entropy_r05 sst2_subset static_kd selection_alone adoption_alone objective_alone" \
         "combined" >&2; return 2;;
  esac
}
queue=()
for seed in ${SEEDS:=42 1 2 3 4}; do for arm in ${ARMS:?ARMS=<arms>}; do
  o=$(overrides "$arm") || exit 2
  dir="$OUT/$arm-seed$seed"
  [ -f "$dir/predictions.json" ] && continue
  queue+=("$dir|$o seed=$seed${EXTRA:+ $EXTRA}")
done; done
run_one() {  # one job: trained (unless an earlier attempt finished training), then evaluated (test, dev)
  local dir=${1%%|*} o=${1#*|}
  local pins; pins=$(kernels "$o")
  local train="${pins}python train.py $o threads=1 trainer.enable_progress_bar=false hydra.run.dir=$dir"
  local evaluate="${pins}python -m dkd.ship.evaluate $dir --threads 1"
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
export -f run_one kernels
LOG="$OUT/batch.log"
export OUT LOG DRY AVX2
if [ -n "${DRY:-}" ]; then
  printf '%s\n' "${queue[@]}" | xargs -d '\n' -r -P 2 -I{} bash -c 'run_one "$1"' _ {}
  exit
fi
# the teachers of every arm, found in the store by their recipe or fine-tuned once, before the jobs (finding 1's
# arms learn from both: all-mpnet-base-v2 is fine-tuned on first use, about 75 minutes on two threads)
experiments=$(printf '%s\n' "${queue[@]}" | grep -o 'experiment=[a-z_0-9]*' | sort -u)
for experiment in $experiments; do
  $(kernels "$experiment") python train.py "$experiment" stage=teacher threads=2 trainer.enable_progress_bar=false \
    >> "$OUT/teacher.log" 2>&1 || { echo "the teacher failed: $OUT/teacher.log" >&2; exit 1; }
done
echo "start $ARMS seeds $SEEDS FULL=${FULL:-} EFF=${EFF:-} EXTRA=${EXTRA:-} $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD)," \
  "${#queue[@]} jobs to run" >> "$LOG"
printf '%s\n' "${queue[@]}" | xargs -d '\n' -r -P 2 -I{} bash -c 'run_one "$1"' _ {}
rc=$?  # xargs: 123 when a job failed (its log: <job folder>.log)
echo "end rc=$rc $(date -u +%FT%TZ)" >> "$LOG"
exit $rc
