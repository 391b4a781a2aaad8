"""engine.allocator: the post-load trim reaches glibc's malloc_trim here, and can be turned off."""

from __future__ import annotations

import pytest

from engine.allocator import TRIM_ENV, return_freed_memory, trim_after_load_enabled


def test_malloc_trim_is_called_on_glibc() -> None:
    assert return_freed_memory() is True


def test_the_trim_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRIM_ENV, raising=False)
    assert trim_after_load_enabled()
    monkeypatch.setenv(TRIM_ENV, "0")
    assert not trim_after_load_enabled()
