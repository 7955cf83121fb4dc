"""Exception hierarchy shared by the coordinator and the edge agents."""

from __future__ import annotations

from collections.abc import Iterable


class FlSharedError(Exception):
    """Root of every error raised by ``fl_shared``.

    Hierarchy::

        FlSharedError
        ├── UnknownModelError        (ValueError)  bad model name
        ├── UnknownDatasetError      (ValueError)  bad dataset name
        ├── UnknownPartitionerError  (ValueError)  bad partitioner name
        ├── DatasetUnavailableError                data files missing / hub down
        └── SettingsError                          a program's settings are invalid

    The ``Unknown*`` errors are request-validation errors, so they also derive from
    ``ValueError``; ``DatasetUnavailableError`` is an environment problem (fix the
    host, not the request) and deliberately is not a ``ValueError``.
    """


class UnknownModelError(FlSharedError, ValueError):
    """A model name that is not in ``catalog.MODEL_NAMES``."""


class UnknownDatasetError(FlSharedError, ValueError):
    """A dataset name that is not in ``catalog.DATASET_NAMES``."""


class UnknownPartitionerError(FlSharedError, ValueError):
    """A partitioner name that is not in ``catalog.PARTITIONER_NAMES``."""


class DatasetUnavailableError(FlSharedError):
    """The data behind a valid dataset name cannot be loaded on this host.

    The message states what is missing and how to fix it.
    """


def unknown_name_message(kind: str, name: object, valid: Iterable[str]) -> str:
    """Build the standard "unknown X" message that lists the valid names."""
    choices = ", ".join(repr(v) for v in valid)
    return f"unknown {kind} {name!r}; valid {kind} names are: {choices}"


class SettingsError(FlSharedError):
    """Settings that cannot be read or do not validate; the message names the setting."""
