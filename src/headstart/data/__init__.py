"""Images in: find a dataset's labelled images, split them, and decode them safely.

The bottom layer of headstart: it never imports torch, so listing and checking a dataset
(``headstart data``) is fast and works without a deep-learning stack loaded.
"""

from headstart.data.dataset import CsvColumns, Dataset, Sample, Skipped
from headstart.data.decoding import (
    IMAGE_FORMATS,
    ImageHeader,
    decode_image,
    decode_image_bytes,
    load_image,
    sniff_format,
)
from headstart.data.discovery import (
    collect_image_paths,
    dataset_from_lists,
    load_dataset,
    verify_dataset,
)

__all__ = [
    "IMAGE_FORMATS",
    "CsvColumns",
    "Dataset",
    "Sample",
    "Skipped",
    "ImageHeader",
    "collect_image_paths",
    "decode_image",
    "decode_image_bytes",
    "dataset_from_lists",
    "load_dataset",
    "load_image",
    "sniff_format",
    "verify_dataset",
]
