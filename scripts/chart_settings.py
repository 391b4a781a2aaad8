"""Write helm/tantra/files/settings.txt: the gateway's Settings field names, one a line.

    python scripts/chart_settings.py

The chart refuses a `gateway.settings` name not in that file at render time (a misspelt setting
would otherwise be ignored by the gateway); tests/deploy/test_chart_checks.py fails when the file
and gateway/settings/schema.py differ, and names this command.
"""

from __future__ import annotations

from pathlib import Path

from gateway.settings.schema import Settings

TARGET = Path(__file__).resolve().parents[1] / "helm" / "tantra" / "files" / "settings.txt"


def listing() -> str:
    return "".join(f"{name}\n" for name in sorted(Settings.model_fields))


if __name__ == "__main__":
    TARGET.write_text(listing())
    print(f"wrote {len(Settings.model_fields)} names to {TARGET}")
