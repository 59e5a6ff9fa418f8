"""Image signatures for near-duplicate search: a perceptual hash and a small colour thumbnail.

The hash is imagehash's pHash (DCT of a 32x32 grey image, 64 bits): chosen by measuring
imagehash's pHash, dHash, aHash and wHash on re-encoded, resized and trimmed copies of demo images
(``python -m bench.bench_filter --part hashes``). Grey levels alone cannot tell apart two images
that differ only in colour or in a small object on the same background (on the demo world, pHash
at distance 0 already pairs images of different scenes), so a pair within the Hamming distance is
a near-duplicate only if its 16x16 colour thumbnails, blurred to absorb a trim of a few pixels,
are also close. Both signatures are of the image as stored in the shard (after the download's
resize).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from itertools import combinations
from math import comb

import numpy as np

THUMB_SIDE = 16
THUMB_BYTES = THUMB_SIDE * THUMB_SIDE * 3
HASH_BITS = 64


@dataclass(frozen=True)
class Signature:
    """What near-duplicate search knows of one image."""

    phash: int  # 64-bit pHash as an unsigned integer
    thumb: bytes  # THUMB_SIDE x THUMB_SIDE RGB, blurred, uint8


def signature(image_bytes: bytes) -> Signature:
    """pHash and colour thumbnail of encoded image bytes; raises OSError/ValueError if unreadable."""
    import imagehash
    from PIL import Image, ImageFilter

    with Image.open(io.BytesIO(image_bytes)) as img:
        img.draft("RGB", (64, 64))  # JPEG DCT scaling: both signatures need 64 px at most
        rgb = img.convert("RGB")
    bits = imagehash.phash(rgb).hash.reshape(-1)  # (64,) bool, row-major as imagehash prints it
    thumb = rgb.resize((THUMB_SIDE, THUMB_SIDE), Image.BOX).filter(ImageFilter.GaussianBlur(1))
    return Signature(int.from_bytes(np.packbits(bits).tobytes(), "big"), thumb.tobytes())


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes."""
    return (a ^ b).bit_count()


def thumb_diff(a: bytes, b: bytes) -> float:
    """Mean absolute difference (0-255) of two thumbnails."""
    x = np.frombuffer(a, dtype=np.uint8).astype(np.int16)
    y = np.frombuffer(b, dtype=np.uint8).astype(np.int16)
    return float(np.abs(x - y).mean())


def band_edges(bands: int) -> list[tuple[int, int]]:
    """(first bit, end bit) of each band: 64 bits cut into ``bands`` near-equal runs."""
    cuts = [round(i * HASH_BITS / bands) for i in range(bands + 1)]
    return list(zip(cuts, cuts[1:]))


def band_values(phash: int, bands: int) -> list[int]:
    """The bits of each band, as integers (bit 0 is the hash's most significant bit)."""
    out = []
    for lo, hi in band_edges(bands):
        out.append((phash >> (HASH_BITS - hi)) & ((1 << (hi - lo)) - 1))
    return out


def band_keys(phash: int, bands: int, distance: int) -> list[tuple[int, int]]:
    """The LSH keys of a hash: one per set of ``bands - distance`` bands (its index, its bits).

    Two hashes within ``distance`` bits differ in at most ``distance`` bands, so they agree on
    all the bands of at least one such set and share its key: every pair within the distance
    meets in some bucket, and no pair of buckets needs comparing.
    """
    values = band_values(phash, bands)
    widths = [hi - lo for lo, hi in band_edges(bands)]
    keys = []
    for index, combo in enumerate(combinations(range(bands), bands - distance)):
        packed = 0
        for b in combo:
            packed = (packed << widths[b]) | values[b]
        keys.append((index, packed))
    return keys


def combination_rank(combo: tuple[int, ...], n: int) -> int:
    """The position of a sorted combination of ``range(n)`` in ``itertools.combinations`` order."""
    m, rank, prev = len(combo), 0, -1
    for i, c in enumerate(combo):
        rank += sum(comb(n - 1 - j, m - 1 - i) for j in range(prev + 1, c))
        prev = c
    return rank


def first_shared_key(a: int, b: int, bands: int, distance: int) -> int | None:
    """The index of the first key two hashes share (None: none), so that a pair found in several
    buckets is reported by exactly one of them."""
    va, vb = band_values(a, bands), band_values(b, bands)
    equal = [i for i in range(bands) if va[i] == vb[i]]
    keep = bands - distance
    if len(equal) < keep:
        return None
    return combination_rank(tuple(equal[:keep]), bands)


def band_matrix(hashes: np.ndarray, bands: int) -> np.ndarray:
    """(n, bands) band values of n uint64 hashes (as :func:`band_values`, for arrays)."""
    out = np.empty((len(hashes), bands), dtype=np.uint64)
    for b, (lo, hi) in enumerate(band_edges(bands)):
        mask = np.uint64((1 << (hi - lo)) - 1)
        out[:, b] = (hashes >> np.uint64(HASH_BITS - hi)) & mask
    return out


def first_shared_keys(va: np.ndarray, vb: np.ndarray, bands: int, distance: int) -> np.ndarray:
    """:func:`first_shared_key` of many pairs: (P,) key indices from (P, bands) band values,
    -1 where a pair shares no key."""
    keep = bands - distance
    equal = va == vb  # (P, bands)
    count = np.cumsum(equal, axis=1)  # (P, bands) equal bands up to each band
    shared = count[:, -1] >= keep
    # prefix[i][c]: combinations that start, at their i-th member, below band c
    prefix = np.zeros((keep, bands + 1), dtype=np.int64)
    for i in range(keep):
        for c in range(bands):
            prefix[i, c + 1] = prefix[i, c] + comb(bands - 1 - c, keep - 1 - i)
    rank = np.zeros(len(va), dtype=np.int64)
    prev = np.full(len(va), -1, dtype=np.int64)
    for i in range(keep):
        position = np.argmax(equal & (count == i + 1), axis=1)  # the (i+1)-th equal band
        rank += prefix[i, position] - prefix[i, prev + 1]
        prev = position
    return np.where(shared, rank, -1)
