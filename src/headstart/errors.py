"""The whole exception tree.

Every error a user can cause is a ``HeadstartError``. Each subclass also inherits the builtin it
resembles (as scikit-learn's ``NotFittedError(ValueError, AttributeError)`` does), so code that
catches ``ValueError`` or ``LookupError`` keeps working. Only ``headstart.cli.main`` catches
``HeadstartError``: it prints the message as one line and exits with code 2. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "BackboneNotFoundError",
    "CacheWarning",
    "DataError",
    "DataWarning",
    "EngineWarning",
    "ExportError",
    "HeadstartError",
    "HeadstartWarning",
    "ImageDecodeError",
    "InvalidParameterError",
    "MissingDependencyError",
    "NotFittedError",
    "PreprocessOverrideWarning",
    "PretrainedViewWarning",
    "RunFolderError",
    "StorageError",
    "UnsafeWeightsError",
    "WeightsError",
]


class HeadstartError(Exception):
    """Root of every error headstart raises for a mistake a user can make."""


class InvalidParameterError(HeadstartError, ValueError):
    """A parameter's value is not one headstart accepts (an unknown strategy, a negative epoch
    count, an option the chosen strategy cannot use); catchable as ``ValueError``, as
    scikit-learn's own parameter errors are."""


class DataError(HeadstartError, ValueError):
    """The dataset cannot be used as given: bad path, too few classes, an empty class, a bad CSV."""


class ImageDecodeError(DataError):
    """One image cannot be read. Runs skip such files and list them; they never stop a run."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class BackboneNotFoundError(HeadstartError, LookupError):
    """The model name names no backbone we can build, or its weights cannot be had offline."""


class WeightsError(HeadstartError, ValueError):
    """A weights file does not exist, cannot be read, or does not fit the architecture."""


class UnsafeWeightsError(WeightsError):
    """A weights file would need unpickling of arbitrary objects; it is refused, never executed."""


class NotFittedError(HeadstartError, AttributeError):
    """A classifier was used for prediction before ``fit`` or ``load``."""


class RunFolderError(HeadstartError, ValueError):
    """A run folder is missing, incomplete, or was not written by headstart."""


class StorageError(HeadstartError, OSError):
    """A file cannot be written: the disk is full, a quota or size limit is reached, or the
    device failed. What was there before is left as it was (writes are atomic)."""


class ExportError(HeadstartError, RuntimeError):
    """An exported model does not give ``predict``'s probabilities; it is not written."""


class MissingDependencyError(HeadstartError, ImportError):
    """A feature needs an optional extra that is not installed (``pip install 'headstart[X]'``)."""


class HeadstartWarning(UserWarning):
    """Base of headstart's warnings: something is allowed but probably not what the user wants."""


class DataWarning(HeadstartWarning):
    """The data is usable but suspicious: leaked duplicates, conflicting labels."""


class CacheWarning(HeadstartWarning):
    """The feature cache cannot be used as it is (damaged, read-only); the run goes on."""


class EngineWarning(HeadstartWarning):
    """An extraction engine asked for cannot be used here (not installed, the backbone does not
    export, or its features differ from torch's); features come from torch instead."""


class PreprocessOverrideWarning(HeadstartWarning):
    """The user overrode the preprocessing the weights were trained with."""


class PretrainedViewWarning(HeadstartWarning):
    """The backbone's own pretraining classifier sees nothing sensible in the training images."""
