"""dlcli: classic deep-learning recipes in modern Keras 3, trained under any tf.distribute strategy."""

import os
import platform

__version__ = "0.1.0"

# TensorFlow's x86 wheels turn oneDNN's CPU kernels on by default only where the CPU has
# AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX. On AVX2-only CPUs (many AMD EPYC cloud VMs) its
# convolutions, matmuls and LSTM cells then run in Eigen, measured 1.14x (cnn) to 1.98x
# (transformer) slower there (benchmarks/onednn_cpu.py). Set on import, before TensorFlow loads,
# so it holds for the CLI and for code that imports dlcli first; an explicit
# TF_ENABLE_ONEDNN_OPTS (0 turns oneDNN off) wins. Not on ARM, where oneDNN means a different
# backend (Arm Compute Library) that was not measured.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
