"""dlcli against what users would pick instead: Keras `fit` with tf.data, PyTorch CPU eager,
and (transformer) the keras-io example as published.

For each recipe, every side trains the same data for `--epochs` x `--steps` steps in a fresh
process, the sides alternating `--repeats` times (benchmarks/sides.py holds them). Every recipe
also has "Keras fit + tf.data + oneDNN": the Keras side with TF_ENABLE_ONEDNN_OPTS=1, which dlcli
sets and TensorFlow leaves off on AVX2-only CPUs (on CPUs with AVX-512 VNNI/BF16 or AMX the two
Keras sides are the same):
  cnn          MNIST, batch 128, Adam: dlcli | Keras fit + tf.data | PyTorch eager
  lstm         IMDB, batch 64, 400 words, Adam: dlcli | Keras fit + tf.data | PyTorch nn.LSTM (packed)
  speech       FSDD, batch 32, Adam: dlcli | Keras fit + tf.data
  transformer  IMDB, batch 64, 320 words: dlcli | Keras fit + tf.data (same model) | keras-io's
               example as published (its smaller model: 200 words, embed 32, batch 32)
A side's figure is its median examples/s over the epochs after the first; ratios are medians
of the per-repeat ratios. PyTorch sides are skipped, with the reason, without PyTorch.

    python benchmarks/frameworks.py [--recipes cnn,lstm,speech,transformer] [--repeats 3] [--epochs 3] [--steps N] [--precision float32]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import sides  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# recipe: (data folder, default steps per epoch, batch, seconds per step on a quiet 2-core machine)
RECIPES = {
    "cnn": ("mnist", 150, 128, 0.03),
    "lstm": ("imdb", 30, 64, 0.4),
    "speech": ("fsdd", 40, 32, 0.15),
    "transformer": ("imdb", 30, 64, 0.3),
}


def recipes_of(option):
    """The recipes a comma-separated --recipes names; an unknown one ends the benchmark in one line."""
    recipes = [r for r in option.split(",") if r]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    return recipes


def recipe_parser(description, repeats=3, epochs=3):
    """The options every per-recipe benchmark takes: --recipes, --repeats, --epochs, --steps."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--recipes", default="cnn,lstm,speech,transformer")
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--steps", type=int, default=0, help="steps per epoch for every recipe (0: each recipe's default)")
    return parser


def parse_recipe_options(parser):
    """The parsed options, with `recipes` checked and split (an unknown one ends the benchmark in one line)."""
    options = parser.parse_args()
    options.recipes = recipes_of(options.recipes)
    return options


def compare_settings(options, settings_of, base, other, steps=None):
    """dlcli's loop under two settings for each recipe (`settings_of(recipe)`: {label: (code,
    config overrides)}, as sides.compare_dlcli_settings takes them), each recipe's runs printed;
    returns the summary lines, `base` against `other`. `steps`: {recipe: steps per epoch} where
    not the recipe's default, unless --steps says."""
    summary = []
    for recipe in options.recipes:
        folder, default_steps, batch, _ = RECIPES[recipe]
        n = options.steps or (steps or {}).get(recipe, default_steps)
        print(f"\n{recipe}: {options.epochs} epochs x {n} steps of {batch}, {options.repeats} alternating repeats", flush=True)
        figures, results = sides.compare_dlcli_settings(recipe, DATA / folder, options.epochs, n, options.repeats, settings_of(recipe))
        summary.append(sides.settings_line(recipe, figures, results, base, other))
    return summary


def contestants(recipe):
    chosen = {"dlcli": sides.DLCLI, "Keras fit + tf.data": sides.KERAS_TFDATA, "Keras fit + tf.data + oneDNN": sides.KERAS_TFDATA_ONEDNN}
    missing = sides.torch_missing()
    if recipe in ("cnn", "lstm"):
        if missing:
            print(f"{recipe}: PyTorch side skipped: {missing}")
        else:
            chosen["PyTorch eager"] = sides.TORCH_CNN if recipe == "cnn" else sides.TORCH_LSTM
    if recipe == "transformer":
        chosen["keras-io example"] = sides.KERAS_IO_TRANSFORMER
    return chosen


def main():
    parser = recipe_parser(__doc__.splitlines()[0])
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"],
                        help="every side's compute precision (PyTorch: torch.autocast to bf16)")
    options = parse_recipe_options(parser)
    recipes = options.recipes
    estimate = sum(
        options.repeats * (2 if r == "speech" else 3) * (30 + options.epochs * (options.steps or RECIPES[r][1]) * RECIPES[r][3])
        for r in recipes
    )
    print(f"about {estimate / 60:.0f} min on a quiet 2-core machine", flush=True)
    summary = []
    for recipe in recipes:
        folder, steps, batch, _ = RECIPES[recipe]
        if not (DATA / folder).is_dir():
            raise SystemExit(f"{DATA / folder} not found: the benchmark needs ../shared/data beside the checkout.")
        steps = options.steps or steps
        print(f"\n{recipe}: {options.epochs} epochs x {steps} steps of {batch}, {options.repeats} alternating repeats", flush=True)
        chosen = contestants(recipe)
        figures, results = sides.alternate(chosen, (recipe, DATA / folder, options.epochs, steps, json.dumps({"precision": options.precision})), options.repeats)
        medians = {label: statistics.median(f) for label, f in figures.items()}
        for label in chosen:
            if label == "dlcli":
                continue
            ratio, low, high = sides.ratio_line(figures, "dlcli", label)
            summary.append(f"{recipe:>11}: dlcli {medians['dlcli']:.0f} vs {label} {medians[label]:.0f} examples/s: "
                           f"{ratio:.2f}x (per-repeat {low:.2f}-{high:.2f})")
        if "PyTorch eager" in results:
            summary.append(f"{'':>11}  (PyTorch ran with {results['PyTorch eager'][0]['threads']} threads)")
    print(f"\n== summary ({options.repeats} alternating repeats, medians, precision {options.precision}; dlcli / other) ==")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
