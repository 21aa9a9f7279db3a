"""The perceptual quality report (`make quality`): what each quality mode, target and format
makes of 25 distinct photographs, in bytes, SSIMULACRA2 and images per second.

The corpus: the 12 photographs of Debian's mate-backgrounds package (its nature folder:
flowers, leaves, insects, wood, sand, water, a meadow, a storm) and 13 of scikit-image's
sample photographs (astronaut, cat, coffee, rocket, Hubble deep field, retina, stained
tissue, motorcycle; in grey a camera man, the moon, coins, a brick wall, grass). Each is
scaled to 1200 pixels on its long side, the size of a product photo, and saved as a
JPEG at quality 90: that JPEG is the source every mode starts from. Made once into
bench/.cache.

Printed: per mode, the scores' 5th percentile and median (on tiles, as the service
reports them, and on whole images beside), the bytes, the encodes, the fallbacks; the
bytes of the perceptual targets against the smallest fixed quality reaching the same 5th
percentile; AVIF and WebP against JPEG at the medium target; and each mode's speed in one
process against fixed quality 50.

    make quality [QUALITY_ARGS="--repeat 2"]
"""

import argparse
import functools
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imaging.encode import OutputFormat, QualityMode, compress
from imaging.quality import DEFAULT_TARGET_SCORES, QualityTarget
from imaging.score import Reference

CACHE = Path(__file__).resolve().parent / ".cache" / "quality-v1"
MATE = Path("/usr/share/backgrounds/mate")
MATE_PHOTOS = tuple(
    f"nature/{name}.jpg"
    for name in (
        "Aqua",
        "Blinds",
        "Dune",
        "FreshFlower",
        "Garden",
        "GreenMeadow",
        "LadyBird",
        "RainDrops",
        "Storm",
        "TwoWings",
        "Wood",
        "YellowFlower",
    )
)
SCIKIT_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "stereo_motorcycle",  # its left view
    "camera",
    "moon",
    "coins",
    "brick",
    "grass",
)
LONG_SIDE = 1200
MAX_PIXELS = 50_000_000
FIXED_QUALITIES = tuple(range(20, 96, 5))


@dataclass(frozen=True)
class Made:
    """What one mode made of one photo."""

    bytes: int
    score: float  # as the service reports it: on tiles
    whole_score: float  # on the whole image at every scale
    quality: int
    tries: int
    target_met: bool | None


@dataclass(frozen=True)
class Mode:
    label: str
    options: dict[str, object]


def corpus() -> list[tuple[str, bytes]]:
    """The sources: each photograph at product size as a JPEG of quality 90, made once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    loaders: list[tuple[str, Callable[[], Image.Image]]] = [
        (Path(name).stem, functools.partial(Image.open, MATE / name)) for name in MATE_PHOTOS
    ]
    loaders += [(name, functools.partial(_scikit, name)) for name in SCIKIT_PHOTOS]
    photos = []
    for name, load in loaders:
        target = CACHE / f"{name}.jpg"
        if not target.exists():
            image = load()
            image = image.convert("L" if image.mode in {"L", "I", "I;16"} else "RGB")
            scale = LONG_SIDE / max(image.size)
            size = (round(image.width * scale), round(image.height * scale))
            image.resize(size, Image.Resampling.LANCZOS).save(target, "JPEG", quality=90)
        photos.append((name, target.read_bytes()))
    return photos


def _scikit(name: str) -> Image.Image:
    from skimage import data

    picture = getattr(data, name)()
    return Image.fromarray(picture[0] if isinstance(picture, tuple) else picture)


def rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def made_by(mode: Mode, photos: list[tuple[str, bytes]], whole: dict[str, Reference]) -> list[Made]:
    made = []
    for name, data in photos:
        result = compress(data, max_pixels=MAX_PIXELS, **mode.options)  # type: ignore[arg-type]
        made.append(
            Made(
                bytes=len(result.data),
                score=result.score if result.score is not None else float("nan"),
                whole_score=whole[name].score(rgb(result.data)),
                quality=result.quality,
                tries=result.tries,
                target_met=result.target_met,
            )
        )
    return made


def speed(mode: Mode, photos: list[tuple[str, bytes]], repeat: int) -> float:
    """Images per second, one after the other in this process."""
    started = time.perf_counter()
    for _ in range(repeat):
        for _, data in photos:
            compress(data, max_pixels=MAX_PIXELS, **mode.options)  # type: ignore[arg-type]
    return repeat * len(photos) / (time.perf_counter() - started)


def p5(values: list[float]) -> float:
    """The 5th percentile, nearest rank, as the status reports it."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 5 // 100) - 1)]


def perceptual(target: QualityTarget, output_format: OutputFormat = OutputFormat.SAME) -> Mode:
    label = f"perceptual {target}" + (f" {output_format}" if output_format != "same" else "")
    return Mode(
        label,
        {
            "quality": 50,
            "mode": QualityMode.PERCEPTUAL,
            "target_score": DEFAULT_TARGET_SCORES[target],
            "output_format": output_format,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=2, help="passes over the corpus timed")
    options = parser.parse_args()
    photos = corpus()
    print(
        f"{len(photos)} photographs, {LONG_SIDE} px on the long side, JPEG q90 sources", flush=True
    )
    whole = {name: Reference(rgb(data), tiled=False) for name, data in photos}

    fixed = {
        quality: made_by(
            Mode(f"fixed q{quality}", {"quality": quality, "scored": True}), photos, whole
        )
        for quality in FIXED_QUALITIES
    }
    targets = {target: made_by(perceptual(target), photos, whole) for target in QualityTarget}
    formats = {
        asked: made_by(perceptual(QualityTarget.MEDIUM, asked), photos, whole)
        for asked in (OutputFormat.WEBP, OutputFormat.AVIF)
    }

    print(
        "\n| mode | score p5 | median | whole-image p5 | median | bytes | quality | tries "
        "| target missed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [(f"fixed q{q}", made) for q, made in fixed.items() if q in {30, 50, 70, 90}]
    rows += [
        (f"perceptual {t} ({DEFAULT_TARGET_SCORES[t]:g})", made) for t, made in targets.items()
    ]
    rows += [(f"perceptual medium, {f}", made) for f, made in formats.items()]
    for label, made in rows:
        scores = [m.score for m in made]
        wholes = [m.whole_score for m in made]
        qualities = [m.quality for m in made]
        print(
            f"| {label} | {p5(scores):.1f} | {statistics.median(scores):.1f} "
            f"| {p5(wholes):.1f} | {statistics.median(wholes):.1f} "
            f"| {sum(m.bytes for m in made):,} | {min(qualities)} to {max(qualities)} "
            f"| {statistics.mean(m.tries for m in made):.1f} (max {max(m.tries for m in made)}) "
            f"| {sum(1 for m in made if m.target_met is False)} |"
        )

    print("\n| target | its p5 | bytes | smallest fixed quality with that p5 | its bytes | ratio |")
    print("|---|---|---|---|---|---|")
    for target, made in targets.items():
        reached = p5([m.score for m in made])
        spent = sum(m.bytes for m in made)
        matching = [q for q, f in fixed.items() if p5([m.score for m in f]) >= reached]
        if not matching:
            print(f"| {target} | {reached:.1f} | {spent:,} | none up to 95 | | |")
            continue
        quality = min(matching)
        fixed_bytes = sum(m.bytes for m in fixed[quality])
        print(
            f"| {target} | {reached:.1f} | {spent:,} | q{quality} "
            f"(p5 {p5([m.score for m in fixed[quality]]):.1f}) | {fixed_bytes:,} "
            f"| {spent / fixed_bytes:.2f} |"
        )

    jpeg_bytes = sum(m.bytes for m in targets[QualityTarget.MEDIUM])
    print("\n| at the medium target | bytes | against JPEG |")
    print("|---|---|---|")
    print(f"| JPEG | {jpeg_bytes:,} | 1.00 |")
    for asked, made in formats.items():
        spent = sum(m.bytes for m in made)
        print(f"| {asked.upper()} | {spent:,} | {spent / jpeg_bytes:.2f} |")

    timed = [
        Mode("fixed q50 (unscored, the default)", {"quality": 50}),
        Mode("fixed q50, scored", {"quality": 50, "scored": True}),
        *(perceptual(target) for target in QualityTarget),
        perceptual(QualityTarget.MEDIUM, OutputFormat.WEBP),
        perceptual(QualityTarget.MEDIUM, OutputFormat.AVIF),
    ]
    print(f"\n| mode | images/s (one process, {options.repeat} passes) | against fixed q50 |")
    print("|---|---|---|")
    base = speed(timed[0], photos, options.repeat)
    scored = speed(timed[1], photos, options.repeat)
    print(f"| {timed[0].label} | {base:.1f} | 1.00 |")
    print(f"| {timed[1].label} | {scored:.1f} | {scored / base:.2f} |")
    for mode in timed[2:]:
        rate = speed(mode, photos, options.repeat)
        print(f"| {mode.label} | {rate:.1f} | {rate / base:.2f} (of scored: {rate / scored:.2f}) |")


if __name__ == "__main__":
    main()
