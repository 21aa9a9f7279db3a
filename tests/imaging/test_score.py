"""The perceptual score (imaging/score.py) on images made in the test."""

import io

import numpy as np
import pytest
from PIL import Image

from imaging import score
from imaging.icc import matrix_profile
from imaging.score import GRID, TILE, Reference, comparison_boxes
from tests.support import noisy_photo as photo
from tests.support import prophoto_profile


def jpeg_pixels(image: Image.Image, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_an_image_scores_100_against_itself() -> None:
    pixels = np.asarray(photo())
    assert Reference(pixels).score(pixels.copy()) == 100.0


# The reference tool's scores: libjxl's tools/ssimulacra2 (the standalone build of
# cloudinary/ssimulacra2 at 81feacf), run once by hand on PNG copies of the same pixels;
# it is not a dependency of ours. Whole images, thumbnails and banners among them: under
# 113 pixels a side there are fewer than six scales, whose weights the tool reads in an
# order of its own.
@pytest.mark.parametrize(
    ("size", "quality", "tool"),
    [
        ((384, 384), 30, 39.2043),
        ((384, 384), 50, 56.1634),
        ((384, 384), 80, 71.1103),
        ((127, 127), 50, 65.6408),  # six scales, each halving of an odd side rounded up
        ((120, 120), 40, 60.4469),
        ((100, 100), 30, 30.9197),  # five scales
        ((60, 60), 50, 36.0880),
        ((2000, 100), 40, 46.9179),  # a banner
        ((300, 9), 30, 89.6019),  # two scales
    ],
)
def test_scores_are_the_reference_tools(size: tuple[int, int], quality: int, tool: float) -> None:
    # Given an image small or thin enough to be compared whole, and its JPEG at quality
    width, height = size
    source = photo(max(width, 64), max(height, 64)).crop((0, 0, width, height))
    pixels, output = np.asarray(source), jpeg_pixels(source, quality)

    # Then its score is the tool's within a tenth of a point (the code that followed the
    # pure-Python port was 2.3 low on the first, 20 high on the banner)
    assert Reference(pixels).score(output) == pytest.approx(tool, abs=0.1)


def test_a_lower_quality_scores_lower() -> None:
    source = photo(1000, 700)
    reference = Reference(np.asarray(source))
    scores = [reference.score(jpeg_pixels(source, quality)) for quality in (20, 40, 60, 90)]
    assert scores == sorted(scores)
    assert scores[0] < 50 < scores[-1]


@pytest.mark.parametrize("size", [(384, 384), (100, 100)])  # six scales, and five
def test_the_terms_left_out_move_a_score_by_less_than_a_tenth(size: tuple[int, int]) -> None:
    # Given an image and its JPEG at quality 40
    source = photo(*size)
    pixels, output = np.asarray(source), jpeg_pixels(source, 40)
    pruned = Reference(pixels).score(output)

    # When every term of the model is computed, the tiny weights too
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(score, "_NEGLIGIBLE", 0.0)
        full = Reference(pixels).score(output)

    # Then the score barely moves
    assert abs(full - pruned) < 0.1


def test_a_product_on_white_scores_as_it_would_in_double_precision() -> None:
    # Given a product on a faintly noisy white page (variances of 1e-5 beside values near
    # 0.9, where float32 loses most of a difference of blurred squares), and its JPEG
    rng = np.random.default_rng(7)
    page = np.clip(250 + rng.normal(0, 1.5, (384, 384, 3)), 0, 255)
    page[140:250, 120:270] = (190, 40, 40)
    source = Image.fromarray(page.astype(np.uint8))
    pixels, output = np.asarray(source), jpeg_pixels(source, 90)
    single = Reference(pixels).score(output)

    # When every plane is computed in float64 instead
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(score, "_float32", lambda array: np.asarray(array, dtype=np.float64))
        patch.setattr(score, "_linear", lambda px, table: table.astype(np.float64)[px])
        double = Reference(pixels).score(output)

    # Then the scores agree to a hundredth (the SSIM term as the difference of blurred
    # squares had read 0.3 low here)
    assert single == pytest.approx(double, abs=0.01)


def test_colours_outside_srgb_s_gamut_are_scored_as_the_tool_scores_them() -> None:
    """The tool takes the opsin mix of such a colour as zero where it falls below (its
    LinearRGBToXYB): left to go below, its cube root was not a number, nor the score."""
    # Given a photo read as ProPhoto RGB, with blocks of its pure green and blue, which
    # lie outside sRGB's gamut (negative in linear sRGB), and its JPEG
    profile = matrix_profile(prophoto_profile(), grey=False)
    image = photo()
    image.paste((0, 255, 0), (0, 0, 120, 120))
    image.paste((0, 0, 255), (200, 200, 320, 320))
    pixels, output = np.asarray(image), jpeg_pixels(image, 50)

    # When its output is scored through the profile, Then the score is a number
    assert 0.0 < Reference(pixels, profile=profile).score(output) < 100.0


def test_a_large_image_is_compared_on_tiles_spread_over_it() -> None:
    boxes = comparison_boxes(1600, 1200)
    assert len(boxes) == GRID * GRID
    assert all(right - left == TILE and bottom - top == TILE for left, top, right, bottom in boxes)
    # the corners are covered, and every tile is inside the image
    assert (0, 0, TILE, TILE) in boxes
    assert (1600 - TILE, 1200 - TILE, 1600, 1200) in boxes
    assert all(
        left >= 0 and right <= 1600 and top >= 0 and bottom <= 1200
        for left, top, right, bottom in boxes
    )


def test_an_image_of_no_more_pixels_than_the_tiles_is_compared_whole() -> None:
    assert comparison_boxes(384, 384) == [(0, 0, 384, 384)]
    assert comparison_boxes(2000, 60) == [(0, 0, 2000, 60)]


def test_a_long_thin_image_is_compared_whole() -> None:
    # three rows of tiles would cover the same strip three times
    assert comparison_boxes(4000, 100) == [(0, 0, 4000, 100)]


def test_tiles_score_a_large_image_near_its_whole_score() -> None:
    # Given a photo too large to compare whole, and its JPEG at quality 50
    source = photo(1600, 1200, seed=3, shapes=400)
    pixels, output = np.asarray(source), jpeg_pixels(source, 50)

    # When it is scored on its tiles, and whole
    tiled = Reference(pixels).score(output)
    whole = Reference(pixels, tiled=False).score(output)

    # Then the two are within a point
    assert tiled == pytest.approx(whole, abs=1)


def test_an_image_under_8_pixels_a_side_has_no_score() -> None:
    with pytest.raises(ValueError, match="under 8 pixels"):
        Reference(np.zeros((7, 100, 3), dtype=np.uint8))


def test_pixels_of_another_size_are_refused() -> None:
    reference = Reference(np.zeros((64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="Cannot compare"):
        reference.score(np.zeros((64, 32, 3), dtype=np.uint8))
