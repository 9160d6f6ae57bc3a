"""`--precision mixed_bfloat16` against float32 on this CPU: speed and the accuracy of a short run.

For each recipe, dlcli trains `--epochs` x `--steps` steps (constant learning rate) in float32
and in mixed_bfloat16, alternating in fresh processes `--repeats` times; the speed figure is the
median examples/s over the epochs after the first, the accuracy that of the short run on (the
first `TEST` examples of) the test set. Also prints whether the CPU reports the instructions
that make bf16 fast (AVX512_BF16, AMX-BF16) in /proc/cpuinfo: without them, oneDNN emulates
bf16 in float32 and converts in between.

    python benchmarks/bf16_cpu.py [--recipes cnn,lstm,speech,transformer] [--repeats 2] [--epochs 2] [--steps N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import sides  # noqa: E402
from benchmarks.frameworks import compare_settings, parse_recipe_options, recipe_parser  # noqa: E402
from dlcli.training.strategy import cpu_bf16_flags  # noqa: E402

TEST = {"cnn": 10000, "lstm": 2000, "speech": 0, "transformer": 2000}  # 0: the whole test set
# Steps per epoch: few, because bf16 without AVX512_BF16 runs an order of magnitude slower.
STEPS = {"cnn": 40, "lstm": 8, "speech": 10, "transformer": 8}


def main():
    options = parse_recipe_options(recipe_parser(__doc__.splitlines()[0], repeats=2, epochs=2))
    flags = cpu_bf16_flags()
    print(f"CPU bf16 instructions in /proc/cpuinfo: {', '.join(flags) or 'none (no avx512_bf16, no amx_bf16)'}")
    print("a few minutes per recipe without bf16 instructions (bf16 ran 13x slower than float32 here)", flush=True)

    def settings(recipe):
        return {p: (sides.DLCLI, {"precision": p, "test_examples": TEST[recipe]}) for p in ("float32", "mixed_bfloat16")}

    summary = compare_settings(options, settings, "mixed_bfloat16", "float32", steps=STEPS)
    print(f"\n== summary (bf16 / float32; {options.repeats} alternating repeats, medians; CPU bf16 flags: {', '.join(flags) or 'none'}) ==")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
