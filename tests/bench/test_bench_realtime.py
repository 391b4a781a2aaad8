"""The realtime bench row (bench/realtime.py) must not rot: two spoken turns through a real gateway
on the session's chat engine, with whisper.cpp and eSpeak NG, each turn's parts timed alone, and
its table and plot written (no timing asserted; the real run is `python -m bench.realtime`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import realtime
from bench.procs import usable_cpus
from tests.audio_samples import needs_espeak

pytestmark = [pytest.mark.engine, needs_espeak]


def test_two_turns_are_timed_through_the_gateway_and_by_their_parts(
    tmp_path: Path, engine_url: str, whisper_model: Path
) -> None:
    cpus = usable_cpus()
    plan = realtime.RealtimePlan(turns=2, warmup=0, max_tokens=6)
    result = realtime.measure(tmp_path / "logs", cpus, cpus, plan, engine_url=engine_url)
    assert result["turns"] == 2 and result["errors"] == 0, result
    assert result["spoken"] >= 1, result  # a random answer may have nothing to say, rarely twice
    parts = result["parts_p50_s"]
    assert set(parts) == {"vad_s", "transcribe_s", "first_sentence_s", "speak_s"}
    assert all(value > 0 for value in parts.values())
    stages = result["stages"]
    assert set(stages) == {"heard", "answered", "total"}
    # The answer cannot be heard before the turn is transcribed.
    assert stages["total"]["through_p50_s"] > stages["heard"]["through_p50_s"] > 0
    assert all(row["ratio_p50"] > 0 for row in stages.values())
    realtime.write(result, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"realtime.json", "realtime.md", "realtime.png"}
    assert "end of speech to first audio byte" in (tmp_path / "out" / "realtime.md").read_text()
