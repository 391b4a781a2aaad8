"""The core the chat bots share (integrations/common, tantra_bots): pages cut at Discord's limit,
thread conversations forgotten per channel or thread, secrets read from files, attachments typed,
and /healthz answering 200 or 503 over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tantra_bots import ConversationBook, build_input, classify, env, pages, serve_health


def test_pages_cut_at_line_breaks_or_spaces_within_the_limit() -> None:
    text = ("a" * 1500 + "\n") + ("b " * 700)
    cut = pages(text, 2000)
    assert [len(p) for p in cut] == [1500, 1400] and cut[0] == "a" * 1500
    assert pages("x" * 4500, 2000) == ["x" * 2000, "x" * 2000, "x" * 500]  # no break: hard cut
    assert pages("short", 2000) == ["short"]


def test_the_book_forgets_a_channel_or_one_thread() -> None:
    book = ConversationBook("m")
    for thread in ("1", "2"):
        book.put(("g", "c", thread), "conv_" + thread)
    book.put(("g", "other", "3"), "conv_3")
    book.choose_model("g", "c", "big")
    assert book.model("g", "c") == "big" and book.model("g", "other") == "m"
    assert book.forget("g", "c", "1") == 1 and book.get(("g", "c", "2")) == "conv_2"
    assert book.forget("g", "c") == 1 and book.get(("g", "other", "3")) == "conv_3"


def test_a_secret_file_wins_over_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    monkeypatch.setenv("DISCORD_TOKEN", "from-env")
    assert env("DISCORD_TOKEN") == "from-env"
    monkeypatch.setenv("DISCORD_TOKEN_FILE", str(secret))
    assert env("DISCORD_TOKEN") == "from-file"
    assert env("NOT_SET_ANYWHERE", "default") == "default"


def test_attachment_kinds() -> None:
    assert classify("a.png", None) == "image" and classify("x", "image/webp") == "image"
    assert classify("r.pdf", None) == "pdf" and classify("v.ogg", "audio/ogg") == "audio"
    assert classify("n.md", None) == "text" and classify("d.json", None) == "text"
    assert classify("z.zip", None) is None and classify("m.mp4", "video/mp4") is None
    assert build_input("hi", []) == "hi"


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_healthz_says_whether_the_bot_is_connected() -> None:
    connected = [True]
    server = serve_health(lambda: connected[0], 0, host="127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert _get(base + "/healthz") == (200, {"status": "ok", "connected": True})
        connected[0] = False
        assert _get(base + "/healthz") == (503, {"status": "disconnected", "connected": False})
        assert _get(base + "/nothing")[0] == 404
    finally:
        server.shutdown()
