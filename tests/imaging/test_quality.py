"""The perceptual mode: the search for the lowest quality that reaches a target
(imaging/quality.py), on its own with scores given as functions of the quality, and through
compress() on images made in the test."""

import io
import itertools
import math
from collections.abc import Callable

import pytest
from PIL import Image

from imaging.encode import OutputFormat, QualityMode, compress
from imaging.quality import (
    CLOSE_ENOUGH,
    HIGHEST,
    LOWEST,
    QUALITY_CURVES,
    QUALITY_GAP,
    quality_search,
    starting_quality,
)
from tests.support import noisy_photo as photo

MAX_PIXELS = 10_000_000


Curve = Callable[[int], float]


def scored_as(curve: Curve) -> tuple[list[int], Callable[[int], bytes], Callable[[bytes], float]]:
    """An encoder whose bytes name their quality, a score following curve, and the list of
    qualities encoded."""
    encoded: list[int] = []

    def encode(quality: int) -> bytes:
        encoded.append(quality)
        return str(quality).encode()

    def score(data: bytes) -> float:
        return curve(int(data))

    return encoded, encode, score


def photo_curve(steepness: float) -> Curve:
    """Scores rising with quality as photos' do: error a power of libjpeg's scale."""

    def curve(quality: int) -> float:
        scale = 5000 / quality if quality < 50 else 200 - 2 * quality
        return float(100 - 30 * (scale / 100) ** steepness)

    return curve


@pytest.mark.parametrize("steepness", [0.6, 0.8, 1.0])
@pytest.mark.parametrize("target", [60.0, 70.0, 80.0])
def test_the_search_finds_the_lowest_quality_that_reaches_the_target_or_one_close_to_it(
    steepness: float, target: float
) -> None:
    # Given images whose scores rise with quality, more or less steeply
    curve = photo_curve(steepness)
    lowest = min(q for q in range(LOWEST, HIGHEST + 1) if curve(q) >= target)
    encoded, encode, score = scored_as(curve)

    # When the search runs from the estimate for the target
    chosen = quality_search(
        encode, score, target=target, start=starting_quality(target, None), fallback=50
    )

    # Then it keeps a quality reaching the target: the lowest, one less than a quality
    # gap above it, or one scoring close enough; on curves this smooth, in four encodes
    assert chosen.quality >= lowest
    assert chosen.quality - lowest < QUALITY_GAP or curve(chosen.quality) < target + CLOSE_ENOUGH
    assert chosen.data == str(chosen.quality).encode()
    assert chosen.score == curve(chosen.quality)
    assert chosen.target_met is True
    assert chosen.tries == len(encoded) <= 4


def encoder_curve(name: str, *, reaches: int, target: float, power: float) -> Curve:
    """Scores of a photo through encoder name that reach target at quality reaches, the
    error a power of that encoder's quantiser step: libjpeg's scale for JPEG and WebP, a
    step growing by the same factor each quality less for AVIF (AV1's)."""

    def step(quality: int) -> float:
        if name == "AVIF":
            return math.exp(-quality / 25)
        return 5000 / quality if quality < 50 else 200 - 2 * quality

    def curve(quality: int) -> float:
        return float(100 - (100 - target) * (step(quality) / step(reaches)) ** power)

    return curve


# Where the photographs of `make quality` reach each target through each encoder (the
# median quality), and how steeply their error falls on that encoder's quantiser step.
REACHES = {
    "JPEG": {60.0: 38, 70.0: 56, 80.0: 74},
    "WEBP": {60.0: 47, 70.0: 70, 80.0: 87},
    "AVIF": {60.0: 37, 70.0: 47, 80.0: 62},
}
POWERS = {"JPEG": 0.8, "WEBP": 0.55, "AVIF": 0.75}


@pytest.mark.parametrize("name", ["JPEG", "WEBP", "AVIF"])
def test_each_encoder_s_search_follows_its_own_quality_scale(name: str) -> None:
    # Given photos through encoder name that reach each target where such photos do, or
    # 6 qualities off, their error falling as steeply as theirs, or more or less so
    tries = []
    for target, miss, steepness in itertools.product([60.0, 70.0, 80.0], [-6, 0, 6], [0.7, 1, 1.4]):
        reaches = max(LOWEST + 2, min(HIGHEST - 2, REACHES[name][target] + miss))
        photo = encoder_curve(name, reaches=reaches, target=target, power=POWERS[name] * steepness)
        lowest = min(q for q in range(LOWEST, HIGHEST + 1) if photo(q) >= target)
        encoded, encode, score = scored_as(photo)

        # When the search runs with that encoder's curve
        curve = QUALITY_CURVES[name]
        start = starting_quality(target, None, curve)
        chosen = quality_search(encode, score, target=target, start=start, fallback=50, curve=curve)

        # Then it keeps the lowest quality that reaches the target or one close to it
        assert chosen.target_met is True
        assert (
            chosen.quality - lowest < QUALITY_GAP or photo(chosen.quality) < target + CLOSE_ENOUGH
        )
        assert chosen.tries == len(encoded) <= 4
        tries.append(chosen.tries)

    # in 2.5 encodes a photo or fewer (2.1-2.3; JPEG's curve for WebP and AVIF: 2.7, 2.9)
    assert sum(tries) / len(tries) <= 2.5


def test_a_target_out_of_reach_falls_back_to_the_fixed_quality_and_says_so() -> None:
    # Given an image no quality brings to the target
    encoded, encode, score = scored_as(lambda quality: 50 + quality / 10)

    # When the search runs
    chosen = quality_search(encode, score, target=90, start=60, fallback=50, max_tries=4)

    # Then the fixed quality's output is kept, marked, within the tries
    assert (chosen.quality, chosen.data, chosen.target_met) == (50, b"50", False)
    assert chosen.score == 55.0
    assert chosen.tries == len(encoded) <= 4
    assert 50 in encoded


def test_a_target_every_quality_reaches_takes_the_lowest_quality() -> None:
    encoded, encode, score = scored_as(lambda quality: 99.0)
    chosen = quality_search(encode, score, target=60, start=35, fallback=50)
    assert (chosen.quality, chosen.target_met) == (LOWEST, True)
    assert len(encoded) <= 6


@pytest.mark.parametrize("max_tries", [2, 3, 4])
def test_the_tries_are_bounded_however_the_scores_jump(max_tries: int) -> None:
    # Given scores that jump about with the quality
    encoded, encode, score = scored_as(lambda quality: 60 + 15 * math.sin(quality))

    chosen = quality_search(encode, score, target=70, start=50, fallback=50, max_tries=max_tries)

    # Then no more than max_tries encodes, and what is kept met the target or says not
    assert len(encoded) == chosen.tries <= max_tries
    assert chosen.target_met == (chosen.score is not None and chosen.score >= 70)


def test_no_try_starts_that_might_not_fit_before_the_deadline() -> None:
    # Given encodes of 10 s each (on a clock of the test's) and 35 s for the image
    now = [0.0]
    encoded, encode, score = scored_as(lambda quality: 50 + quality / 10)

    def slow(quality: int) -> bytes:
        now[0] += 10
        return encode(quality)

    chosen = quality_search(
        slow, score, target=90, start=60, fallback=50, deadline=35, clock=lambda: now[0]
    )

    # Then two tries, and the fallback's encode still in time
    assert len(encoded) == chosen.tries == 3
    assert (chosen.quality, chosen.target_met) == (50, False)
    assert now[0] <= 35


def test_the_start_is_never_above_the_sources_own_quality() -> None:
    assert starting_quality(80, None) == 72
    assert starting_quality(80, 60) == 60
    assert starting_quality(80, None, QUALITY_CURVES["WEBP"]) == 88
    assert starting_quality(99, None) == HIGHEST
    assert starting_quality(10, None) == LOWEST


def jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize(("target", "size"), [(60.0, (800, 800)), (80.0, (1600, 1200))])
def test_a_perceptual_output_reaches_its_target(target: float, size: tuple[int, int]) -> None:
    source = jpeg(photo(*size, shapes=200))
    result = compress(
        source,
        quality=50,
        mode=QualityMode.PERCEPTUAL,
        target_score=target,
        max_pixels=MAX_PIXELS,
    )
    assert result.target_met is True
    assert result.score is not None
    assert result.score >= target
    assert 1 <= result.tries <= 6
    assert (result.width, result.height) == size
    assert len(result.data) < len(source)


def test_a_perceptual_target_out_of_reach_falls_back_in_the_outputs_fields() -> None:
    result = compress(
        jpeg(photo()),
        quality=45,
        mode=QualityMode.PERCEPTUAL,
        target_score=99.9,
        max_tries=3,
        max_pixels=MAX_PIXELS,
    )
    # (at quality 95 it misses: nothing higher is left to try)
    assert (result.quality, result.target_met) == (45, False)
    assert result.tries <= 3
    assert result.score is not None
    assert result.score < 99.9


def test_a_fixed_quality_output_is_scored_when_asked() -> None:
    source = jpeg(photo())
    fixed = compress(source, quality=50, max_pixels=MAX_PIXELS, scored=True)
    assert fixed.score is not None
    assert 40 < fixed.score < 95
    assert (fixed.tries, fixed.target_met) == (1, None)
    unscored = compress(source, quality=50, max_pixels=MAX_PIXELS)
    assert unscored.score is None
    assert unscored.data == fixed.data


def test_an_output_that_would_grow_keeps_the_original_which_scores_100() -> None:
    # Given a JPEG already at quality 30, asked for the high target
    source = jpeg(photo(), quality=30)
    result = compress(
        source, quality=50, mode=QualityMode.PERCEPTUAL, target_score=80, max_pixels=MAX_PIXELS
    )
    # Then the search stays at or below its quality, and nothing larger is made
    assert len(result.data) <= len(source)
    if result.kept_original:
        assert result.score == 100.0


def test_a_transparent_png_is_searched_as_webp_and_keeps_its_alpha() -> None:
    image = photo(300, 200).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((300, 200)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    result = compress(
        buffer.getvalue(),
        quality=50,
        mode=QualityMode.PERCEPTUAL,
        target_score=70,
        max_pixels=MAX_PIXELS,
    )
    assert result.format == "WEBP"
    assert result.target_met is True
    assert result.score is not None
    assert result.score >= 70
    assert Image.open(io.BytesIO(result.data)).mode == "RGBA"


@pytest.mark.parametrize("output_format", [OutputFormat.WEBP, OutputFormat.AVIF])
def test_a_jpeg_asked_for_in_another_format_is_searched_on_that_encoders_scale(
    output_format: OutputFormat,
) -> None:
    result = compress(
        jpeg(photo(480, 360, shapes=120)),
        quality=50,
        mode=QualityMode.PERCEPTUAL,
        target_score=70,
        output_format=output_format,
        max_pixels=MAX_PIXELS,
    )
    assert result.format == output_format.upper()
    assert result.target_met is True
    assert result.score is not None
    assert result.score >= 70
    assert 1 <= result.tries <= 6


def test_perceptual_mode_needs_a_target() -> None:
    with pytest.raises(ValueError, match="target"):
        compress(jpeg(photo()), quality=50, mode=QualityMode.PERCEPTUAL, max_pixels=MAX_PIXELS)


def test_an_image_too_small_to_score_takes_the_fixed_quality_with_no_target_to_speak_of() -> None:
    result = compress(
        jpeg(Image.effect_noise((6, 40), 30).convert("RGB"), quality=95),
        quality=45,
        mode=QualityMode.PERCEPTUAL,
        target_score=70,
        max_pixels=MAX_PIXELS,
    )
    assert (result.quality, result.score, result.tries, result.target_met) == (45, None, 1, None)
