"""Rows as a CSV download: the admin API's usage report and the panel's usage page write the same file."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from starlette.responses import Response


def csv_response(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], filename: str = "usage.csv"
) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
