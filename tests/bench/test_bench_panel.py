"""The panel bench (bench/panel.py) must not rot: a small store (2,000 ledger rows), every page once
through a real gateway with real Redis and SQLite, each answering 200, and its table and plot written
(no timing asserted; the 100k-row run is `python -m bench.panel`)."""

from __future__ import annotations

from pathlib import Path

from bench import panel


def test_a_small_run_answers_every_page_and_writes_its_report(tmp_path: Path) -> None:
    result = panel.run(rows=2000, requests=1)
    assert [page["page"] for page in result["pages"]] == list(panel.PAGES)
    assert all(page["status"] == 200 for page in result["pages"]), result["pages"]
    assert all(page["p50_ms"] > 0 for page in result["pages"])
    assert panel.main(["--rows", "500", "--requests", "1", "--out", str(tmp_path)]) in (0, 1)
    assert {p.name for p in tmp_path.iterdir()} == {"panel.json", "panel.md", "panel.png"}
    assert "| page | status |" in (tmp_path / "panel.md").read_text()
