"""`ImageDeduplication`: one row per group of identical or near-identical images."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
from pydantic import Field

from pixtill.images import ImageError, ImageRef
from pixtill.steps.base import GlobalStep, StepInput
from pixtill.steps.quality.hashing import PerceptualHash, cluster_hashes, perceptual_hash
from pixtill.steps.typing import StepColumns, StepOutput

CLUSTER_COLUMN = "dedup_cluster"
DUPLICATE_COLUMN = "is_duplicate"
HASH_COLUMN = "image_phash"


class ImageDeduplication(GlobalStep):
    """Group rows whose ``image`` is the same picture, and keep one row per group.

    Exact duplicates are found by the sha256 of the image bytes (a repeated image is decoded
    only once); near duplicates by a perceptual hash (``hash``, 64 bits, from the `imagehash`
    library) within ``max_distance`` differing bits (0: identical hashes only; about 4-8 catches
    re-encoded, resized or lightly retouched copies of a photo; ``None`` turns perceptual
    matching off and keeps only exact duplicates).

    Output columns: ``dedup_cluster`` (the position, in this step's input, of the first row of
    the row's group), ``is_duplicate`` (false for the one kept row of each group) and
    ``image_phash`` (the hash as 16 hex digits; ``None`` when the image could not be read: such
    a row is its own group and is kept, with a warning). With ``drop_duplicates`` (the default)
    only the kept rows leave the step; otherwise every row leaves, marked, so that a
    `FilterRows` gate on ``not is_duplicate`` can send the duplicates to a leaf of their own.

    The kept row is the first of its group, or with ``keep="best"`` the one with the highest
    ``score_column`` (lowest with ``higher_is_better=False``; a missing score counts as worst,
    ties go to the earlier row). Only hashes and scores are held while clustering.
    """

    column: str = Field(default="image", description="The image column.")
    hash: PerceptualHash = Field(default="phash", description="imagehash's hash function.")
    max_distance: int | None = Field(
        default=4, ge=0, le=16, description="Hamming distance for near duplicates; None: exact."
    )
    keep: Literal["first", "best"] = Field(default="first", description="Which row to keep.")
    score_column: str | None = Field(default=None, description="Score for keep='best'.")
    higher_is_better: bool = True
    drop_duplicates: bool = Field(default=True, description="Drop the duplicates (else mark).")

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        if self.keep == "best" and not self.score_column:
            raise ValueError(f"step {self.name!r}: keep='best' needs a score_column")

    @property
    def inputs(self) -> StepColumns:
        columns = {self.column: True}
        if self.keep == "best" and self.score_column:
            columns[self.score_column] = True
        return columns

    @property
    def outputs(self) -> StepColumns:
        return [CLUSTER_COLUMN, DUPLICATE_COLUMN, HASH_COLUMN]

    def process(self, inputs: StepInput) -> StepOutput:
        hashes = np.zeros(len(inputs), dtype=np.uint64)
        known = np.zeros(len(inputs), dtype=bool)
        by_content: dict[bytes, int] = {}
        exact_only = self.max_distance is None
        for index, row in enumerate(inputs):
            value = self._hash_row(row, index, by_content, exact_only)
            if value is not None:
                hashes[index], known[index] = value, True
        labels = np.arange(len(inputs), dtype=np.int64)
        positions = np.flatnonzero(known)
        if positions.size:
            clustered = cluster_hashes(hashes[positions], self.max_distance or 0)
            labels[positions] = positions[clustered]
        keepers = self._keepers(inputs, labels)
        out = []
        for index, row in enumerate(inputs):
            duplicate = index not in keepers
            if duplicate and self.drop_duplicates:
                continue
            phash = None if exact_only or not known[index] else f"{int(hashes[index]):016x}"
            out.append(
                {
                    **row,
                    CLUSTER_COLUMN: int(labels[index]),
                    DUPLICATE_COLUMN: duplicate,
                    HASH_COLUMN: phash,
                }
            )
        dropped = len(inputs) - len(keepers)
        self._logger.info(
            "%s: %d rows in %d groups (%d duplicates%s)",
            self.name,
            len(inputs),
            len(keepers),
            dropped,
            " dropped" if self.drop_duplicates else " marked",
        )
        yield out

    def _hash_row(
        self, row: dict[str, Any], index: int, by_content: dict[bytes, int], exact_only: bool
    ) -> int | None:
        """The row's hash (the perceptual one, or the content digest's first 64 bits when only
        exact duplicates are wanted); None, with a warning, if the image cannot be read."""
        try:
            data = ImageRef.from_value(row[self.column]).get_bytes()
            # 16 bytes of sha256 name the content (a collision among 10^9 images: ~1e-20).
            digest = hashlib.sha256(data).digest()[:16]
            if exact_only:
                return int.from_bytes(digest[:8], "big")
            if digest not in by_content:
                # Decoded from the bytes already read: a path is not read twice.
                image = ImageRef.from_value(data).to_pil()
                by_content[digest] = perceptual_hash(image, self.hash)
            return by_content[digest]
        except (ImageError, OSError, ValueError, TypeError) as exc:
            self._logger.warning(
                "step %r: row %d, column %r: cannot read the image (%s); kept as unique",
                self.name,
                index,
                self.column,
                exc,
            )
            return None

    def _keepers(self, rows: list[dict[str, Any]], labels: np.ndarray[Any, Any]) -> set[int]:
        if self.keep == "first" or not self.score_column:
            return {int(label) for label in np.unique(labels)}
        best: dict[int, tuple[float, int]] = {}
        sign = 1.0 if self.higher_is_better else -1.0
        for index, label in enumerate(labels.tolist()):
            score = rows[index].get(self.score_column)
            rank = sign * float(score) if isinstance(score, (int, float)) else float("-inf")
            if label not in best or rank > best[label][0]:
                best[label] = (rank, index)
        return {index for _, index in best.values()}


__all__ = ["CLUSTER_COLUMN", "DUPLICATE_COLUMN", "HASH_COLUMN", "ImageDeduplication"]
