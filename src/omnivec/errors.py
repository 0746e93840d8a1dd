"""The error types omnivec raises. Every message names the item or model and the cause."""
from __future__ import annotations


class OmnivecError(Exception):
    """Base class of every error omnivec raises on purpose."""


class MediaError(OmnivecError):
    """An input could not be read, decoded or accepted.

    `item` names the input (a path, URL or "<bytes #3>"), `stage` says where it failed
    (fetch, sniff, decode, limits, embed) and `cause` says why, in words.
    """

    def __init__(self, item: str, cause: str, stage: str = "decode"):
        self.item, self.cause, self.stage = str(item), str(cause), stage
        super().__init__(f"{self.item}: {stage} failed: {self.cause}")

    def to_dict(self) -> dict:
        return {"item": self.item, "stage": self.stage, "error": self.cause}


class ModalityError(OmnivecError):
    """A space was asked for a modality it does not cover."""


class UncoveredModalityError(MediaError, ModalityError):
    """An input whose content is of a modality the space does not cover: one item's failure (a MediaError, so
    `on_error="return"` puts it in the item's place) and a ModalityError (raised, and exit code 4 in the CLI)."""

    def __init__(self, item: str, cause: str):
        super().__init__(item, cause, "modality")


class ModelNotFoundError(OmnivecError):
    """Weights are not on disk and could not be fetched."""


class ConfigError(OmnivecError):
    """A space name, config file or option is wrong."""
