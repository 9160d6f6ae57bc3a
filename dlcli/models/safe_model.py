"""A look inside a .keras file before Keras builds it: a .keras is a zip whose config.json
declares every layer, and Keras allocates what it declares. A few-KB file declaring
Dense(10**9) would take gigabytes before any weight is read, so the declared parameter count is
estimated from config.json (each layer's size settings and the input shape Keras recorded for
it) and refused above a budget, in one line."""

import json
import math
import zipfile

from dlcli.core.errors import DlcliError

MAX_PARAMETERS = 1 << 28  # 268M weights, 1 GiB as float32: far above any dlcli recipe (~3M)
MAX_CONFIG_BYTES = 64 << 20  # config.json itself, uncompressed


def check_keras_file(path):
    """Refuses (DlcliError) a .keras file whose config declares more than MAX_PARAMETERS weights
    or whose config.json is too big; a file that is no zip is left to Keras' own error."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise DlcliError(f"{path}: its config.json is {info.file_size:,} bytes uncompressed, over the budget of {MAX_CONFIG_BYTES:,}.")
            config = json.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return  # not a .keras archive: keras.saving.load_model says so in its own words
    widest = largest_shape(config)
    if widest > MAX_PARAMETERS:
        raise DlcliError(f"{path} declares a tensor of {widest:,} values per example, over the budget of {MAX_PARAMETERS:,}: not built.")
    declared = declared_parameters(config)
    if declared > MAX_PARAMETERS:
        raise DlcliError(
            f"{path} declares about {declared:,} weights, over the budget of {MAX_PARAMETERS:,}: "
            "not built (a model this size is not one dlcli trained, or its config.json was changed)."
        )


def declared_parameters(node):
    """An estimate of the weights every layer in a Keras config declares (nested models too)."""
    total = 0
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str) and isinstance(node.get("config"), dict):
            total += layer_parameters(node["class_name"], node["config"], node.get("build_config"))
        for value in node.values():
            total += declared_parameters(value)
    elif isinstance(node, list):
        total += sum(declared_parameters(value) for value in node)
    return total


def largest_shape(node):
    """The most values per example of any shape the config declares (inputs, recorded shapes)."""
    best = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("batch_shape", "input_shape", "shape") and isinstance(value, list) and value and not isinstance(value[0], list):
                best = max(best, math.prod(max(1, size(d)) for d in value))
            else:
                best = max(best, largest_shape(value))
    elif isinstance(node, list):
        best = max((largest_shape(value) for value in node), default=0)
    return best


def size(value):
    """A non-negative int from a config value (anything else counts as 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def input_width(build_config):
    """The last dimension of the input shape Keras recorded for a layer (1 if unknown)."""
    shape = build_config.get("input_shape") if isinstance(build_config, dict) else None
    while isinstance(shape, list) and shape and isinstance(shape[0], list):  # several inputs: the first
        shape = shape[0]
    return max(1, size(shape[-1])) if isinstance(shape, list) and shape else 1


def layer_parameters(class_name, config, build_config):
    width = input_width(build_config)
    if size(config.get("input_dim")) and size(config.get("output_dim")):  # Embedding
        return size(config["input_dim"]) * size(config["output_dim"])
    units = size(config.get("units")) or size(config.get("filters"))
    if "recurrent_initializer" in config and units:  # LSTM, GRU, SimpleRNN: up to 4 gates
        return 4 * units * (width + units + 1)
    if size(config.get("num_heads")) and size(config.get("key_dim")):  # MultiHeadAttention
        return 4 * size(config["num_heads"]) * size(config["key_dim"]) * (width + 1)
    if units:  # Dense, ConvND: a kernel of the input width (times the window) by units
        kernel = config.get("kernel_size")
        window = math.prod(size(k) for k in kernel) if isinstance(kernel, list) and kernel else max(1, size(kernel))
        return (width * window + 1) * units
    return 0


def load_keras(path, unsafe=False):
    """Loads a .keras model with Keras safe_mode on (no arbitrary code) unless `unsafe`."""
    from dlcli.core.lazy import keras
    from dlcli.models import layers  # noqa: F401  registers dlcli's own layers (TableFeatures)

    check_keras_file(path)  # a giant declared layer is refused before Keras builds it
    try:
        return keras.saving.load_model(path, safe_mode=not unsafe)
    except ValueError as e:
        if "safe_mode" in str(e) or "arbitrary code" in str(e):
            raise DlcliError(
                f"{path} holds code (a Lambda layer) that Keras' safe mode will not run; "
                "pass --unsafe only if you trust where the file came from."
            ) from None
        raise DlcliError(f"cannot load {path}: {str(e).strip().splitlines()[0][:200]}") from None
    except Exception as e:  # a truncated zip, a missing layer class...
        raise DlcliError(f"cannot load {path}: {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}") from None
