#!/usr/bin/env bash
# Training speed, side by side on this machine, of
#   (a) the authors' code: lancopku/DynamicKD's dynamic_data.py, entropy selection at r = 0.1, fp32, and
#   (b) DKD: `python train.py sampler=entropy sampler.ratio=0.1` (efficient mode, DKD's default), fp32 and bf16-mixed,
# with the same teacher, the same student initialisation, the same data, batch 32, max_seq_length 128, EPOCHS epochs,
# seed 1 and THREADS torch threads.
#
#   bash docs/bench/authors_speed.sh                      # ROWS=4000 EPOCHS=1 THREADS=2 REPEATS=1
#   ROWS=64 DEV_ROWS=64 THREADS=1 bash docs/bench/authors_speed.sh   # a smoke run (a minute)
#
# Settings (environment variables; defaults in brackets):
#   AUTHORS_DIR  their code: a work tree or a git repository (bare mirrors too) [/work/.mirror/lancopku+DynamicKD/repo];
#                it is never copied into this repository: the harness works on a copy under WORK
#   AUTHORS_REV  the revision taken from a git AUTHORS_DIR [HEAD]
#   VENV         a virtual environment with their pinned transformers==4.5.1 [/work/authors-venv] (how to build it:
#                "The authors' environment" below)
#   PYTHON       DKD's Python [python]
#   TEACHER      a fine-tuned all-MiniLM-L6-v2 SST-2 teacher folder of DKD's store [the newest
#                outputs/teachers/sst2/all-MiniLM-L6-v2-*; none: fine-tuned first by DKD with TEACHER_CMD]
#   ROWS [4000] EPOCHS [1] THREADS [2] REPEATS [1] SEED [1] DEV_ROWS [all 872]
#   SIDES        which runs, in this order in odd repeats and reversed in even ones [authors dkd32 dkdbf16]; also
#                dkd32loop and dkdbf16loop: DKD with distill.adamw=auto (torch's per-parameter AdamW loop on a CPU, as
#                before distill.adamw=fused was the default)
#   DKD_CACHE    DKD's teacher-output cache: fresh (DKD's default disk cache, empty for each run, so every selected row
#                runs the teacher, as on a first run), off, or shared (one cache for all DKD runs: later runs hit) [fresh]
#   VERIFY       1: before timing, check that both sides tokenise the rows alike and that teacher and student
#                initialisation give the same logits on both sides (a few seconds); 0: skip [1]
#   WORK         the temporary folder (data, their copy, converted models, logs, results) [mktemp -d under TMPDIR]
#
# What is measured (the same for both sides; each side's own figure is printed too):
#   examples/s (loop)   training rows processed / wall seconds of the training loop: from the start of the first
#                       epoch to the end of the last optimizer step (data loading, the steps, per-step logging and
#                       callbacks inside; model loading, tokenisation, evaluation after training and saving outside).
#   examples/s (steps)  training rows / the summed seconds of the steps alone, batch in hand to optimizer step done
#                       (data loading between steps excluded). This is DKD's own Throughput window
#                       (dkd/callbacks.py: on_train_batch_start to on_train_batch_end, metrics.json's
#                       train_examples_per_s); on HF's side on_step_begin to on_step_end.
#   "Rows" are the rows the loader delivers (32 a step): both sides score all of them with the student, then
#   distil k = floor(0.1 * 32) = 3 of them.
#   Timed by callbacks in authors_speed.py: HF TrainerCallback on their side, Lightning Callback on DKD's (added with
#   `+callbacks.bench_timer._target_=authors_speed.loop_timer`, a plain DKD option).
# Differences of the two timing windows that remain (all small against a step of 0.1-2 s):
#   - HF's step window also holds lr_scheduler.step() and model.zero_grad(); Lightning steps the scheduler after
#     on_train_batch_end (outside DKD's window). Lightning moves a batch to the device before on_train_batch_start,
#     HF inside the step (a no-op on CPU).
#   - their own figure, HF 4.5.1's train_runtime, starts before on_train_begin (a few ms earlier than our loop
#     window) and ends after the loop; its `train_samples_per_second` is max_steps / runtime in 4.5.1 (a bug, fixed
#     in 4.6): steps per second, not samples. The summary prints rows / train_runtime instead.
#   - DKD's metrics.json train_examples_per_s is rounded to 0.1.
#
# The authors' code, and every change made to run it here (their files are not edited):
#   - taken from AUTHORS_DIR into WORK/authors by `git archive` (or cp -r) and run there, by
#     `VENV/bin/python authors_speed.py authors -- dynamic_data.py <their arguments>`, which runs their script with
#     runpy as `python dynamic_data.py ...` would, after two runtime patches of transformers.Trainer.train:
#       1. a timing callback (the two windows above); it changes nothing in the step.
#       2. a resume guard: their script (run_glue.py's logic) passes --model_name_or_path as resume_from_checkpoint
#          whenever it is a local folder whose config has the task's label count; their scripts pass a hub id
#          (bert-base-uncased), so it never fires there. Offline the student must be a local folder, and HF 4.5.1's
#          resume reloads the model class without the teacher and the selection arguments (their forward then stops
#          at `assert self.teacher is not None`). The guard drops a resume from a folder without trainer_state.json.
#   - their arguments from scripts/data.sh: --kd_alpha 1.0 --ce_alpha 1.0 --warmup_ratio 0.1 --learning_rate 2e-5
#     --per_device_train_batch_size 32 --per_device_eval_batch_size 64 --max_seq_length 128 --save_total_limit 1
#     --logging_steps 200 --do_train --do_eval --overwrite_output_dir, with --selection_strategy entropy
#     --selection_ratio 0.1 --student_num_layers 3 --seed SEED --num_train_epochs EPOCHS. Changed or added:
#       --fp16 dropped (CPU; 4.5.1's fp16 needs CUDA) and --no_cuda added: their run is fp32 on the CPU;
#       --evaluation_strategy no (theirs: steps, every logging_steps = 200 steps): no evaluation inside the timed
#         loop; --do_eval still evaluates once after training (outside the timing; its accuracy is printed);
#       --save_steps 1000000000 (theirs: HF's 500): no checkpoint written inside the timed loop;
#       --task_name sst2 replaced by --train_file/--validation_file (JSON lines, `sentence`/`label`; the hub loader
#         does not work offline); their script then reads the same rows, maps labels 0/1 to 0/1, tokenises
#         `sentence`;
#       --model_name_or_path: the student initialisation below; --teacher: the teacher below;
#       --use_fast_tokenizer False: tokenizers 0.10.x (their transformers' pin) has no wheel for Python 3.11, so the
#         venv has no `tokenizers` and the slow BertTokenizer (same vocabulary, lower-casing) tokenises, before
#         training (outside the timing);
#       --report_to none (no TensorBoard/W&B logging; theirs would log to TensorBoard every 200 steps, after the
#         loop here), --disable_tqdm True (no progress bar; DKD runs with trainer.enable_progress_bar=false),
#         --skip_memory_metrics True (HF 4.5.1's memory tracker, with psutil installed, runs a busy-polling thread
#         beside the training threads; the venv has no psutil, so this changes nothing here);
#     and OMP_NUM_THREADS=MKL_NUM_THREADS=THREADS with torch.set_num_threads(THREADS) in the wrapper.
#   What runs unchanged: their data loading, tokenisation with padding to max_seq_length (their
#   pad_to_max_length=True), their DynamicDataKDForSequenceClassification (student forward on all 32 rows, entropy
#   on softmax, the top int(32 * 0.1) = 3 rows through the teacher, MSE KD + CE), HF Trainer 4.5.1's loop, AdamW,
#   linear warm-up, clipping at 1.0, the teacher a submodule in train mode (dropout on), as released.
#
# DKD's run: `python train.py sampler=entropy sampler.ratio=0.1 trainer.precision=32|bf16-mixed` plus threads=THREADS
#   seed=SEED (default 42) distill.epochs=EPOCHS (default 3) task.data_dir=WORK/data task.train_limit=null (default: a
#   random 10k subset) teacher.dirs.base=TEACHER, trainer=cpu (what accelerator=auto picks on a CPU-only machine),
#   trainer.enable_progress_bar=false, compress.enabled=false (the compression report after training: minutes, not
#   timed), paths.cache_dir (see DKD_CACHE), hydra.run.dir under WORK and the timer callback. Everything else is DKD's
#   default: efficient mode, min_keep 1, per-batch padding, teachers in eval mode, dev evaluation after the epoch
#   (outside both timings).
#
# The same models on both sides:
#   - teacher: TEACHER, passed to DKD as teacher.dirs.base; to theirs as WORK/teacher-hf4, the same tensors saved as
#     pytorch_model.bin with the same config.json (transformers 4.5.1 reads no safetensors).
#   - student: all-MiniLM-L6-v2's first 3 layers with a classifier head, built by DKD's own code at SEED
#     (pl.seed_everything, dkd.models.load_classifier, truncate: what dkd.run.distill does), saved for theirs as
#     WORK/student-init (pytorch_model.bin, config.json, the package's vocab.txt and tokenizer_config.json); their
#     from_pretrained then loads every weight of it (num_hidden_layers 3), no head newly initialised.
#   - data: SST-2's first ROWS training rows (and the first DEV_ROWS dev rows) from $GLUE_DIR/SST-2, written to
#     WORK/data as train.tsv/dev.tsv (DKD: task.data_dir=WORK/data task.train_limit=null) and train.json/dev.json
#     (theirs). Data is never written into the repository.
#
# What differs between the sides by design (it is what is compared): their inputs are padded to 128 tokens, DKD pads
# each batch to its longest row; they train the student on all 32 rows (KD on 3), DKD's efficient mode scores the 32
# rows without gradients and trains on the 3; their teacher runs in train mode, DKD's in eval mode; learning rate and
# weight decay are each side's default (theirs 2e-5 / 0, DKD 7.5e-5 / 0.01; no effect on speed).
#
# The authors' environment (outside the repository; the main environment is not touched):
#   python -m venv /work/authors-venv
#   /work/authors-venv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl  # or torch==2.13.0
#   /work/authors-venv/bin/pip install --no-deps transformers==4.5.1
#   /work/authors-venv/bin/pip install "numpy<2" packaging regex requests sacremoses six tqdm datasets==2.21.0 \
#       pyarrow==17.0.0 pandas==2.2.2 huggingface_hub==0.24.6
# (their requirements.txt: transformers==4.5.1, sklearn, datasets, tensorboardX==2.1; sklearn only serves
# load_metric("glue") and tensorboardX only logging, neither used here; datasets < 3 keeps the load_metric they
# import.)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
AUTHORS_DIR=${AUTHORS_DIR:-/work/.mirror/lancopku+DynamicKD/repo}
AUTHORS_REV=${AUTHORS_REV:-HEAD}
VENV=${VENV:-/work/authors-venv}
PYTHON=${PYTHON:-python}
ROWS=${ROWS:-4000}
EPOCHS=${EPOCHS:-1}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-1}
SEED=${SEED:-1}
DEV_ROWS=${DEV_ROWS:-}
SIDES=${SIDES:-authors dkd32 dkdbf16}
DKD_CACHE=${DKD_CACHE:-fresh}
GLUE=${GLUE_DIR:-$REPO/../shared/data/glue}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/authors_speed.XXXXXX")}
TEACHER_CMD="python train.py stage=teacher task.train_limit=4000 threads=1 trainer.enable_progress_bar=false"

say() { printf '[authors_speed] %s\n' "$*" >&2; }
quote() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; printf '%s' "${out% }"; }

case "$WORK" in "$REPO"|"$REPO"/*) case "$WORK" in "$REPO"/outputs/*) ;; *)
  say "WORK=$WORK lies in the repository: give a folder outside it (or under outputs/)"; exit 2;; esac;; esac
mkdir -p "$WORK"/{runs,results,logs}
WORK=$(cd "$WORK" && pwd)
say "work folder: $WORK"

# --- the authors' environment
"$VENV/bin/python" - <<'EOF' || { say "VENV=$VENV: needs transformers==4.5.1 (see this file's header)"; exit 2; }
import transformers, torch
assert transformers.__version__ == "4.5.1", transformers.__version__
import sys; print(f"[authors_speed] authors' venv: transformers {transformers.__version__}, torch {torch.__version__}", file=sys.stderr)
EOF

# --- their code, copied out of AUTHORS_DIR
rm -rf "$WORK/authors" && mkdir -p "$WORK/authors"
if [ -f "$AUTHORS_DIR/dynamic_data.py" ]; then
  cp -r "$AUTHORS_DIR/." "$WORK/authors/"
  AUTHORS_COMMIT=$(git -C "$AUTHORS_DIR" rev-parse HEAD 2>/dev/null || echo "unknown (not a git work tree)")
elif git -C "$AUTHORS_DIR" rev-parse --verify -q "$AUTHORS_REV^{commit}" >/dev/null; then
  git -C "$AUTHORS_DIR" archive "$AUTHORS_REV" | tar -x -C "$WORK/authors"
  AUTHORS_COMMIT=$(git -C "$AUTHORS_DIR" rev-parse "$AUTHORS_REV^{commit}")
else
  say "AUTHORS_DIR=$AUTHORS_DIR holds neither dynamic_data.py nor a git revision $AUTHORS_REV"; exit 2
fi
[ -f "$WORK/authors/dynamic_data.py" ] || { say "no dynamic_data.py in $AUTHORS_DIR"; exit 2; }
say "their code: $AUTHORS_DIR at $AUTHORS_COMMIT -> $WORK/authors"

# --- the teacher
if [ -z "${TEACHER:-}" ]; then
  TEACHER=$(ls -dt "$REPO"/outputs/teachers/sst2/all-MiniLM-L6-v2-*/ 2>/dev/null | head -1 || true)
  if [ -z "$TEACHER" ]; then
    say "no SST-2 MiniLM teacher in $REPO/outputs/teachers/sst2: fine-tuning one first: $TEACHER_CMD"
    (cd "$REPO" && $PYTHON ${TEACHER_CMD#python }) > "$WORK/logs/teacher.log" 2>&1
    TEACHER=$(ls -dt "$REPO"/outputs/teachers/sst2/all-MiniLM-L6-v2-*/ | head -1)
  fi
fi
TEACHER=$(cd "$TEACHER" && pwd)
[ -f "$TEACHER/config.json" ] || { say "TEACHER=$TEACHER holds no config.json"; exit 2; }
say "teacher: $TEACHER"

# --- data, student initialisation, teacher for transformers 4.5.1
shown() { grep -v -e "^Seed set to" -e "Loading weights" "$1" | sed 's/^/[authors_speed] /' >&2 || true; }
(cd "$REPO" && $PYTHON "$HERE/authors_speed.py" prepare --repo "$REPO" --sst2 "$GLUE/SST-2" --rows "$ROWS" \
  ${DEV_ROWS:+--dev-rows "$DEV_ROWS"} --teacher "$TEACHER" --seed "$SEED" --out "$WORK") > "$WORK/logs/prepare.log" 2>&1 \
  || { say "prepare failed: tail of $WORK/logs/prepare.log:"; tail -20 "$WORK/logs/prepare.log" >&2; exit 1; }
shown "$WORK/logs/prepare.log"

# --- both sides see the same tokens, teacher and student initialisation (their models built as their script builds
#     them; logits on the first 256 training rows, eval mode)
if [ "${VERIFY:-1}" = 1 ]; then
  (cd "$WORK/authors" && env OMP_NUM_THREADS=1 HF_HOME="$WORK/hf-home" TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" \
    "$HERE/authors_speed.py" probe --authors-dir "$WORK/authors" --student "$WORK/student-init" \
    --teacher "$WORK/teacher-hf4" --data "$WORK/data/train.json" --out "$WORK/probe.npz") > "$WORK/logs/probe.log" 2>&1 \
    || { say "probe failed: tail of $WORK/logs/probe.log:"; tail -20 "$WORK/logs/probe.log" >&2; exit 1; }
  (cd "$REPO" && $PYTHON "$HERE/authors_speed.py" verify --repo "$REPO" --teacher "$TEACHER" \
    --data "$WORK/data/train.tsv" --probe "$WORK/probe.npz" --seed "$SEED") > "$WORK/logs/verify.log" 2>&1 \
    || { shown "$WORK/logs/verify.log"; say "verify failed ($WORK/logs/verify.log)"; exit 1; }
  shown "$WORK/logs/verify.log"
fi

# --- the runs
declare -A CMDS
run_authors() {  # name
  local name=$1 out="$WORK/runs/$1"
  local args=(dynamic_data.py --selection_strategy entropy --selection_ratio 0.1
    --model_name_or_path "$WORK/student-init" --teacher "$WORK/teacher-hf4"
    --student_num_layers 3 --warmup_ratio 0.1 --kd_alpha 1.0 --ce_alpha 1.0 --seed "$SEED"
    --train_file "$WORK/data/train.json" --validation_file "$WORK/data/dev.json"
    --do_eval --do_train --max_seq_length 128 --per_device_train_batch_size 32 --per_device_eval_batch_size 64
    --overwrite_output_dir --save_total_limit 1 --logging_steps 200 --evaluation_strategy no
    --learning_rate 2e-5 --num_train_epochs "$EPOCHS" --output_dir "$out"
    --no_cuda --save_steps 1000000000 --use_fast_tokenizer False --report_to none --disable_tqdm True
    --skip_memory_metrics True)
  local cmd=(env OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" CUDA_VISIBLE_DEVICES=
    HF_HOME="$WORK/hf-home" HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    "$VENV/bin/python" "$HERE/authors_speed.py" authors --threads "$THREADS" --result "$WORK/results/$name.json"
    -- "${args[@]}")
  CMDS[$name]="cd $(quote "$WORK/authors") && $(quote "${cmd[@]}")"
  CMDS[$name]+=$'\n'"# = their script with its arguments, run by the wrapper (timer, resume guard): python $(quote "${args[@]}")"
  (cd "$WORK/authors" && "${cmd[@]}") > "$WORK/logs/$name.log" 2>&1 \
    || { say "$name failed: tail of $WORK/logs/$name.log:"; tail -30 "$WORK/logs/$name.log" >&2; return 1; }
  $PYTHON "$HERE/authors_speed.py" annotate "$WORK/results/$name.json" name="$name" label=fp32 \
    short="dynamic_data.py --selection_strategy entropy --selection_ratio 0.1 (fp32)"
}
run_dkd() {  # name precision label [more overrides]
  local name=$1 precision=$2 label=$3 cache=() more=("${@:4}")
  case "$DKD_CACHE" in
    fresh) cache=(paths.cache_dir="$WORK/cache/$name");;
    off) cache=(paths.cache_dir="$WORK/cache/shared" distill.teacher_cache=off);;
    shared) cache=(paths.cache_dir="$WORK/cache/shared");;
    *) say "DKD_CACHE=$DKD_CACHE: fresh, off or shared"; exit 2;;
  esac
  local args=(train.py sampler=entropy sampler.ratio=0.1 trainer.precision="$precision" threads="$THREADS"
    seed="$SEED" distill.epochs="$EPOCHS" task.data_dir="$WORK/data" task.train_limit=null
    teacher.dirs.base="$TEACHER" trainer=cpu trainer.enable_progress_bar=false compress.enabled=false
    "${more[@]}" "${cache[@]}" hydra.run.dir="$WORK/runs/$name"
    +callbacks.bench_timer._target_=authors_speed.loop_timer +callbacks.bench_timer.out="$WORK/results/$name.json")
  local cmd=(env OMP_NUM_THREADS="$THREADS" PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}" $PYTHON "${args[@]}")
  CMDS[$name]="cd $(quote "$REPO") && $(quote "${cmd[@]}")"
  (cd "$REPO" && "${cmd[@]}") > "$WORK/logs/$name.log" 2>&1 \
    || { say "$name failed: tail of $WORK/logs/$name.log:"; tail -30 "$WORK/logs/$name.log" >&2; return 1; }
  $PYTHON "$HERE/authors_speed.py" annotate "$WORK/results/$name.json" name="$name" label="$label" \
    short="train.py sampler=entropy sampler.ratio=0.1 trainer.precision=$precision${more:+ ${more[*]}}" \
    metrics="$WORK/runs/$name/metrics.json"
}

read -r -a order <<< "$SIDES"
names=()
for rep in $(seq 1 "$REPEATS"); do
  sides=("${order[@]}")
  if (( rep % 2 == 0 )); then sides=(); for (( i=${#order[@]}-1; i>=0; i-- )); do sides+=("${order[i]}"); done; fi
  for side in "${sides[@]}"; do
    name="$side-r$rep"
    say "run $name ($(date -u +%H:%M:%S) UTC)"
    case "$side" in
      authors) run_authors "$name";;
      dkd32) run_dkd "$name" 32 fp32;;
      dkdbf16) run_dkd "$name" bf16-mixed bf16-mixed;;
      dkd32loop) run_dkd "$name" 32 "fp32, adamw=auto" distill.adamw=auto;;
      dkdbf16loop) run_dkd "$name" bf16-mixed "bf16-mixed, adamw=auto" distill.adamw=auto;;
      *) say "unknown side $side (authors, dkd32, dkdbf16, dkd32loop, dkdbf16loop)"; exit 2;;
    esac
    names+=("$name")
  done
done

# --- the table and the commands
title="Training speed, $ROWS SST-2 rows x $EPOCHS epoch(s), batch 32, max_seq_length 128, seed $SEED, $THREADS threads"
title+=" ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg))"
$PYTHON "$HERE/authors_speed.py" summary --results "$WORK/results" --title "$title"
echo
echo "Teacher: $TEACHER; their code: $AUTHORS_DIR at $AUTHORS_COMMIT; DKD at $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- dkd conf train.py || echo ' (with local changes)'); DKD_CACHE=$DKD_CACHE"
echo
echo "Commands run (logs and results in $WORK):"
for name in "${names[@]}"; do
  printf '\n# %s\n%s\n' "$name" "${CMDS[$name]}"
done
