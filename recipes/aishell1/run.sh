#!/usr/bin/env bash
# AISHELL-1 recipe: data preparation, tokenizer and CMVN, training, checkpoint averaging,
# decoding in four modes, CER scoring, ONNX export with int8, and edge decoding.
#
# Usage (from anywhere; the recipe works in its own directory):
#   bash recipes/aishell1/run.sh --mini true                  # embedded synthetic corpus, CPU
#   bash recipes/aishell1/run.sh --corpus_dir /data/aishell --model brst_adm --trainer gpu
#   bash recipes/aishell1/run.sh --stage 3 --stop_stage 3 --model brst_adm --trainer ddp \
#       --train_opts "trainer.devices=4"                      # 4 GPUs on this node
#
# Stages:
#   0  get the archives: download AISHELL-1 (checksums verified) or build the mini corpus
#   1  extract and prepare lhotse manifests, validate audio and transcripts
#   2  train the SentencePiece character tokenizer, export tokens.txt, compute global CMVN
#   3  train (re-running resumes from the newest checkpoint)
#   4  average the best --avg_num checkpoints
#   5  decode the test set with CTC greedy search, CTC prefix beam search, attention beam
#      search and attention rescoring
#   6  score CER and write the results table
#   7  export to ONNX (sherpa-onnx wenet_ctc format, with decoder.onnx for rescoring) and
#      quantize to int8
#   8  decode the test set with the torch-free runtime (float and int8, CTC greedy search and
#      attention rescoring) and with sherpa-onnx, and tabulate CER, model size and RTF
# A finished stage leaves a marker under the data or experiment directory and is skipped when
# the recipe runs again; delete the marker (or the directory) to redo it. Stage 6 only
# rescores, so it always runs and prints the CER table again. The decoding
# directory's name carries the beam size and CTC weight, so new values decode again.
# Every option below can be given on the command line, e.g. --avg_num 5 or --beam-size 5.

set -euo pipefail

# Options (each one can be set on the command line: --name value)
stage=0
stop_stage=8
mini=false                       # true: use the embedded synthetic corpus instead of AISHELL-1
mini_scale=full                  # full (the demo) or tiny (a few utterances, for tests)
corpus_dir=download              # directory that contains data_aishell.tgz and resource_aishell.tgz
data_url=https://www.openslr.org/resources/33
model=""                         # a config name under conf/model/; default brst_adm (mini with --mini)
trainer=cpu                      # cpu, gpu or ddp (conf/trainer/)
experiment=""                    # conf/experiment/ file; --mini true defaults to "mini"
train_opts=""                    # extra Hydra overrides for stage 3
data_dir=""                      # manifests and tokenizer; default: data (data_mini with --mini)
exp_dir=""                       # default: exp/<model> (exp/<model>_mini with --mini)
max_duration=20                  # seconds; longer utterances are filtered out in stage 1
avg_mode=best                    # best (lowest validation loss) or last (most recent epochs)
avg_num=""                       # checkpoints to average; default 10 (5 with --mini)
decode_modes="ctc_greedy_search ctc_prefix_beam_search attention attention_rescoring"
beam_size=10
ctc_weight=0.5
decode_set=test
quantize=mixed                   # int8 recipe of stage 7: mixed, static, dynamic (see asr_onnx.cli)
python=${PYTHON:-python}

recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$recipe_dir/../.." && pwd)
# shellcheck source=../../tools/parse_options.sh
. "$repo_dir/tools/parse_options.sh"
cd "$recipe_dir"

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%d %H:%M:%S') ($fname:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}

if [ "$mini" = true ]; then
  data=${data_dir:-data_mini}
  data_config=mini_aishell
  [ "$corpus_dir" = download ] && corpus_dir=download_mini
  [ -z "$experiment" ] && experiment=mini
  [ -z "$model" ] && model=mini
  [ -z "$avg_num" ] && avg_num=5
else
  data=${data_dir:-data}
  data_config=aishell
  [ -z "$model" ] && model=brst_adm
  [ -z "$avg_num" ] && avg_num=10
fi
manifests=$data/manifests
lang=$data/lang_char
[ -z "$exp_dir" ] && exp_dir=exp/$model$([ "$mini" = true ] && echo _mini || true)
mkdir -p "$manifests" "$lang" "$exp_dir"

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  if [ "$mini" = true ]; then
    log "Stage 0: build the embedded mini corpus in $corpus_dir"
    $python -m asr.bin.make_mini_aishell --out-dir "$corpus_dir" --scale "$mini_scale"
  else
    if [ -f "$corpus_dir/.done.download" ]; then
      log "Stage 0: archives in $corpus_dir are verified, skipping (delete $corpus_dir/.done.download to check again)"
    else
      log "Stage 0: download AISHELL-1 to $corpus_dir"
      $python -m asr.bin.prepare download --corpus-dir "$corpus_dir" --base-url "$data_url"
      touch "$corpus_dir/.done.download"
    fi
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  if [ -f "$manifests/.done.prepare" ]; then
    log "Stage 1: manifests in $manifests are done, skipping (delete $manifests/.done.prepare to redo)"
  else
    log "Stage 1: extract, prepare and validate manifests in $manifests"
    $python -m asr.bin.prepare aishell --corpus-dir "$corpus_dir" --output-dir "$manifests" \
      --max-duration "$max_duration"
    touch "$manifests/.done.prepare"
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  if [ -f "$lang/.done" ]; then
    log "Stage 2: tokenizer and CMVN are done, skipping (delete $lang/.done to redo)"
  else
    log "Stage 2: tokenizer in $lang, global CMVN in $manifests/cmvn.json"
    $python -m asr.bin.lang --manifest-dir "$manifests" --lang-dir "$lang"
    $python -m asr.bin.compute_cmvn --cuts "$manifests/cuts_train.jsonl.gz" \
      --output "$manifests/cmvn.json"
    touch "$lang/.done"
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  if [ -f "$exp_dir/.done.train" ]; then
    log "Stage 3: training in $exp_dir is done, skipping (delete $exp_dir/.done.train to train more, e.g. with new --train_opts)"
  else
    log "Stage 3: train $model in $exp_dir"
    # shellcheck disable=SC2086
    $python -m asr.bin.train model="$model" data="$data_config" trainer="$trainer" \
      data.manifest_dir="$manifests" data.loader.tokenizer="$lang/tokenizer.model" \
      exp_dir="$exp_dir" ${experiment:+experiment=$experiment} $train_opts
    touch "$exp_dir/.done.train"
  fi
fi

avg_model=$exp_dir/avg_${avg_mode}${avg_num}.pt
if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  if [ -f "$avg_model" ]; then
    log "Stage 4: $avg_model exists, skipping (delete it to average again)"
  else
    log "Stage 4: average the $avg_mode $avg_num checkpoints into $avg_model"
    $python -m asr.bin.average --ckpt-dir "$exp_dir/checkpoints" --mode "$avg_mode" \
      --num "$avg_num" --output "$avg_model"
  fi
fi

decode_dir=$exp_dir/decode_${decode_set}_$(basename "$avg_model" .pt)_beam${beam_size}_ctc${ctc_weight}
if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  if [ -f "$decode_dir/.done" ]; then
    log "Stage 5: decoding in $decode_dir is done, skipping (delete $decode_dir/.done to redo)"
  else
    log "Stage 5: decode $decode_set into $decode_dir"
    # shellcheck disable=SC2086
    $python -m asr.bin.decode --model "$avg_model" --cuts "$manifests/cuts_${decode_set}.jsonl.gz" \
      --tokenizer "$lang/tokenizer.model" --out-dir "$decode_dir" --modes $decode_modes \
      --beam-size "$beam_size" --ctc-weight "$ctc_weight"
    touch "$decode_dir/.done"
  fi
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: score CER"
  for mode in $decode_modes; do
    $python -m asr.bin.score --ref "$decode_dir/ref.txt" --hyp "$decode_dir/$mode/text" \
      --details "$decode_dir/$mode/cer_details.txt" > "$decode_dir/$mode/cer.txt"
  done
  # shellcheck disable=SC2086
  $python -m asr.bin.results_table --decode-dir "$decode_dir" --modes $decode_modes \
    | tee "$exp_dir/results_${decode_set}.md"
fi

onnx_dir=$exp_dir/onnx_$(basename "$avg_model" .pt)
if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  if [ -f "$onnx_dir/.done" ]; then
    log "Stage 7: ONNX models in $onnx_dir are done, skipping (delete $onnx_dir/.done to redo)"
  else
    log "Stage 7: export $avg_model to $onnx_dir and quantize to int8"
    $python -m asr_onnx.cli --model "$avg_model" --tokenizer "$lang/tokenizer.model" \
      --out-dir "$onnx_dir" --quantize "$quantize" --overwrite \
      --calibration-cuts "$manifests/cuts_train.jsonl.gz" --num-calibration-cuts 100
    touch "$onnx_dir/.done"
  fi
fi

edge_dir=$exp_dir/onnx_decode_${decode_set}_$(basename "$avg_model" .pt)
if [ $stage -le 8 ] && [ $stop_stage -ge 8 ] && [ -f "$edge_dir/.done" ]; then
  log "Stage 8: edge decoding in $edge_dir is done, skipping (delete $edge_dir/.done to redo)"
  cat "$exp_dir/results_onnx_${decode_set}.md"
elif [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: decode $decode_set with the ONNX runtime and sherpa-onnx into $edge_dir"
  kaldi_dir=$edge_dir/kaldi_$decode_set
  if [ ! -f "$kaldi_dir/wav.scp" ]; then
    $python -m asr.bin.prepare export-kaldi --cuts "$manifests/cuts_${decode_set}.jsonl.gz" \
      --data-dir "$kaldi_dir" --skip-unsupported
  fi
  for precision in float int8; do
    int8_flag=$([ "$precision" = int8 ] && echo --int8 || true)
    for mode in ctc_greedy_search attention_rescoring; do
      run_dir=$edge_dir/edge_${precision}_$mode
      mkdir -p "$run_dir"
      # shellcheck disable=SC2086
      $python -m asr_edge.cli --model-dir "$onnx_dir" --wav-scp "$kaldi_dir/wav.scp" \
        --output "$run_dir/text" --decoding "$mode" --beam-size "$beam_size" \
        --ctc-weight "$ctc_weight" --num-threads 1 --rtf $int8_flag > "$run_dir/log" 2>&1 \
        || { cat "$run_dir/log"; exit 1; }
    done
    run_dir=$edge_dir/sherpa_${precision}_ctc_greedy_search
    mkdir -p "$run_dir"
    # shellcheck disable=SC2086
    $python -m asr_onnx.sherpa_decode --model-dir "$onnx_dir" --wav-scp "$kaldi_dir/wav.scp" \
      --output "$run_dir/text" --num-threads 1 $int8_flag > "$run_dir/log" 2>&1 \
      || { cat "$run_dir/log"; exit 1; }
  done
  $python -m asr_onnx.report --ref "$kaldi_dir/text" --model-dir "$onnx_dir" --decode-dir "$edge_dir" \
    | tee "$exp_dir/results_onnx_${decode_set}.md"
  touch "$edge_dir/.done"
fi

log "Done: stages $stage to $stop_stage"
