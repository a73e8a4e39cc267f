"""What a loader says when `datasets` cannot read its files: the parser's own words (which
`datasets` hides under "An error occurred while generating the dataset") and the files."""

from __future__ import annotations

__all__ = ["read_failure"]


def read_failure(exc: BaseException, filetype: str, files: list[str]) -> str:
    """``cannot read <filetype> rows from <files>: <cause>`` for ``exc``, a
    ``DatasetGenerationError`` (its cause is the parser's error, e.g. "JSON parse error:
    Missing a comma ... in row 1") or the bare ``StopIteration`` `datasets` raises when there
    is no data at all."""
    shown = ", ".join(repr(f) for f in files[:3])
    if len(files) > 3:
        shown += f" and {len(files) - 3} more"
    if isinstance(exc, StopIteration):
        cause = "no rows (the files are empty, or no file matches)"
    else:
        inner = exc.__cause__ or exc.__context__ or exc
        cause = f"{type(inner).__name__}: {' '.join(str(inner).split())}"
    return f"cannot read {filetype} rows from {shown}: {cause}"
