"""What an output is (its formats, sizes, qualities), as an image's row records it and as
the account's re-use cache keeps it (SourceOutput), with the same field names in both."""

import dataclasses
from dataclasses import dataclass
from typing import Any

from imaging.encode import CompressedImage


@dataclass(frozen=True)
class OutputFacts:
    """What an image's output is, as every image with its URL records it."""

    input_format: str
    output_format: str
    input_bytes: int
    output_bytes: int
    width: int
    height: int
    source_quality: int | None
    quality: int
    kept_original: bool
    flattened: bool = False  # its transparency painted on white (asked for as JPEG)
    score: float | None = None  # SSIMULACRA2 against its source
    tries: int | None = None  # encodes it took
    target_met: bool | None = None  # perceptual mode: the target reached
    reused: bool = False  # copied from an earlier request's output (reuse.py)
    note: str = ""  # what the output leaves out of its source (frames, pages), in words

    @classmethod
    def of(cls, compressed: CompressedImage, *, input_bytes: int) -> "OutputFacts":
        return cls(
            input_format=compressed.source_format[:8],
            output_format=compressed.format,
            input_bytes=input_bytes,
            output_bytes=len(compressed.data),
            width=compressed.width,
            height=compressed.height,
            source_quality=compressed.source_quality,
            quality=compressed.quality,
            kept_original=compressed.kept_original,
            flattened=compressed.flattened,
            score=compressed.score,
            tries=compressed.tries,
            target_met=compressed.target_met,
            note=compressed.note,
        )

    @classmethod
    def reused_from(cls, stored: Any) -> "OutputFacts":
        """The facts of an earlier output (a SourceOutput), for its copy."""
        return cls(**{name: getattr(stored, name) for name in STORED_FIELDS}, reused=True)

    def stored(self) -> dict[str, Any]:
        """The fields a SourceOutput keeps."""
        return {name: getattr(self, name) for name in STORED_FIELDS}


# What the re-use cache keeps of an output: all but whether it was itself a copy.
STORED_FIELDS = tuple(
    field.name for field in dataclasses.fields(OutputFacts) if field.name != "reused"
)
