#!/usr/bin/env bash
# The CPU figures of bench/README.md in one run (the machine should be otherwise idle; ~10 minutes on 2 cores).
# Usage, from the repository root after `make venv`:  bash bench/cpu.sh [OUT_DIR]   (JSON lines: OUT_DIR/cpu.jsonl)
set -u
cd "$(dirname "$0")/.."
out="${1:-bench/out}"
mkdir -p "$out"
jsonl="$out/cpu.jsonl"
: >"$jsonl"
py=".venv/bin/python"

bench() {  # bench LABEL ARGS...: one JSON line tagged with LABEL, or an error line
  local label="$1"; shift
  local line
  if line=$("$py" -m evdet.model.bench "$@" 2>"$out/$label.err" | tail -n 1) && [ -n "$line" ]; then
    printf '{"label": "%s", "result": %s}\n' "$label" "$line" | tee -a "$jsonl"
  else
    printf '{"label": "%s", "error": "see %s.err"}\n' "$label" "$label" | tee -a "$jsonl"
  fi
}

B="+experiment=plain_lstm_640x360_baseline"
bench train_b1_fp32 train $B --device cpu --batch-size 1 --steps 5 --warmup 2 --profile
bench train_b1_fp32_cl train $B --device cpu --batch-size 1 --steps 5 --warmup 2 hardware.channels_last=true
bench train_b1_fp32_compile train $B --device cpu --batch-size 1 --steps 5 --warmup 2 hardware.compile=backbone_stages
bench train_local train $B profile=local --device cpu --steps 10 --warmup 3
bench detect_tiny detect model=rvt_tiny --device cpu --recording data/real/gen4.dat --windows 100 --warmup 10
bench detect_tiny_fold_cl detect model=rvt_tiny --device cpu --recording data/real/gen4.dat --windows 100 --warmup 10 \
  --fold-batch-norm --channels-last
bench detect_tiny_onnxruntime detect model=rvt_tiny --device cpu --recording data/real/gen4.dat --windows 100 \
  --warmup 10 --engine onnxruntime
bench repr_gen4 repr data/real/gen4.dat
bench loader_random_1 loader --synthetic --workers 1
bench loader_random_2 loader --synthetic --workers 2
bench loader_stream_1 loader --synthetic --workers 1 --sampling stream
bench eval_50k eval --frames 2000 --detections 50000
echo "figures: $jsonl"
