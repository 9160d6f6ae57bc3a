"""The data layer: what every recipe's data becomes (`splits`), where it comes from (`loading`,
the table of local formats in `sources`, tensorflow-datasets in `sources.tfds`), and the
decoding shared by training and predict (`audio`, `text`).

The split types and the loaders are named here too, as `data.Files`, `data.load_local`, ...,
which is how recipes and the loop use them. Sources import `dlcli.data.splits` directly.
"""

from dlcli.data.loading import IMAGE_DATASETS, check_dataset, load_digits, load_images, load_local
from dlcli.data.splits import (
    NOT_UTF8,
    Dataset,
    Files,
    Splits,
    Table,
    arrays,
    count,
    holdout,
    input_shape,
    inputs,
    is_classes,
    naming_undecodable_files,
    printable,
    stratified_split,
    take,
    targets,
    utf8_name,
)

__all__ = [
    "IMAGE_DATASETS", "NOT_UTF8", "Dataset", "Files", "Splits", "Table", "arrays", "check_dataset", "count", "holdout",
    "input_shape", "inputs", "is_classes", "load_digits", "load_images", "load_local", "naming_undecodable_files",
    "printable", "stratified_split", "take", "targets", "utf8_name",
]
