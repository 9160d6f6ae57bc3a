"""TensorFlow's oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS) on and off, in dlcli's loop: speed and short-run accuracy.

TensorFlow's Linux x86 wheels turn oneDNN's kernels on by default only on CPUs with
neural-network instructions (AVX512_VNNI, AVX512_BF16, AVX_VNNI, AMX); on others, an AVX2-only
AMD EPYC for one, its convolutions run as Eigen's im2col. For each recipe, dlcli trains
`--epochs` x `--steps` steps (constant learning rate) with TF_ENABLE_ONEDNN_OPTS=0 and =1,
alternating in fresh processes `--repeats` times; the speed figure is the median examples/s over
the epochs after the first, the accuracy that of the short run on (the first `TEST` examples
of) the test set.

    python benchmarks/onednn_cpu.py [--recipes cnn,lstm,speech,transformer] [--repeats 3] [--epochs 3] [--steps N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import sides  # noqa: E402
from benchmarks.bf16_cpu import TEST  # noqa: E402
from benchmarks.frameworks import compare_settings, parse_recipe_options, recipe_parser  # noqa: E402

# The variable must be set before TensorFlow loads: the first line of each side's fresh process.
SETTINGS = {"oneDNN off": "0", "oneDNN on": "1"}


def cpu_line():
    """The CPU's model name and its AVX-512 / AMX / VNNI flags, from /proc/cpuinfo."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wide = sorted({f for f in flags if f.startswith(("avx512", "amx", "avx_vnni"))})
    return f"{model}; {', '.join(wide) or 'no AVX-512, AMX or VNNI (AVX2 only)' if 'avx2' in flags else 'no AVX2'}"


def main():
    options = parse_recipe_options(recipe_parser(__doc__.splitlines()[0]))
    print(f"CPU: {cpu_line()}", flush=True)

    def settings(recipe):
        return {
            label: (f"import os; os.environ['TF_ENABLE_ONEDNN_OPTS'] = '{value}'\n" + sides.DLCLI, {"precision": "float32", "test_examples": TEST[recipe]})
            for label, value in SETTINGS.items()
        }

    summary = compare_settings(options, settings, "oneDNN on", "oneDNN off")
    print(f"\n== summary (oneDNN on / off, float32; {options.repeats} alternating repeats, medians; CPU: {cpu_line()}) ==")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
