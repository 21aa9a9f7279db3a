"""Choosing the encoder's quality per image against a perceptual target: the lowest quality
whose output scores at least the target (SSIMULACRA2, score.py), found in a few encodes.

For JPEG, the search models an image's error (100 less its score) as a power of libjpeg's
quantiser scale (5000 / quality below 50, 200 - 2 x quality above): on the benchmark's
photos the power is about 0.8 between qualities 30 and 85, and unlike the score's slope
per quality step (0.8 below 50, 0.5 above) it holds across the libjpeg curve's knee.
From the first encode it predicts the quality that lands in the middle of a window from
the target to CLOSE_ENOUGH points above it, learns the image's own power from two, and
once it has a quality that meets the target and one that does not, interpolates between
them. It stops when an output lands in the window, when the qualities that met and missed
are at most QUALITY_GAP apart, or when the tries run out. What met the target at the
lowest quality is kept; if nothing did, the fixed quality is used and the choice says so.

Stopping in the window rather than at neighbouring qualities costs 0.5-1.4% of bytes
against the lowest quality that meets the target, and saves a try in three (for JPEG,
2.2-2.4 encodes an image instead of 3.3-3.4 on the benchmark's photos, BENCHMARKS.md).

WebP and AVIF qualities are not libjpeg's: each encoder has its own QualityCurve, where
photos reach a target and how their error falls with the quality. AV1's quantiser step
grows exponentially as its quality falls, so AVIF's error is a power of the step itself
(a quality step is the same factor everywhere), not of libjpeg's scale. Each on its own
curve, WebP and AVIF take 2.6-2.7 encodes an image instead of 3.4.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

LOWEST: Final = 10  # below this every photo is blocks, whatever a metric says
HIGHEST: Final = 95  # above this files grow for nothing anyone sees
DEFAULT_MAX_TRIES: Final = 6
# An output scoring less than this above the target is kept: a point and a half of
# SSIMULACRA2 is under what anyone tells apart, and looking for it costs a try.
CLOSE_ENOUGH: Final = 1.5
# Qualities this close, one meeting the target and one not, end the search: the one
# between them differs by a percent or two of bytes.
QUALITY_GAP: Final = 2


class QualityTarget(StrEnum):
    """The perceptual targets a request may ask for: the one list (settings, models and
    the API take theirs from here)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Their SSIMULACRA2 scores, as Cloudinary's q_auto:eco, good and best roughly aim; the
# service's settings may change them (QUALITY_TARGET_LOW and so on).
DEFAULT_TARGET_SCORES: Final = {
    QualityTarget.LOW: 60.0,
    QualityTarget.MEDIUM: 70.0,
    QualityTarget.HIGH: 80.0,
}


@dataclass(frozen=True)
class Choice:
    """The output kept: its bytes, the quality and score they were made at, how many
    encodes it took, and whether it met the target (None where there was none)."""

    data: bytes
    quality: int
    score: float | None
    tries: int
    target_met: bool | None


@dataclass(frozen=True)
class QualityCurve:
    """What the search assumes of an encoder's quality until an image tells it more:
    photos reach a target score at about slope x target + offset, and their error (100
    less the score) is about a power of the quantiser's step, on libjpeg's scale or, where
    exponential_step, on one where each quality step is the same factor."""

    slope: float
    offset: float
    power: float
    exponential_step: bool = False


# Fitted on the scores of the 25 photographs of `make quality` at every other JPEG
# quality and every third WebP and AVIF quality (BENCHMARKS.md, "Perceptual quality"):
# the search starts at 35, 54 and 72 for targets 60, 70 and 80 in JPEG, 48, 68 and 88 in
# WebP, 36, 48 and 61 in AVIF. With JPEG's curve for all three, WebP and AVIF took 3.0
# encodes an image on those scores, 2.3 and 2.4 with their own (3.4 against 2.6 and 2.7
# in `make quality` at medium).
JPEG_CURVE: Final = QualityCurve(slope=1.85, offset=-76, power=0.8)
QUALITY_CURVES: Final = {
    "JPEG": JPEG_CURVE,
    "WEBP": QualityCurve(slope=2.0, offset=-72, power=0.55),
    "AVIF": QualityCurve(slope=1.25, offset=-39, power=0.75, exponential_step=True),
}
# The exponential step's unit: 25 qualities, so that its powers are of the order of
# libjpeg's scale's.
_QUALITIES_A_UNIT: Final = 25


def starting_quality(
    target: float, source_quality: int | None, curve: QualityCurve = JPEG_CURVE
) -> int:
    """Where the search starts: about where photos reach the target with this encoder,
    never above source_quality, the quality of a JPEG source re-encoded as JPEG (above it
    a re-encode only copies what the source already lost)."""
    estimate = round(curve.slope * target + curve.offset)
    if source_quality is not None:
        estimate = min(estimate, source_quality)
    return _clamped(estimate)


def quality_search(
    encode: Callable[[int], bytes],
    score: Callable[[bytes], float],
    *,
    target: float,
    start: int,
    fallback: int,
    max_tries: int = DEFAULT_MAX_TRIES,
    curve: QualityCurve = JPEG_CURVE,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Choice:
    """The lowest quality whose output scores at least target, or one that scores less
    than CLOSE_ENOUGH above it, in at most max_tries encodes (the fallback's included);
    the fallback quality's output where none met the target.

    With a deadline (of clock), no try starts that might leave no time for it and a
    fallback: a 50 MP WebP takes seconds an encode, and the image's time limit is one."""
    scores: dict[int, float] = {}  # every quality tried
    # The outputs still wanted, not all of them: the lowest that met the target, and the
    # fallback's (a 16 MP WebP is tens of megabytes).
    kept: dict[int, bytes] = {}
    quality: int | None = _clamped(start)
    longest = 0.0  # the slowest try so far, in seconds of clock
    while quality is not None:
        if scores and deadline is not None and clock() + 2 * longest > deadline:
            break
        started = clock()
        data = encode(quality)
        scores[quality] = score(data)
        longest = max(longest, clock() - started)
        met = _lowest_met(scores, target)
        kept = {q: kept.get(q, data) for q in {met, fallback} if q in scores}
        if met is not None and scores[met] < target + CLOSE_ENOUGH:
            break
        # One encode stays for the fallback until something meets the target.
        budget = max_tries if met is not None or fallback in scores else max_tries - 1
        if len(scores) >= budget:
            break
        quality = _next_quality(scores, target, met, curve)
    met = _lowest_met(scores, target)
    if met is not None:
        return Choice(kept[met], met, scores[met], len(scores), target_met=True)
    if fallback not in scores:
        kept[fallback] = encode(fallback)
        scores[fallback] = score(kept[fallback])
    return Choice(kept[fallback], fallback, scores[fallback], len(scores), target_met=False)


def _lowest_met(scores: dict[int, float], target: float) -> int | None:
    return min((quality for quality, score in scores.items() if score >= target), default=None)


def _next_quality(
    tried: dict[int, float], target: float, met: int | None, curve: QualityCurve
) -> int | None:
    """The next quality to try, aiming at the middle of the window that is close enough,
    or None where the search is done: the lowest that met the target is within
    QUALITY_GAP of one below that did not, or the bounds leave nothing to try."""
    missed = [q for q, s in tried.items() if s < target and (met is None or q < met)]
    below = max(missed, default=None)
    wanted = _error(target + CLOSE_ENOUGH / 2)

    def scale(quality: int) -> float:
        return _scale(quality, curve)

    if met is not None and below is not None:
        if met - below <= QUALITY_GAP:
            return None
        power = (_error(tried[below]) - _error(tried[met])) / (scale(below) - scale(met))
        step = (wanted - _error(tried[met])) / max(power, 1e-6)
        quality = _quality_at(scale(met) + step, curve)
        return min(met - 1, max(below + 1, math.ceil(quality)))
    nearest = met if met is not None else below
    assert nearest is not None
    step = (wanted - _error(tried[nearest])) / _power(tried, curve)
    quality = _quality_at(scale(nearest) + step, curve)
    if met is not None:  # everything tried met it: lower
        candidate = max(LOWEST, min(nearest - 1, math.floor(quality)))
    else:  # nothing did: higher
        candidate = min(HIGHEST, max(nearest + 1, math.ceil(quality)))
    return None if candidate in tried else candidate


def _power(tried: dict[int, float], curve: QualityCurve) -> float:
    """The image's error per quantiser step (both as logarithms), from the last two tries;
    the encoder's typical one before there are two, or where theirs is noise."""
    if len(tried) < 2:
        return curve.power
    (q1, s1), (q2, s2) = list(tried.items())[-2:]
    power = (_error(s1) - _error(s2)) / (_scale(q1, curve) - _scale(q2, curve))
    return power if 0.2 < power < 3.0 else curve.power


def _scale(quality: int, curve: QualityCurve) -> float:
    """The logarithm of the quantiser's step at quality: libjpeg's scale (5000 / quality
    below 50, 200 - 2 x quality above), or a step that grows by the same factor for each
    quality less."""
    if curve.exponential_step:
        return -quality / _QUALITIES_A_UNIT
    return math.log(5000 / quality if quality < 50 else 200 - 2 * quality)


def _quality_at(scale: float, curve: QualityCurve) -> float:
    """The quality of a quantiser step's logarithm (_scale's inverse)."""
    if curve.exponential_step:
        return -scale * _QUALITIES_A_UNIT
    percent = math.exp(scale)
    return 5000 / percent if percent > 100 else (200 - percent) / 2


def _error(score: float) -> float:
    return math.log(max(100.0 - score, 0.5))


def _clamped(quality: int) -> int:
    return max(LOWEST, min(HIGHEST, quality))
