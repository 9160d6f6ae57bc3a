#!/usr/bin/env bash
# Issue 18's figures for the README "Performance against the alternatives" block, in sequence,
# with the settings the README quotes. About 65 minutes on a quiet 2-core machine (3771 s on
# 2026-12-05; many times that on a shared one). Needs ../shared/data and, for the PyTorch sides, `pip install -e '.[bench]'`.
# Each script ends with a "== summary" block; this prints them again at the end.
#
#     bash benchmarks/issue18.sh 2>&1 | tee issue18.log
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
started=$SECONDS
run() {
    echo "### python $*" | tee -a "$log"
    python "$@" 2>&1 | grep -v -e '^I0000' -e '^WARNING: All log' -e 'cuda drivers' -e 'rebuild TensorFlow' -e '^To enable' | tee -a "$log"
    echo "(took $((SECONDS - started)) s so far)"
}
uptime
run benchmarks/limit.py --repeats 3 --epochs 3 --steps 150 --layouts default,whole-batch,one-core,replica-per-core,process-per-core
run benchmarks/frameworks.py --repeats 3 --epochs 3
run benchmarks/cnn_formulations.py --rounds 10 --steps 20
run benchmarks/bf16_cpu.py --repeats 2 --epochs 2
run benchmarks/onednn_cpu.py --repeats 2 --epochs 3
run benchmarks/micro_batches_cpu.py --repeats 2 --epochs 3
run benchmarks/multiworker.py --repeats 2 --epochs 3 --steps 100
run benchmarks/allreduce_table.py --steps 10
python benchmarks/gpu_precision.py 2>&1 | tail -3
# On a GPU machine with JAX and no TensorFlow: KERAS_BACKEND=jax python benchmarks/gpu_keras_jax.py --data DIR --repeats 2
uptime
echo; echo "======== all summaries ($((SECONDS - started)) s) ========"
awk '/^### /{print} /^== summary/{on=1} /^### /{on=0} on' "$log"
rm -f "$log"
