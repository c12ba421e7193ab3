"""CSV out: a header row then one row per record, streamed, safe to open in a spreadsheet.

Formula injection (CWE-1236): a spreadsheet runs a cell that starts with ``=``, ``+``,
``-`` or ``@`` (and some treat a leading tab or carriage return the same way), so a
text cell starting with any of those six characters gets a leading single quote
(``'=HYPERLINK(…)``), which spreadsheets show as text. Numbers we produce ourselves
(ids, prices, quantities) are never text, so they are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

from app.aio import cooperate

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 200


def neutralise(value: Any) -> Any:
    """A cell value that a spreadsheet will not evaluate as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def lines(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The CSV text in chunks: the header row first, then ``ROWS_PER_CHUNK`` rows a chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for count, row in enumerate(rows, 1):
        writer.writerow([neutralise(row.get(column)) for column in columns])
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            cooperate()
    yield buffer.getvalue()
