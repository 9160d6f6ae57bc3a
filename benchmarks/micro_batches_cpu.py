"""One micro-batch per core (micro_batches=auto) against whole batches, in dlcli's loop on a CPU.

With `micro_batches` auto on a multi-core CPU, each op runs on one thread and each core works
through its own part of every batch; whole batches (`micro_batches=1`) split every op over all
cores instead. For each recipe (auto forced on, whether or not the recipe sets
`CPU_MICRO_BATCHES`), dlcli trains `--epochs` x `--steps` steps (constant learning rate, float32)
both ways, alternating in fresh processes `--repeats` times; the speed figure is the median
examples/s over the epochs after the first, the accuracy that of the short run on the test set.
A recipe gets `CPU_MICRO_BATCHES = True` where this wins and the update stays the same (no
BatchNormalization: its statistics would be per part).

    python benchmarks/micro_batches_cpu.py [--recipes cnn,lstm,speech,transformer] [--repeats 3] [--epochs 3] [--steps N]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import sides  # noqa: E402
from benchmarks.bf16_cpu import TEST  # noqa: E402
from benchmarks.frameworks import compare_settings, parse_recipe_options, recipe_parser  # noqa: E402
from benchmarks.onednn_cpu import cpu_line  # noqa: E402

# The recipe module is loaded once per process: the flag set here is the one DLCLI's snippet sees.
AUTO_ON = "import sys; from dlcli import registry; registry.load(sys.argv[1]).CPU_MICRO_BATCHES = True\n"


def main():
    options = parse_recipe_options(recipe_parser(__doc__.splitlines()[0]))
    print(f"CPU: {cpu_line()}", flush=True)

    def settings(recipe):
        common = {"precision": "float32", "test_examples": TEST[recipe]}
        return {"micro-batches": (AUTO_ON + sides.DLCLI, common), "whole batches": (sides.DLCLI, {**common, "micro_batches": 1})}

    summary = compare_settings(options, settings, "micro-batches", "whole batches")
    print(f"\n== summary (one micro-batch per core / whole batches, float32; {options.repeats} alternating repeats, medians; CPU: {cpu_line()}) ==")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
