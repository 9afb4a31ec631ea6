#!/usr/bin/env bash
# All GPU figures of bench/README.md in one call, for a machine with one CUDA GPU and torch/Lightning/h5py/timm
# installed but no evdet install and no registry (the device machine of this workplace; see README's "GPU figures").
# Usage, from the repository root:  bash bench/gpu.sh [OUT_DIR]      (JSON lines go to OUT_DIR/gpu.jsonl)
# Wheels missing on that machine (hydra-core, omegaconf, antlr4-python3-runtime, ...) are installed from .whl/ when it
# exists. Each benchmark runs with its own timeout, so one failure does not lose the others' figures.
set -u
cd "$(dirname "$0")/.."
out="${1:-${OUT:-bench/out}}"
mkdir -p "$out"
if [ -d .whl ] && ls .whl/* >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/* \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH="$PWD/packages/data/src:$PWD/packages/model/src:$PWD/packages/eval/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
jsonl="$out/gpu.jsonl"
: >"$jsonl"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"

bench() {  # bench LABEL TIMEOUT_S ARGS...: one JSON line tagged with LABEL, or an error line
  local label="$1" limit="$2"; shift 2
  local line
  if line=$(timeout "$limit" python3 -m evdet.model.bench "$@" 2>"$out/$label.err" | tail -n 1) && [ -n "$line" ]; then
    printf '{"label": "%s", "result": %s}\n' "$label" "$line" | tee -a "$jsonl"
  else
    printf '{"label": "%s", "error": "exit %s, see %s.err"}\n' "$label" "$?" "$label" | tee -a "$jsonl"
  fi
}

B="+experiment=plain_lstm_640x360_baseline"
# Training step, RVT-B, batch 6, sequence length 5, bf16 mixed (the issue's anchor config)
bench train_b6_bf16 300 train $B --device cuda --batch-size 6 --steps 30 --warmup 5 --precision bf16-mixed --profile
bench train_b6_bf16_cl 300 train $B --device cuda --batch-size 6 --steps 30 --warmup 5 --precision bf16-mixed --profile \
  hardware.channels_last=true
bench train_b6_fp16 300 train $B --device cuda --batch-size 6 --steps 30 --warmup 5 --precision 16-mixed --profile
bench train_b6_bf16_compile 420 train $B --device cuda --batch-size 6 --steps 30 --warmup 5 --precision bf16-mixed \
  --profile hardware.compile=backbone_stages
# Memory: patch size 2 with the size-aware loss at batch 6 (must fit a 24 GB card)
bench train_patch2_b6 300 train +experiment=patch2_sizeaware_100k --device cuda --batch-size 6 --steps 5 --warmup 2 \
  --precision bf16-mixed
bench train_patch2_b6_ckpt 300 train +experiment=patch2_sizeaware_100k --device cuda --batch-size 6 --steps 5 --warmup 2 \
  --precision bf16-mixed model.backbone.checkpoint_stages=true
# Streaming detect, batch 1, RVT-B, on the real recording
bench detect_b_eager 200 detect $B --device cuda --recording data/real/gen4.dat --windows 200 --warmup 20
bench detect_b_cudagraphs 400 detect $B --device cuda --recording data/real/gen4.dat --windows 200 --warmup 20 \
  --compile cuda_graphs
# Host-side figures on that machine's CPU (one core for repr)
bench repr_gen4 200 repr data/real/gen4.dat
# (the data-loader figure is a per-CPU-worker one, measured by bench/cpu.sh: shards need hdf5plugin, left out here)
bench eval_50k 300 eval --frames 2000 --detections 50000
echo "figures: $jsonl"
