"""The pages' words: each choice of the upload and re-run forms, each reason an image
failed and what to do about it, a request's settings and counts, a size change."""

from typing import Any

from django.conf import settings

from imaging.encode import OutputFormat, QualityMode
from imaging.metadata import MetadataMode
from processing.models import ProcessingRequest, ProductImage, ReasonCode

# The forms' words for each choice: the upload's and the re-run's alike.
OUTPUT_FORMAT_CHOICES: dict[OutputFormat, str] = {
    OutputFormat.SAME: (
        "As the source (JPEG, WebP, AVIF stay so; others JPEG, or WebP where transparent; "
        "a PNG, GIF or BMP kept where smaller)"
    ),
    OutputFormat.JPEG: "JPEG (transparency on white)",
    OutputFormat.WEBP: "WebP",
    OutputFormat.AVIF: "AVIF (smallest, slower)",
}


# A request's output format as its summary names it: the menu's name, without its note.
OUTPUT_FORMAT_NAMES: dict[str, str] = {
    asked.value: words.split(" (")[0] for asked, words in OUTPUT_FORMAT_CHOICES.items()
}


METADATA_CHOICES: dict[MetadataMode, str] = {
    MetadataMode.STRIP: "None (no GPS, camera or history)",
    MetadataMode.COPYRIGHT: "Keep the credits (artist, copyright, credit line)",
}


# Each reason code in words, with what to do about it (a test checks none is missing).
REASON_ADVICE: dict[ReasonCode, str] = {
    ReasonCode.TIMEOUT: "The image's server did not answer in time, or sent the image too "
    "slowly. Check that it is up and quick from the internet, then retry the failed images.",
    ReasonCode.CONNECTION_ERROR: "The image's server could not be reached, broke off, or "
    "answered in a way that cannot be read (the message says which). Check the host and port, "
    "and that the URL serves the image as a plain file.",
    ReasonCode.DNS_ERROR: "The host name in the URL does not exist. Fix the URL.",
    ReasonCode.TLS_ERROR: "The secure connection failed (certificate invalid or expired).",
    ReasonCode.BLOCKED_ADDRESS: "The URL points at a private or internal address, which is "
    "never fetched. Use a public URL.",
    ReasonCode.BLOCKED_PORT: "The URL uses a port that is not allowed. Serve the image on 80 "
    "or 443.",
    ReasonCode.INVALID_URL: "The URL cannot be fetched. Fix it.",
    ReasonCode.TOO_MANY_REDIRECTS: "The URL redirects too many times. Link to the final address.",
    ReasonCode.BAD_REDIRECT: "The URL redirects nowhere. Link to the final address.",
    ReasonCode.TOO_LARGE: "The file is too large to fetch. Publish a smaller file.",
    ReasonCode.NOT_AN_IMAGE: "The URL does not lead to an image (a web page, perhaps). Link to "
    "the image itself.",
    ReasonCode.CORRUPT_IMAGE: "The image is damaged or cut short. Export it again.",
    ReasonCode.TOO_MANY_PIXELS: "The image has too many pixels to process safely, or is "
    "longer than its output format holds. Publish a smaller one, or ask for a format that "
    "holds it.",
    ReasonCode.TOO_COMPLEX: "The JPEG is built in an unusual way (far more scans than a photo "
    "has) that would take too long to read. Export it again as a standard JPEG.",
    ReasonCode.TOO_SLOW: "Reading and compressing the image took too long. Publish a smaller "
    "or simpler image.",
    ReasonCode.ENCODE_FAILED: "The image could not be compressed. Report it with the image.",
    ReasonCode.STORAGE_FULL: "Our storage was full when the result was saved: nothing is wrong "
    "with the image. Retry the request in a while.",
    ReasonCode.STORAGE_ERROR: "The result could not be saved on our side. Upload again later; "
    "if it keeps happening, report it with the request id.",
    ReasonCode.INTERNAL_ERROR: "Something went wrong on our side with this image. Report it "
    "with the request id; the rest of the request is unaffected.",
    ReasonCode.CANCELLED: "The request was cancelled before this image was processed. Retry the "
    "request to process it.",
}


def image_advice(image: ProductImage) -> str:
    """What a failed image's reason code means for a person."""
    code = image.error_code
    if code.startswith("http_"):
        status = code.removeprefix("http_")
        if status in {"429"} or status.startswith("5"):
            return f"The image's server answered {status} (busy or broken). Upload again later."
        return f"The image's server answered {status}. Check that the URL opens in a browser."
    if code in ReasonCode.values:
        return REASON_ADVICE[ReasonCode(code)]
    return "The image could not be processed."


def size_change_words(percent: int | None) -> str | None:
    """A saving in words: an output that grew (a PNG made JPEG, a tiny GIF) is "larger",
    not "-31% smaller"."""
    if percent is None:
        return None
    if percent > 0:
        return f"{percent}% smaller"
    if percent < 0:
        return f"{-percent}% larger"
    return "the same size"


def request_settings_words(found: ProcessingRequest) -> str:
    """A request's quality and output format in a few words, for the list of requests."""
    if found.quality_target:
        quality = f"perceptual {found.quality_target}"
    elif found.quality_mode == QualityMode.RELATIVE:
        quality = "half the source's quality"
    else:
        quality = f"quality {found.quality}"
    if found.output_format == OutputFormat.SAME:
        return f"{quality} · same format"
    return f"{quality} · {OUTPUT_FORMAT_NAMES.get(found.output_format, found.output_format)}"


def quality_choices() -> list[tuple[str, str, bool]]:
    """The upload form's ways of choosing each image's quality (value, words, whether it is
    the service's default): the value names the mode, and the target after a colon. Each
    upload says its mode, so that the words hold whatever IMAGE_QUALITY_MODE says."""
    default = settings.IMAGE_QUALITY_MODE
    default_target = settings.IMAGE_QUALITY_TARGET
    return [
        (QualityMode.FIXED, "The quality above, for every image", default == QualityMode.FIXED),
        (
            QualityMode.RELATIVE,
            "Half each JPEG's own quality (other images: the quality above)",
            default == QualityMode.RELATIVE,
        ),
        *(
            (
                f"{QualityMode.PERCEPTUAL}:{target}",
                f"Perceptual target {target.value} (SSIMULACRA2 {score:g}; else the quality above)",
                default == QualityMode.PERCEPTUAL and target == default_target,
            )
            for target, score in settings.QUALITY_TARGET_SCORES.items()
        ),
    ]


def form_choices() -> dict[str, Any]:
    """What the upload and re-run forms offer: the perceptual targets with the scores the
    settings give them, the output formats and the metadata modes, in words."""
    return {
        "targets": [
            (target.value, target.value.title(), score)
            for target, score in settings.QUALITY_TARGET_SCORES.items()
        ],
        "output_formats": [(asked.value, words) for asked, words in OUTPUT_FORMAT_CHOICES.items()],
        "metadata_modes": [(mode.value, words) for mode, words in METADATA_CHOICES.items()],
    }


def counts_words(found: ProcessingRequest) -> str:
    """The images' counts under the bar, as request.js words them while the request runs."""
    compressed = found.succeeded_images - found.reused_images
    reused = f"{found.reused_images} re-used unchanged, " if found.reused_images else ""
    cancelled = f"{found.cancelled_images} cancelled, " if found.cancelled_images else ""
    return (
        f"{compressed} compressed, {reused}{found.failed_images} failed, {cancelled}"
        f"{found.pending_images} to go"
    )
