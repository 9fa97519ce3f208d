#!/usr/bin/env bash
# Distillation recipe: HuBERT teacher -> ARMHuBERT-family students with masking distillation,
# then a report of per-layer cosine similarity and held-out loss.
#
# Usage (from anywhere; the recipe works in its own directory):
#   bash recipes/librispeech/run.sh --mini true                       # embedded corpus, CPU
#   bash recipes/librispeech/run.sh --librispeech_dir /data/LibriSpeech \
#       --teacher /models/hubert_base_ls960.pt --trainer ddp \
#       --distill_opts "trainer.devices=2 trainer.precision=16-mixed trainer.accumulate_grad_batches=4"
#
# Stages:
#   0  audio: build and extract the embedded mini corpus, or check the LibriSpeech folder
#   1  teacher: convert the given checkpoint (fairseq .pt or Hugging Face folder) once. With
#      no --teacher, pretrain a small HuBERT-style teacher on the audio instead: MFCC k-means
#      targets and masked prediction, HuBERT's first iteration.
#   2  distill each student in --students (re-running resumes from the newest checkpoint)
#   3  report per-layer cosine similarity with the teacher on held-out audio and the held-out
#      distillation loss per epoch
#   4  export each student to ONNX (every layer's hidden states from 16 kHz waveforms),
#      checked against PyTorch
# A finished stage leaves a .done marker and is skipped when the recipe runs again.

set -euo pipefail

# Options (each one can be set on the command line: --name value)
stage=0
stop_stage=4
mini=false                       # true: the embedded synthetic corpus, a mini teacher, mini students
mini_scale=full                  # full (the demo) or tiny (a few utterances, for tests)
corpus_dir=download_mini         # where --mini builds and extracts the embedded corpus
librispeech_dir=download/LibriSpeech  # folder holding train-clean-100/, dev-clean/, ...
teacher=""                       # teacher checkpoint; empty: pretrain one in stage 1
trust_teacher=false              # unpickle a fairseq checkpoint fully (only for files you trust)
students=""                      # student configs (conf/student/); default armhubert maskhubert
trainer=cpu                      # cpu, gpu or ddp (conf/trainer/)
teacher_epochs=""                # stage 1 pretraining epochs; default 3 (20 without --mini)
teacher_opts=""                  # extra options of asr.bin.pretrain_teacher for stage 1
distill_epochs=""                # stage 2 epochs; default 200 (3 with --mini)
distill_opts=""                  # extra Hydra overrides for stage 2
exp_dir=""                       # default exp (exp_mini with --mini)
python=${PYTHON:-python}

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$recipe_dir/../.." && pwd)
# shellcheck source=../../tools/parse_options.sh
. "$repo_dir/tools/parse_options.sh"
cd "$recipe_dir"

log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') (${BASH_SOURCE[0]##*/}:${BASH_LINENO[0]}) $*"
}

if [ "$mini" = true ]; then
  layout=aishell
  audio_root=$corpus_dir
  train_sets=train
  valid_sets=dev
  heldout_sets=test
  [ -z "$students" ] && students="armhubert_mini maskhubert_mini"
  [ -z "$teacher_epochs" ] && teacher_epochs=3
  [ -z "$distill_epochs" ] && distill_epochs=3
  [ -z "$exp_dir" ] && exp_dir=exp_mini
  data_opts="distill_data=aishell distill_data.batch_size=8 distill_data.max_seconds=4 distill_data.num_workers=0"
else
  layout=librispeech
  audio_root=$librispeech_dir
  train_sets="train-clean-100 train-clean-360 train-other-500"
  valid_sets=dev-clean
  heldout_sets=test-clean
  [ -z "$students" ] && students="armhubert maskhubert"
  [ -z "$teacher_epochs" ] && teacher_epochs=20
  [ -z "$distill_epochs" ] && distill_epochs=200
  [ -z "$exp_dir" ] && exp_dir=exp
  data_opts="distill_data=librispeech"
fi
mkdir -p "$exp_dir"
teacher_dir=$exp_dir/teacher

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ "$mini" = true ]; then
    if [ -f "$corpus_dir/.done" ]; then
      log "Stage 0: the mini corpus in $corpus_dir is done, skipping (delete $corpus_dir/.done to redo)"
    else
      log "Stage 0: build and extract the embedded mini corpus in $corpus_dir"
      $python -m asr.bin.make_mini_aishell --out-dir "$corpus_dir" --scale "$mini_scale"
      # Extraction comes with AISHELL-1 preparation; its validation report lists bad files.
      $python -m asr.bin.prepare aishell --corpus-dir "$corpus_dir" --output-dir "$corpus_dir/manifests"
      touch "$corpus_dir/.done"
    fi
  else
    log "Stage 0: checking the LibriSpeech folder $librispeech_dir"
    for part in $train_sets $valid_sets $heldout_sets; do
      if [ ! -d "$librispeech_dir/$part" ]; then
        echo "Missing $librispeech_dir/$part: download it from https://www.openslr.org/12 and" \
          "extract it there, or pass --librispeech_dir" >&2
        exit 1
      fi
    done
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  if [ -f "$teacher_dir/teacher.pt" ]; then
    log "Stage 1: $teacher_dir/teacher.pt exists, skipping (move it away to redo)"
  elif [ -n "$teacher" ]; then
    log "Stage 1: convert $teacher to $teacher_dir/teacher.pt"
    mkdir -p "$teacher_dir"
    trust_flag=$([ "$trust_teacher" = true ] && echo --trust || true)
    # shellcheck disable=SC2086
    $python -m asr.bin.convert_teacher "$teacher" "$teacher_dir/teacher.pt" $trust_flag
  else
    log "Stage 1: pretrain a HuBERT-style teacher on $audio_root into $teacher_dir"
    # shellcheck disable=SC2086
    $python -m asr.bin.pretrain_teacher --audio-dir "$audio_root" --layout "$layout" \
      --train-sets $train_sets --valid-sets $valid_sets --out-dir "$teacher_dir" \
      --epochs "$teacher_epochs" --accelerator "$([ "$trainer" = cpu ] && echo cpu || echo auto)" \
      $teacher_opts
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  for student in $students; do
    run_dir=$exp_dir/distill/$student
    if [ -f "$run_dir/.done" ]; then
      log "Stage 2: $run_dir is done, skipping (delete $run_dir/.done to redo)"
      continue
    fi
    log "Stage 2: distill $student into $run_dir"
    train_list=$(echo $train_sets | sed 's/ /,/g')
    valid_list=$(echo $valid_sets | sed 's/ /,/g')
    # shellcheck disable=SC2086
    $python -m asr.bin.distill student="$student" teacher="$teacher_dir/teacher.pt" \
      trainer="$trainer" exp_dir="$run_dir" \
      $data_opts distill_data.root="$audio_root" "distill_data.train=[$train_list]" \
      "distill_data.valid=[$valid_list]" trainer.max_epochs="$distill_epochs" $distill_opts
    touch "$run_dir/.done"
  done
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  log "Stage 3: report on held-out audio ($heldout_sets) into $exp_dir/distill/report.md"
  student_args=()
  for student in $students; do
    student_args+=(--student "$student=$exp_dir/distill/$student")
  done
  # shellcheck disable=SC2086
  $python -m asr.bin.distill_report --teacher "$teacher_dir/teacher.pt" "${student_args[@]}" \
    --layout "$layout" --audio-dir "$audio_root" --sets $heldout_sets \
    --output "$exp_dir/distill/report.md"
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  for student in $students; do
    run_dir=$exp_dir/distill/$student
    log "Stage 4: export $run_dir/student.pt to $run_dir/student.onnx"
    $python -m asr_onnx.student --student "$run_dir/student.pt" --output "$run_dir/student.onnx" \
      --overwrite
  done
fi

log "Done: stages $stage to $stop_stage"
