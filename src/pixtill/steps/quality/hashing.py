"""Image hashes and the clustering of near-identical ones: the engine of `ImageDeduplication`.

Exact duplicates share the sha256 of their bytes. Near duplicates (re-encoded, resized, lightly
edited copies) have perceptual hashes (`imagehash`: pHash by default, a 64-bit DCT signature)
within a small Hamming distance. `cluster_hashes` finds every pair within ``max_distance`` without
comparing all pairs, by the pigeonhole principle of multi-index hashing (Norouzi, Punjani and
Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012): split the 64 bits
into ``max_distance + 1`` bands; two hashes within ``max_distance`` bits agree exactly on at
least one band, so only hashes that share a band value are compared. Pairs are joined into
clusters by connected components (single linkage: A~B and B~C put A, B, C together).

Memory: 8 bytes per row for the hashes plus the candidate pairs; no image is kept.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

PerceptualHash = Literal["phash", "dhash", "average_hash", "whash"]
HASH_BITS = 64


def perceptual_hash(image: Any, method: PerceptualHash = "phash") -> int:
    """The 64-bit perceptual hash of a PIL image as an int (``imagehash`` with hash size 8).

    Raises ImportError naming the extra when ``imagehash`` is not installed.
    """
    try:
        import imagehash
    except ImportError as exc:  # pragma: no cover - the quality extra installs it
        raise ImportError(
            f"near-duplicate detection needs imagehash: pip install 'pixtill[quality]' ({exc})"
        ) from exc
    bits = getattr(imagehash, method)(image, hash_size=8).hash.flatten()
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def _popcount(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    return np.bitwise_count(values).astype(np.int64)


def _band_pairs(
    keys: npt.NDArray[np.uint64], hashes: npt.NDArray[np.uint64], max_distance: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Index pairs (i, j) with equal ``keys`` whose ``hashes`` differ in <= max_distance bits.

    Sorted by key, equal keys form runs; the s-th step compares every member with the member s
    places later in its run, all runs at once, so the Python loop runs (longest run) times and
    the total work is the number of candidate pairs.
    """
    order = np.argsort(keys, kind="stable").astype(np.int64)
    sorted_keys = keys[order]
    n = order.size
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    run_end = np.repeat(np.r_[starts[1:], n], np.diff(np.r_[starts, n]))
    candidates = np.flatnonzero(run_end - np.arange(n) > 1)
    sorted_hashes = hashes[order]
    firsts, seconds = [], []
    step = 1
    while candidates.size:
        other = candidates + step
        close = _popcount(sorted_hashes[candidates] ^ sorted_hashes[other]) <= max_distance
        firsts.append(order[candidates[close]])
        seconds.append(order[other[close]])
        step += 1
        candidates = candidates[candidates + step < run_end[candidates]]
    if not firsts:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(firsts), np.concatenate(seconds)


def cluster_hashes(hashes: npt.ArrayLike, max_distance: int) -> npt.NDArray[np.int64]:
    """Cluster 64-bit hashes: per input, the position of its cluster's first member.

    ``hashes`` is a sequence of unsigned 64-bit ints; two are joined when their Hamming distance
    is at most ``max_distance`` (0..16; 0 joins only equal hashes), transitively. Returns an
    int64 array of the same length; ``labels[i] == i`` for the first member of each cluster.
    """
    if not 0 <= max_distance <= 16:
        raise ValueError(f"max_distance must be between 0 and 16 bits, got {max_distance}")
    values = np.asarray(hashes, dtype=np.uint64)
    if values.size == 0:
        return np.empty(0, dtype=np.int64)
    unique, first_index, inverse = np.unique(values, return_index=True, return_inverse=True)
    n = unique.size
    firsts: list[npt.NDArray[np.int64]] = []
    seconds: list[npt.NDArray[np.int64]] = []
    if max_distance > 0 and n > 1:
        bands = max_distance + 1
        edges = np.linspace(0, HASH_BITS, bands + 1).astype(int)
        for low, high in itertools.pairwise(edges):
            mask = np.uint64((1 << int(high - low)) - 1)
            keys = (unique >> np.uint64(low)) & mask
            a, b = _band_pairs(keys, unique, max_distance)
            firsts.append(a)
            seconds.append(b)
    if firsts:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        rows, cols = np.concatenate(firsts), np.concatenate(seconds)
        graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n, n))
        _, component = connected_components(graph, directed=False)
    else:
        component = np.arange(n)
    # A cluster is named by the earliest input position among its members.
    earliest = np.full(int(component.max()) + 1, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(earliest, component, first_index.astype(np.int64))
    labels: npt.NDArray[np.int64] = earliest[component[inverse.reshape(-1)]]
    return labels


__all__ = ["PerceptualHash", "cluster_hashes", "perceptual_hash"]
