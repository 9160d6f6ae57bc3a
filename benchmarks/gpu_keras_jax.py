"""On a GPU without TensorFlow: the cnn recipe's model, loss, metric, optimizer and schedule
trained by Keras 3 `fit` on the JAX backend (XLA-compiled steps) in float32, mixed_bfloat16 and
mixed_float16, with MNIST test accuracy after every epoch and the training time to 0.992; and
the same model in an idiomatic PyTorch eager loop on the same GPU, for examples/s.

Why this exists beside gpu_precision.py: that one measures dlcli's own loop, which needs
TensorFlow's CUDA build. The GPU machine lent to this project has JAX and PyTorch but no
TensorFlow, and TensorFlow's wheel (546 MiB) with its CUDA 12 libraries cannot be carried there
(64 MiB a call; the machine's CUDA is 13). These are the recipe's figures on that GPU through
Keras' other backend, labelled as such: not dlcli's loop, and no tf.distribute.

Each configuration runs in its own process; examples/s is the median over the epochs after the
first (which pays for XLA compilation); the time to 0.992 counts every epoch's training,
compilation included, and no evaluation.

    KERAS_BACKEND=jax python benchmarks/gpu_keras_jax.py --data ../shared/data/mnist [--epochs 5] [--repeats 2]

On the lent H200 (Python 3.12, JAX and PyTorch with CUDA 13, no Keras): carry the wheels of
keras 3.15.1, namex 0.1.0 and optree 0.20.0 (cp312) and a copy of the MNIST folder in folders
the device tool's `carry` names; about 2 minutes a repeat is expected there.
"""

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.snippet import run_snippet  # noqa: E402

KERAS_JAX = r"""
import json, os, sys, time
os.environ["KERAS_BACKEND"] = "jax"
import dlcli.core.lazy
dlcli.lazy._quiet_done = True  # no TensorFlow to import first: dlcli's lazy `keras` is plain Keras on JAX
import jax, keras, numpy as np
from dlcli.training import loop
from recipes import cnn

data, overrides = sys.argv[1], json.loads(sys.argv[2])
config = cnn.Config(data=data, **overrides)
splits = cnn.load_data(config)  # uint8 images and labels, dlcli's own reader and validation split
(x, y), (x_test, y_test) = splits.train, splits.test
keras.mixed_precision.set_global_policy(config.precision)
keras.utils.set_random_seed(config.seed)
model = cnn.build_model(config, splits)
per_example = cnn.loss(config)
steps = -(-len(y) // config.batch_size)
model.compile(optimizer=steps.make_optimizer(cnn, config, config.epochs * steps),  # Adam, cosine decay; loss scaling for float16
              loss=lambda t, p: per_example(t, p), metrics=cnn.metrics(config))
seconds, speeds, accuracy = [], [], []
for epoch in range(config.epochs):
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=config.batch_size, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
    float(history.history["loss"][-1])  # the epoch's last step has finished
    seconds.append(time.perf_counter() - start)
    speeds.append(len(y) / seconds[-1])
    accuracy.append(float(model.evaluate(x_test, y_test, batch_size=1024, verbose=0, return_dict=True)["accuracy"]))
print(json.dumps({"speeds": speeds, "seconds": seconds, "accuracy": accuracy, "device": str(jax.devices()[0].device_kind)}))
"""

# The cnn's `source` model in PyTorch eager on the GPU, batches sliced from tensors already on
# the device (no DataLoader): the strongest plain-PyTorch opponent, as benchmarks/sides.py on CPU.
TORCH_CUDA = r"""
import json, sys, time
import numpy as np, torch
from torch import nn
from recipes import cnn
from dlcli.training import steps

data, overrides = sys.argv[1], json.loads(sys.argv[2])
config = cnn.Config(data=data, **overrides)
device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: only to try the snippet
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
x, y = cnn.load_data(config).train
x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)  # uint8 NCHW
y = torch.from_numpy(y.astype(np.int64)).to(device)
torch.manual_seed(config.seed)
model = nn.Sequential(
    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(64, 10),
).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
loss_fn = nn.CrossEntropyLoss()
batch, speeds = config.batch_size, []
for epoch in range(config.epochs):
    order = torch.randperm(len(x), device=device)
    sync()
    start = time.perf_counter()
    for step in range(0, len(x), batch):
        index = order[step:step + batch]
        xb, yb = x[index].float().div_(255), y[index]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=config.precision == "mixed_bfloat16"):
            loss = loss_fn(model(xb).float(), yb)
        loss.backward()
        optimizer.step()
    sync()
    speeds.append(len(x) / (time.perf_counter() - start))
print(json.dumps({"speeds": speeds, "device": torch.cuda.get_device_name() if device == "cuda" else "CPU"}))
"""

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a folder of MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=5, help="the recipe's default: 0.992 is reached in epoch 4 on CPU")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-torch", action="store_true")
    options = parser.parse_args()
    sides = [("Keras fit on JAX", KERAS_JAX, p) for p in PRECISIONS]
    if not options.no_torch:
        sides += [("PyTorch eager", TORCH_CUDA, p) for p in PRECISIONS[:2]]
    speeds = {}
    for repeat in range(options.repeats):  # the sides alternate within each repeat
        for label, code, precision in sides:
            try:
                result = run_snippet(code, options.data, json.dumps({"epochs": options.epochs, "precision": precision}))
            except SystemExit as failure:  # one side's failure (a backend version, say) leaves the others' figures
                print(f"{label:>16} {precision:>14}: failed: {str(failure).strip().splitlines()[-1]}", flush=True)
                continue
            speed = statistics.median(result["speeds"][1:])
            speeds.setdefault((label, precision), []).append(speed)
            line = f"{label:>16} {precision:>14}: {speed:9.0f} examples/s on {result['device']}"
            if "accuracy" in result:  # as gpu_precision.py: training seconds up to the first epoch at 0.992
                elapsed = itertools.accumulate(result["seconds"])
                reached = next((s for s, a in zip(elapsed, result["accuracy"]) if a >= 0.992), None)
                line += (f"; MNIST test accuracy by epoch {' '.join(f'{a:.4f}' for a in result['accuracy'])}; 0.992 after "
                         + (f"{reached:.1f} s of training" if reached else "never"))
            print(line, flush=True)
    medians = {key: statistics.median(values) for key, values in speeds.items()}
    base = medians.get(("Keras fit on JAX", "float32"))
    for (label, precision), speed in medians.items():
        print(f"median {label} {precision}: {speed:.0f} examples/s" + (f", {speed / base:.2f}x Keras-on-JAX float32" if base else ""))


if __name__ == "__main__":
    main()
