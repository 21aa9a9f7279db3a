"""How alike an output looks to its source: SSIMULACRA2 (Jon Sneyers, Cloudinary, 2022-23),
0 to 100, where 90 is hard to tell from the source, 70 is "high" web quality and 50
"medium". The perceptual mode's search (quality.py) encodes until the output reaches a
target score, and reports it.

The two finest scales are measured on a mosaic of 3 x 3 tiles of 128 x 128 pixels cut at
the same places from both images, at full resolution; the coarser ones (1:4 to 1:16: the
model weighs nothing at 1:32) on the whole images, reduced. Compression artefacts are a
matter of pixels: downscaled images say a JPEG at quality 50 scores 81-90 where the whole
image scores 67-70. The tiles alone missed the worst areas (up to 10 points high); with
1:4 and coarser taken whole, the score is within -0.2 and +0.7 of the whole image's on the
benchmark's photos (BENCHMARKS.md, "Perceptual quality") at a fraction of the cost. An
image of at most nine tiles' pixels, or narrower than a tile, is compared whole.

The metric as its reference tool (libjxl's tools/ssimulacra2) computes it: sRGB (or what
the image's ICC profile says, where icc.py reads it) to linear light, to the XYB colour
space, then at up to six scales (each half the last) an SSIM map and two edge maps
(artefacts: edges the source does not have; detail lost: edges it has that the output
smooths), each averaged as a 1-norm and a 4-norm per channel, weighted by the published
model. Its blur, its borders, its halvings and the order it reads the weights in on small
images are the tool's: a whole image scores what the tool prints, within 0.03 points on 48
pairs from 9 x 300 to 512 x 512 and banners of 2000 x 100 at qualities 30 and 60, tiled
photos within -0.2 and +0.7. Where source and output are nearly the same (large photos at
quality 95, a flat page with one pixel changed) this reads up to 0.5 and 1.5 points above
the tool, whose recursive blur in float32 gathers rounding error down each column, which
its SSIM term then takes for a difference (BENCHMARKS.md, "The reference tool's own
score"). The blurs are OpenCV's (two milliseconds for nine planes of 384 x 384), the rest
OpenCV and numpy, in place where it can be, on 147,456 pixels.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from imaging.icc import SRGB_LINEAR, MatrixProfile

Pixels = npt.NDArray[np.uint8]  # height x width x 3, sRGB or as their profile says
Plane = npt.NDArray[np.float32]  # height x width
Interleaved = npt.NDArray[np.float32]  # height x width x 3

# Which rules the score follows: outputs chosen or scored under others are not re-used
# (processing/reuse.py). 3, since 2026-11-29: an image with a matrix ICC profile (Display
# P3, Adobe RGB, a grey one's tone curve) read through it, as the tool reads it (icc.py);
# read as sRGB, a P3 photo scored 0.6-4.3 points off, linear grey up to 14. 2, since
# 2026-11-27: libjxl's own tool's. 1, unnumbered: the pure-Python port's, which scored a
# 60 x 60 thumbnail 31 points above the tool (tests/imaging/test_score.py).
VERSION: Final = 3
TILE: Final = 128
GRID: Final = 3
SCALES: Final = 6
# Scales measured on the tiles (1:1, 1:2); the coarser ones (1:4 to 1:32) on the whole
# image, reduced: what they weigh is the image's broad areas, which tiles cut apart. Taking
# 1:4 from the tiles too was 30% cheaper and read up to 10 points high.
TILED_SCALES: Final = 2
# An image must have this many pixels a side, and a scale this many for another to follow.
SMALLEST_SIDE: Final = 8
# The reference tool blurs with libjxl's recursive Gaussian of sigma 1.5 (Charalampidis'
# truncated cosines), whose impulse response is these nine taps, centre first: read off
# it by running its recursion on a unit impulse (2026-11-27). OpenCV's 11-tap Gaussian of
# the same sigma read 0.0-0.7 points above the tool's scores on 48 pairs; these, within
# 0.03 (BENCHMARKS.md, "The reference tool's own score").
_BLUR_TAPS: Final = (
    0.26462110548819834,
    0.21292859201042197,
    0.10933537277746001,
    0.03601111465836412,
    0.009414367809653492,
)
_BLUR_KERNEL: Final = np.array(_BLUR_TAPS[:0:-1] + _BLUR_TAPS, dtype=np.float32).reshape(-1, 1)
_C2: Final = 0.0009
# Pixels converted to linear light at once for the coarse scales (_linear_reduced).
_BAND_PIXELS: Final = 256 * 1024

# Linear light from 8-bit sRGB, one entry per value.
_LINEAR: Final = SRGB_LINEAR.astype(np.float32)
# The opsin absorbance matrix of JPEG XL's XYB, with its bias as a fourth column.
_BIAS: Final = 0.0037930732552754493
_OPSIN: Final = np.array(
    [
        [0.30, 0.622, 0.078, _BIAS],
        [0.23, 0.692, 0.078, _BIAS],
        [0.24342268924547819, 0.20476744424496821, 0.55180986651155360, _BIAS],
    ],
    dtype=np.float32,
)
# From the cube roots (l, m, s) to SSIMULACRA2's positive XYB in one affine step:
# X = 14 * (l - m) / 2 + 0.42, Y = (l + m) / 2 + 0.01, B = s - Y + 0.55, each cube root
# taken less the cube root of the bias.
_CBRT_BIAS: Final = float(np.cbrt(_BIAS))
_TO_XYB: Final = np.array(
    [
        [7.0, -7.0, 0.0, 0.42],
        [0.5, 0.5, 0.0, 0.01 - _CBRT_BIAS],
        [-0.5, -0.5, 1.0, 0.55],
    ],
    dtype=np.float32,
)
# The published model's 108 weights, in its order: channel (X, Y, B), scale (1:1 to
# 1:32), norm (1, 4), then SSIM, artefact, detail lost.
# fmt: off
_WEIGHTS: Final = np.array(
    [
       0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0,
       0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271,
       0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0, 1.8422455520539298,
       11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
       1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833, 0.0,
       0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063,
       0.0, 0.0, 0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0,
       17.445833984131262, 0.0006235601634041466, 0.0, 0.0, 6.683678146179332,
       0.00037724407979611296, 1.027889937768264, 225.20515300849274, 0.0, 0.0,
       19.213238186143016, 0.0011401524586618361, 0.001237755635509985, 176.39317598450694, 0.0,
       0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408, 0.0, 0.0, 0.0,
       34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
       0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747, 0.0,
       0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0004179171803251336,
       0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862,
       23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682, 0.9834382792465353,
       0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0,
       0.0005130064588990679, 0.0, 0.00010854057858411537,
    ]
).reshape(3, SCALES, 2, 3)
# fmt: on
# Terms weighted under this are left out: the weights run from 0.0001 to 225, and those
# under 0.01 together move a score by less than 0.1 (tests/imaging/test_score.py). What is
# left of the six scales' model needs only Y at full size (a third of the work) and
# nothing at 1:32.
_NEGLIGIBLE: Final = 0.01

# Images are compared one at a time per thread: OpenCV's own threads would only contend
# with the worker's.
cv2.setNumThreads(1)


def comparison_boxes(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Where the tiles are cut, as (left, top, right, bottom): a 3 x 3 grid spread over the
    image, or the whole image where it has no more pixels than the tiles would, or a side
    shorter than a tile (the tiles would cover the same strip three times)."""
    if width * height <= GRID * GRID * TILE * TILE or min(width, height) < TILE:
        return [(0, 0, width, height)]
    tile_w, tile_h = TILE, TILE
    lefts = np.linspace(0, width - tile_w, GRID).astype(int)
    tops = np.linspace(0, height - tile_h, GRID).astype(int)
    return [
        (int(left), int(top), int(left) + tile_w, int(top) + tile_h)
        for top in tops
        for left in lefts
    ]


def comparison_pixels(pixels: Pixels, boxes: list[tuple[int, int, int, int]]) -> Pixels:
    """The tiles of pixels (an image's RGB, height x width x 3) laid side by side."""
    if len(boxes) == 1:
        left, top, right, bottom = boxes[0]
        return np.ascontiguousarray(pixels[top:bottom, left:right])
    # boxes run row by row: the row's tiles are every GRID-th from its first
    rows = [
        np.concatenate(
            [
                pixels[top:bottom, left:right]
                for left, top, right, bottom in boxes[row * GRID : (row + 1) * GRID]
            ],
            axis=1,
        )
        for row in range(GRID)
    ]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


@dataclass(frozen=True)
class _SourceScale:
    xyb: list[Plane]  # the channels this scale uses
    mean: list[Plane]  # blurred
    variance: list[Plane]  # blurred square less the squared mean
    deviation: list[Plane]  # |xyb - mean|
    per_edge: list[Plane]  # 1 / (1 + deviation), to divide the output's edges by


@dataclass(frozen=True)
class _Model:
    """The published model's weights as they apply to an image of so many scales:
    weights, channel x scale x norm (1, 4) x kind (SSIM, artefact, detail lost), those
    under _NEGLIGIBLE as zero; channels, per scale, those (0 X, 1 Y, 2 B) with a term
    left; and the scales worth computing (the last ones may have none)."""

    weights: npt.NDArray[np.float64]
    channels: list[npt.NDArray[np.intp]]
    scales: int

    @classmethod
    def of(cls, width: int, height: int) -> "_Model":
        """The model for an image of width x height, compared whole: the reference tool
        (libjxl's tools/ssimulacra2) makes one more scale while the last has 8 pixels a
        side, so six from 113 pixels up, and reads the 108 weights in order over the
        scales it made. Under six, each channel's weights start where the last channel's
        ended, not at the model's own places; done the same here, so that every score is
        the one the tool prints (a 100 x 100 thumbnail's differed by 27 points)."""
        scales = 1
        while scales < SCALES and min(width, height) >= SMALLEST_SIDE:
            width, height = -(-width // 2), -(-height // 2)
            scales += 1
        model = _WEIGHTS.reshape(-1)[: 3 * scales * 2 * 3].reshape(3, scales, 2, 3)
        weights = np.where(model >= _NEGLIGIBLE, model, 0.0)
        channels = [np.flatnonzero(weights[:, scale].any(axis=(1, 2))) for scale in range(scales)]
        worth = max(scale for scale in range(scales) if channels[scale].size) + 1
        return cls(weights, channels[:worth], worth)


@dataclass(frozen=True)
class _Reading:
    """How pixels become the opsin model's mix: each value's linear light (a lookup table,
    one channel or three), then the opsin matrix with its bias. A profile's matrix to
    linear sRGB is folded into the opsin one; where it may mix a colour outside sRGB's
    gamut below zero, the mix is taken as zero there, as the tool does (its
    LinearRGBToXYB)."""

    linear: npt.NDArray[np.float32]
    opsin: npt.NDArray[np.float32]
    clamped: bool

    @classmethod
    def of(cls, profile: MatrixProfile | None) -> "_Reading":
        if profile is None:
            return cls(_LINEAR, _OPSIN, clamped=False)
        opsin = np.concatenate([_OPSIN[:, :3] @ profile.to_srgb, _OPSIN[:, 3:]], axis=1)
        curves = profile.curves
        # One table where the channels share a curve (most profiles: P3, Adobe RGB, grey):
        # OpenCV's lookup with a table a channel took 6.2 ms on 1600 x 1200, with one 4.2.
        if (curves == curves[:, :1]).all():
            linear = np.ascontiguousarray(curves[:, 0], dtype=np.float32)
        else:
            linear = np.ascontiguousarray(curves.reshape(1, 256, 3), dtype=np.float32)
        return cls(linear, opsin.astype(np.float32), clamped=bool((opsin[:, :3] < 0).any()))


class Reference:
    """A source's pixels (RGB, height x width x 3), prepared once to score any number of
    outputs of the same size against them; tiled=False compares whole images at every
    scale (seconds for a large photo: for measuring the tiles' error). profile: how the
    pixels, the source's and every output's, are read to linear sRGB (icc.py), None for
    sRGB; outputs carry the profile their source's pixels have (encoders.py)."""

    def __init__(
        self, pixels: Pixels, *, tiled: bool = True, profile: MatrixProfile | None = None
    ) -> None:
        if min(pixels.shape[0], pixels.shape[1]) < SMALLEST_SIDE:
            raise ValueError("An image under 8 pixels a side has no SSIMULACRA2 score.")
        self.shape = pixels.shape
        self._reading = _Reading.of(profile)
        height, width = pixels.shape[0], pixels.shape[1]
        self._boxes = comparison_boxes(width, height) if tiled else [(0, 0, width, height)]
        # Tiles are cut only from images of 128 pixels a side and more: six scales.
        self._model = _Model.of(width, height)
        self._scales: list[_SourceScale] = []
        for channels, linear in zip(self._model.channels, self._pyramid(pixels), strict=True):
            xyb = _xyb(linear, channels, self._reading)
            mean = [_blur(plane) for plane in xyb]
            deviation = [_float32(cv2.absdiff(x, m)) for x, m in zip(xyb, mean, strict=True)]
            self._scales.append(
                _SourceScale(
                    xyb=xyb,
                    mean=mean,
                    variance=[_variance(x, m) for x, m in zip(xyb, mean, strict=True)],
                    deviation=deviation,
                    per_edge=[_float32(1.0 / (1.0 + d)) for d in deviation],
                )
            )

    def score(self, pixels: Pixels) -> float:
        """The SSIMULACRA2 score of pixels (an output's, the same shape) against the source."""
        if pixels.shape != self.shape:
            raise ValueError(f"Cannot compare {pixels.shape} pixels with {self.shape}.")
        total = 0.0
        model = self._model
        pyramid = zip(self._scales, self._pyramid(pixels), strict=True)
        for scale, (source, linear) in enumerate(pyramid):
            channels = model.channels[scale]
            xyb = _xyb(linear, channels, self._reading)
            for index, channel in enumerate(channels):
                total += _channel_error(model.weights[channel, scale], xyb[index], source, index)
        return _from_error(total)

    def _pyramid(self, pixels: Pixels) -> Iterator[Interleaved]:
        """The image in linear light at each scale the model uses, each half the last,
        rounded up: the finest from the tiles, the coarser from the whole image."""
        whole = len(self._boxes) == 1
        table = self._reading.linear
        linear = _linear(comparison_pixels(pixels, self._boxes) if not whole else pixels, table)
        for scale in range(self._model.scales):
            if scale == TILED_SCALES and not whole:
                linear = _linear_reduced(pixels, 2**TILED_SCALES, table)
            elif scale:
                linear = _reduced(linear, 2)
            yield linear


def _channel_error(
    weights: npt.NDArray[np.float64], xyb: Plane, source: _SourceScale, index: int
) -> float:
    """One channel's weighted errors at one scale; weights is norm (1, 4) x kind. The maps
    are made in place, a few passes over the plane each: at 147,456 pixels every pass
    counts."""
    mean = _blur(xyb)
    # (1 + |xyb - mean|) / (1 + |source's xyb - its mean|) - 1: edges the output has more
    # of (artefacts, above zero) or fewer (detail lost, below).
    edge = cv2.absdiff(xyb, mean)
    cv2.subtract(edge, source.deviation[index], dst=edge)
    cv2.multiply(edge, source.per_edge[index], dst=edge)
    error = 0.0
    if weights[:, 0].any():
        error += _norms(weights[:, 0], _ssim_error(xyb, mean, source, index))
    if weights[:, 1].any():
        error += _norms(weights[:, 1], np.maximum(edge, 0.0))
    if weights[:, 2].any():
        error += _norms(weights[:, 2], np.minimum(edge, 0.0, out=edge))
    return error


def _ssim_error(xyb: Plane, mean: Plane, source: _SourceScale, index: int) -> Plane:
    """1 - SSIM as SSIMULACRA2 has it, never below zero: 1 - (1 - mean_diff^2) (2
    covariance + C2) / (source variance + variance + C2), no luminance denominator.

    Written as mean_diff^2 + (1 - mean_diff^2) D / (source variance + variance + C2),
    where D = source variance + variance - 2 covariance = blur((xyb - source)^2) -
    mean_diff^2: the same in exact arithmetic, and in float32 D keeps its precision.
    Taken as the difference of blurred squares of values of 0.5 to 0.9, it lost most of
    it where the variances are tiny (a product on white): the noise, clipped at zero,
    moved scores by up to 0.8."""
    mean_diff = cv2.subtract(source.mean[index], mean)
    cv2.multiply(mean_diff, mean_diff, dst=mean_diff)
    difference = cv2.subtract(xyb, source.xyb[index])
    difference_variance = _blur(_float32(cv2.multiply(difference, difference, dst=difference)))
    cv2.subtract(difference_variance, mean_diff, dst=difference_variance)
    denominator = _variance(xyb, mean)
    cv2.add(denominator, source.variance[index], dst=denominator)
    np.add(denominator, _C2, out=denominator)
    cv2.divide(difference_variance, denominator, dst=difference_variance)
    # D / denominator x (1 - mean_diff^2) + mean_diff^2
    cv2.multiply(difference_variance, mean_diff, dst=denominator)
    cv2.subtract(difference_variance, denominator, dst=difference_variance)
    cv2.add(difference_variance, mean_diff, dst=difference_variance)
    return np.maximum(difference_variance, 0.0, out=difference_variance)


def _variance(plane: Plane, mean: Plane) -> Plane:
    """The blurred square less the squared mean (mean: the plane blurred)."""
    variance = _blur(_float32(cv2.multiply(plane, plane)))
    return _float32(cv2.subtract(variance, cv2.multiply(mean, mean), dst=variance))


def _norms(weights: npt.NDArray[np.float64], errors: Plane) -> float:
    """The 1-norm and 4-norm of the map's errors on one side of zero (errors holds them
    with the other side's set to zero, and is squared in place), weighted."""
    one = abs(cv2.mean(errors)[0])
    cv2.multiply(errors, errors, dst=errors)
    # the mean of the fourth powers, from the 2-norm of the squares
    four = math.sqrt(cv2.norm(errors, cv2.NORM_L2)) / errors.size**0.25
    return float(weights[0] * one + weights[1] * four)


def _linear(pixels: Pixels, table: npt.NDArray[np.float32]) -> Interleaved:
    """Linear light, interleaved as pixels are (table: _Reading.linear)."""
    return np.asarray(cv2.LUT(pixels, table), dtype=np.float32)


def _xyb(linear: Interleaved, channels: npt.NDArray[np.intp], reading: _Reading) -> list[Plane]:
    mixed = cv2.transform(linear, reading.opsin)
    if reading.clamped:
        np.maximum(mixed, 0.0, out=mixed)  # its cube root below comes out 0: exp(-inf)
    # Otherwise never below the bias: linear light is not negative, nor are the matrix's
    # entries (nor, in most profiles, those of the matrix folded in: P3's, Adobe RGB's).
    # The cube root as exp(log(x) / 3): OpenCV's exp and log are vectorised on every x86
    # CPU, numpy's cbrt only where it has AVX-512 (on AVX2 it calls libm once a value:
    # 7.1 ms for a 384 x 384 image), and OpenCV's pow(x, 1/3) takes 1.1 ms; these, 0.4.
    cv2.log(mixed, mixed)
    np.multiply(mixed, np.float32(1 / 3), out=mixed)
    cv2.exp(mixed, mixed)
    xyb = cv2.transform(mixed, _TO_XYB)
    # Only the planes a term uses (at 1:1, Y alone), copied out: cv2.split made all three.
    return [np.ascontiguousarray(xyb[..., channel]) for channel in channels]


def _blur(plane: Plane) -> Plane:
    """The Gaussian blur as the reference tool does it at the borders: zeros beyond every
    edge, so one separable filter does both passes (as fast as two calls: 28 ms a
    reference and two scores of typical photos either way). Following the pure-Python
    port, which mirrors the image left and right, with an 11-tap kernel, this read 0.6 to
    2.2 points under the tool on 384 and 512 pixel photos, where at 1:16 and 1:32 the
    borders are much of the image."""
    blurred = cv2.sepFilter2D(plane, -1, _BLUR_KERNEL, _BLUR_KERNEL, borderType=cv2.BORDER_CONSTANT)
    return _float32(blurred)


def _float32(array: npt.NDArray[np.generic]) -> Plane:
    """An OpenCV result as the float32 array it is (no copy)."""
    return np.asarray(array, dtype=np.float32)


def _linear_reduced(pixels: Pixels, factor: int, table: npt.NDArray[np.float32]) -> Interleaved:
    """pixels in linear light (table: _Reading.linear) reduced factor times (_reduced),
    converted a band of rows at a time: the whole image in linear light would take 12
    bytes a pixel (600 MB for a 50 MP photo), the bands a few megabytes. A band's rows are
    a multiple of factor, so only the image's last band has a last row to repeat."""
    rows = factor * max(1, _BAND_PIXELS // max(1, pixels.shape[1] * factor))
    bands = [
        _reduced(_linear(pixels[top : top + rows], table), factor)
        for top in range(0, pixels.shape[0], rows)
    ]
    return np.concatenate(bands, axis=0)


def _reduced(linear: Interleaved, factor: int) -> Interleaved:
    """linear (in linear light) reduced factor times (a power of two) as the reference
    tool reduces it, by halvings: each 2 x 2 block averaged, a side of odd length rounded
    up by repeating its last row or column. Where factor divides both sides, that is each
    factor x factor block averaged, in one pass."""
    height, width = linear.shape[0], linear.shape[1]
    if height % factor or width % factor:
        if factor > 2:
            return _reduced(_reduced(linear, 2), factor // 2)
        linear = _float32(
            cv2.copyMakeBorder(linear, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)
        )
        height, width = linear.shape[0], linear.shape[1]
    reduced = cv2.resize(linear, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    return _float32(reduced)


def _from_error(weighted: float) -> float:
    """The published model's mapping of the weighted errors to a score out of 100."""
    error = weighted * 0.9562382616834844
    error = (
        2.326765642916932 * error
        - 0.020884521182843837 * error * error
        + 6.248496625763138e-05 * error * error * error
    )
    if error <= 0.0:
        return 100.0
    return float(100.0 - 10.0 * error**0.6276336467831387)
