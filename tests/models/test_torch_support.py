"""`dtype_keyword`: the one place that knows which ``from_pretrained`` keyword carries the dtype."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest

from pixtill.models.torch_support import dtype_keyword


def _fake(monkeypatch: pytest.MonkeyPatch, name: str, **attributes: object) -> None:
    module = ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize(("version", "keyword"), [("4.55.4", "torch_dtype"), ("4.56.0", "dtype")])
def test_transformers_keyword_follows_the_release_that_renamed_it(
    monkeypatch: pytest.MonkeyPatch, version: str, keyword: str
) -> None:
    _fake(monkeypatch, "transformers", __version__=version)
    assert dtype_keyword("transformers") == keyword


@pytest.mark.parametrize(("renamed", "keyword"), [(False, "torch_dtype"), (True, "dtype")])
def test_diffusers_keyword_follows_the_release_that_renamed_it(
    monkeypatch: pytest.MonkeyPatch, renamed: bool, keyword: str
) -> None:
    attributes = {"_resolve_dtype": lambda *_: None} if renamed else {}
    _fake(monkeypatch, "diffusers.utils.deprecation_utils", **attributes)
    assert dtype_keyword("diffusers") == keyword


def test_a_missing_library_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes the import fail
    with pytest.raises(ImportError, match="pixtill\\[local\\]"):
        dtype_keyword("transformers")


def test_an_unknown_library_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown library 'timm'"):
        dtype_keyword("timm")  # type: ignore[arg-type]
