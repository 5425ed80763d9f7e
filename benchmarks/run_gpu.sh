#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md, one part per call of a machine whose commands are limited to 10 minutes each.
#
#   bash benchmarks/run_gpu.sh inference      # EAT vs AST, batch 64, fp32/bf16, attention kernels, torch.compile
#   bash benchmarks/run_gpu.sh pretraining    # EAT-Base 12 and 32 clips x 16 clones, bf16: ours, plain, levers
#   bash benchmarks/run_gpu.sh compiled       # the same step under torch.compile, ours and plain, 32 clips
#   bash benchmarks/run_gpu.sh features       # feature extraction: CPU, torchaudio, GPU at batch 64 and 256
#
# Each writes its JSON and full log under $OUT (or ./gpu-results): the caller may only see the end of the output.
# Runs from a checkout without installing it (the scripts put the repository on sys.path); PYTHON picks the
# interpreter (default python3); RUN_GPU_EXTRA is appended to every command (`--smoke` checks this script on a CPU).
set -uo pipefail
case "${1:-}" in
    inference | pretraining | compiled | features) ;;
    *)
        echo "usage: bash benchmarks/run_gpu.sh inference|pretraining|compiled|features" >&2
        exit 2
        ;;
esac
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

run() {
    local name=$1 limit=$2
    shift 2
    echo "== $name: $* (limit ${limit}s)"
    # A part stopped at its limit still leaves the rows it finished: the scripts rewrite their JSON as they go.
    timeout --signal=INT --kill-after=20 "$limit" "$python" "$@" ${RUN_GPU_EXTRA:-} --json "$out/$name.json" 2>&1 | tee "$out/$name.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status"
    return "$status"
}

"$python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())" | tee "$out/versions.txt"

case "$1" in
    inference)
        run inference 540 benchmarks/bench_inference.py --budget-s 480
        ;;
    pretraining)
        run pretraining 540 benchmarks/bench_pretraining_step.py --cases base --batch 12,32 --repeats 5 \
            --variants ours,plain,ours-fused-adamw,ours-cudnn-benchmark,ours-unfold-decoder,ours-unfold-decoder-recompute
        ;;
    compiled)
        run pretraining_compiled 540 benchmarks/bench_pretraining_step.py --cases base --batch 32 --repeats 5 \
            --variants ours,ours-compiled,plain-compiled --skip-decoder-variants
        ;;
    features)
        run feature_extraction 300 benchmarks/bench_feature_extraction.py
        ;;
esac
