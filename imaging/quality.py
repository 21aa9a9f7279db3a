"""Choosing the encoder's quality per image against a perceptual target: the lowest quality
whose output scores at least the target (SSIMULACRA2, score.py), found in a few encodes.

The search models an image's error (100 less its score) as a power of libjpeg's
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
against the lowest quality that meets the target, and saves a try in three (2.2-2.4
encodes an image instead of 3.3-3.4 on the benchmark's photos, BENCHMARKS.md).
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

LOWEST: Final = 10  # below this every photo is blocks, whatever a metric says
HIGHEST: Final = 95  # above this files grow for nothing anyone sees
# The error's power of the quantiser scale where the search has none of its own yet.
TYPICAL_POWER: Final = 0.8
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


def starting_quality(target: float, source_quality: int | None) -> int:
    """Where the search starts: about where photos reach the target (fitted on the
    benchmark's photos: 35 for 60, 54 for 70, 72 for 80), never above the source's own
    quality, where a re-encode only copies what the source already lost."""
    estimate = round(1.85 * target - 76)
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
        quality = _next_quality(scores, target, met)
    met = _lowest_met(scores, target)
    if met is not None:
        return Choice(kept[met], met, scores[met], len(scores), target_met=True)
    if fallback not in scores:
        kept[fallback] = encode(fallback)
        scores[fallback] = score(kept[fallback])
    return Choice(kept[fallback], fallback, scores[fallback], len(scores), target_met=False)


def _lowest_met(scores: dict[int, float], target: float) -> int | None:
    return min((quality for quality, score in scores.items() if score >= target), default=None)


def _next_quality(tried: dict[int, float], target: float, met: int | None) -> int | None:
    """The next quality to try, aiming at the middle of the window that is close enough,
    or None where the search is done: the lowest that met the target is within
    QUALITY_GAP of one below that did not, or the bounds leave nothing to try."""
    missed = [q for q, s in tried.items() if s < target and (met is None or q < met)]
    below = max(missed, default=None)
    wanted = _error(target + CLOSE_ENOUGH / 2)
    if met is not None and below is not None:
        if met - below <= QUALITY_GAP:
            return None
        power = (_error(tried[below]) - _error(tried[met])) / (_scale(below) - _scale(met))
        quality = _quality_at(_scale(met) + (wanted - _error(tried[met])) / max(power, 1e-6))
        return min(met - 1, max(below + 1, math.ceil(quality)))
    nearest = met if met is not None else below
    assert nearest is not None
    quality = _quality_at(_scale(nearest) + (wanted - _error(tried[nearest])) / _power(tried))
    if met is not None:  # everything tried met it: lower
        candidate = max(LOWEST, min(nearest - 1, math.floor(quality)))
    else:  # nothing did: higher
        candidate = min(HIGHEST, max(nearest + 1, math.ceil(quality)))
    return None if candidate in tried else candidate


def _power(tried: dict[int, float]) -> float:
    """The image's error per quantiser scale (both as logarithms), from the last two tries."""
    if len(tried) < 2:
        return TYPICAL_POWER
    (q1, s1), (q2, s2) = list(tried.items())[-2:]
    power = (_error(s1) - _error(s2)) / (_scale(q1) - _scale(q2))
    return power if 0.2 < power < 3.0 else TYPICAL_POWER  # noise: the typical one


def _scale(quality: int) -> float:
    """The logarithm of libjpeg's quantiser scale at quality."""
    return math.log(5000 / quality if quality < 50 else 200 - 2 * quality)


def _quality_at(scale: float) -> float:
    """The quality of a quantiser scale's logarithm (_scale's inverse)."""
    percent = math.exp(scale)
    return 5000 / percent if percent > 100 else (200 - percent) / 2


def _error(score: float) -> float:
    return math.log(max(100.0 - score, 0.5))


def _clamped(quality: int) -> int:
    return max(LOWEST, min(HIGHEST, quality))
