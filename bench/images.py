"""The benchmark's photographs: distinct crops of scikit-image's sample photos, JPEG
quality 90. The mix: 800x800, 1600x1600 and 3000x2000, and some PNG; typical: what a
catalogue mostly holds, 800x800 and 1600x1200, half each, all JPEG.

Made once and kept in bench/.cache; the same count always gives the same files."""

import multiprocessing
import random
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

CACHE = Path(__file__).resolve().parent / ".cache" / "images-v1"
SOURCES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
# (width, height, share of the set)
Sizes = tuple[tuple[int, int, float], ...]
MIX: Sizes = ((800, 800, 0.5), (1600, 1600, 0.35), (3000, 2000, 0.15))
TYPICAL: Sizes = ((800, 800, 0.5), (1600, 1200, 0.5))


def image_set(count: int, sizes: Sizes = MIX) -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    plan = [_plan(index, sizes) for index in range(count)]
    missing = [item for item in plan if not (CACHE / item[0]).exists()]
    if missing:
        print(f"making {len(missing)} benchmark images in {CACHE} (once)", flush=True)
        with multiprocessing.get_context("fork").Pool() as pool:
            pool.map(_make, missing, chunksize=8)
    return [CACHE / name for name, *_ in plan]


def _plan(index: int, sizes: Sizes) -> tuple[str, int, int, int]:
    rng = random.Random(index)
    pick = rng.random()
    width, height = sizes[-1][:2]
    threshold = 0.0
    for w, h, share in sizes:
        threshold += share
        if pick < threshold:
            width, height = w, h
            break
    extension = "png" if index % 12 == 11 and width == 800 and sizes is MIX else "jpg"
    return f"{index:05d}-{width}x{height}.{extension}", width, height, index


def _make(item: tuple[str, int, int, int]) -> None:
    from skimage import data

    name, width, height, seed = item
    rng = random.Random(seed)
    source = Image.fromarray(getattr(data, SOURCES[seed % len(SOURCES)])()).convert("RGB")
    # A different crop, mirror and colour balance for every image, then the target size.
    crop_w = int(source.width * rng.uniform(0.55, 0.95))
    crop_h = int(source.height * rng.uniform(0.55, 0.95))
    left = rng.randint(0, source.width - crop_w)
    top = rng.randint(0, source.height - crop_h)
    image = source.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    # Sensor grain, so that upscaled samples compress like photographs, not like paintings.
    grain = Image.effect_noise((width, height), 24).convert("RGB")
    image = Image.blend(image, grain, 0.06)
    target = CACHE / name
    if name.endswith(".png"):
        image.save(target, "PNG", compress_level=6)
    else:
        image.save(target, "JPEG", quality=90)
