"""Import files as streams of rows, and the fast per-row validation.

Parsers yield plain dicts (one per data row) from a text stream and never hold the
whole file. Validation is plain Python (no marshmallow per row): it must keep up
with the database. Its rules are ``app.rules``, which ``ItemInputSchema`` uses too.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from app import rules
from app.rules import ITEM_FIELDS
from app.services.names import NameHashes

# What the API's own representations carry but an import may not set: ignored, so an
# exported file can be imported again (as the JSON API ignores them in bodies).
READ_ONLY = frozenset({"id", "store_id", "owner", "item_count", "created_at", "updated_at"})
REQUIRED = ("name", "price")
VALUE_LIMIT = 200
FORMATS = ("csv", "json", "ndjson")

ITEM_FIELD_SET = frozenset(ITEM_FIELDS)
# An item (validated): name, price (a plain decimal string, at most 2 places), quantity,
# sku, description.
Item = tuple[str, str, int, str | None, str | None]
# What nearly every row of a real file looks like: checked by two regexes, no Decimal.
# ASCII digits only: the price string goes to the database as written.
_PLAIN_PRICE = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,2})?")
_PLAIN_QUANTITY = re.compile(r"[0-9]{1,9}")


class FileError(Exception):
    """The file as a whole cannot be imported (encoding, header, malformed JSON)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(slots=True)
class RowError:
    row: int
    field: str
    message: str
    value: str | None


# --- parsers --------------------------------------------------------------------------


def parse(text: TextIO, file_format: str) -> Iterator[dict[str, Any] | RowError]:
    """Data rows of ``text`` in order: a dict per row, or a ``RowError`` for a row that
    cannot even be read (an NDJSON line that is not JSON). Raises ``FileError``."""
    try:
        if file_format == "csv":
            yield from _csv_rows(text)
        elif file_format == "json":
            yield from _json_array(text)
        else:
            yield from _ndjson_rows(text)
    except UnicodeDecodeError as exc:
        raise FileError(f"The file is not valid UTF-8 (byte offset about {exc.start}).") from exc


def csv_columns(header: list[str]) -> list[str | None]:
    """Column names from a CSV header; ``None`` marks an ignored (read-only) column."""
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in ITEM_FIELDS and n not in READ_ONLY]
    if unknown:
        raise FileError(
            f"Unknown column(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ITEM_FIELDS)}."
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FileError(f"Column(s) {', '.join(map(repr, twice))} appear more than once.")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise FileError(f"Missing required column(s): {', '.join(missing)}.")
    return [n if n in ITEM_FIELDS else None for n in names]


def _csv_rows(text: TextIO) -> Iterator[dict[str, Any] | RowError]:
    cells = _csv_cells(text)
    as_dict = _cells_to_dict(next(cells))  # type: ignore[arg-type]
    for entry in cells:
        yield entry if isinstance(entry, RowError) else as_dict(entry)


def _cells_to_dict(columns: list[str | None]) -> Callable[[list[str]], dict[str, Any]]:
    keep = [(i, c) for i, c in enumerate(columns) if c is not None]
    if len(keep) == len(columns):
        return lambda cells: dict(zip(columns, cells, strict=True))  # type: ignore[arg-type]
    return lambda cells: {c: cells[i] for i, c in keep}


def _csv_cells(text: TextIO) -> Iterator[Any]:
    """The header's columns (``csv_columns``), then each data row: its cells, as many as
    the columns, or a ``RowError``."""
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise FileError("The CSV file has no header row.")
        columns = csv_columns(header)
        yield columns
        width = len(columns)
        row = 0
        for cells in reader:
            if not cells:  # a blank line is not a row
                continue
            row += 1
            if len(cells) > width:
                yield RowError(
                    row, "row", f"The row has {len(cells)} fields; the header has {width}.", None
                )
                continue
            if len(cells) < width:
                cells = cells + [""] * (width - len(cells))
            yield cells
    except csv.Error as exc:
        raise FileError(f"The CSV file does not parse (line {reader.line_num}): {exc}.") from exc


def _ndjson_rows(text: TextIO) -> Iterator[dict[str, Any] | RowError]:
    row = 0
    for line in text:
        if not line.strip():
            continue
        row += 1
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            yield RowError(row, "row", "The line is not valid JSON.", _clip(line.strip()))


_WS = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+\-]*\Z")
_BLOCK = 1024 * 1024
_MAX_ELEMENT = 16 * 1024 * 1024


def _json_array(text: TextIO) -> Iterator[Any]:
    """Elements of a top-level JSON array, decoded one at a time from a sliding buffer.

    ``json``'s C scanner decodes each element where it starts; an element cut by the end
    of the buffer is retried once more text is read, so memory is one block plus one
    element, never the file.
    """
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False

    def fill() -> None:
        nonlocal buf, pos, eof
        more = text.read(_BLOCK)
        eof = not more
        buf, pos = buf[pos:] + more, 0

    def skip_ws() -> str:
        nonlocal pos
        while True:
            pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
            if pos < len(buf) or eof:
                return buf[pos] if pos < len(buf) else ""
            fill()

    fill()
    if skip_ws() != "[":
        raise FileError("The JSON body is not an array of items.")
    pos += 1
    expect_value = True
    first = True
    count = 0  # elements read
    while True:
        ch = skip_ws()
        if ch == "":
            raise FileError("The JSON array is not closed (the file ends early).")
        if ch == "]" and (first or not expect_value):
            pos += 1
            break
        if not expect_value:
            if ch != ",":
                raise FileError(f"Malformed JSON array: expected ',' or ']' but found {ch!r}.")
            pos += 1
            expect_value = True
            continue
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                # A number cut by the buffer's end decodes short ("12" of "123", "0" of
                # "0.5"): accept only when what follows cannot continue it.
                if eof or not _NUMBER_TAIL.match(buf, end):
                    break
            except json.JSONDecodeError as exc:
                if eof:
                    raise FileError(f"Malformed JSON: {exc.msg}.") from exc
            except RecursionError:
                # Items are flat objects; a file of nothing but "[" must not take the
                # worker down (the C scanner recurses once per level).
                raise FileError(
                    f"The JSON nests arrays or objects {1 + _depth(buf, pos)} levels deep "
                    f"(element {count + 1} of the array); an item is an object of plain "
                    "values."
                ) from None
            if len(buf) - pos > _MAX_ELEMENT:
                raise FileError("A JSON array element is larger than 16 MiB.")
            fill()
        pos = end
        first, expect_value = False, False
        count += 1
        yield value
    if skip_ws() != "":
        raise FileError("Unexpected content after the JSON array.")


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth(text: str, pos: int) -> int:
    """How deep the JSON value starting at ``pos`` nests (as far as ``text`` goes)."""
    depth = deepest = 0
    for match in _TOKEN.finditer(text, pos):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
            if depth == 0:
                break
    return deepest


# --- validation -----------------------------------------------------------------------


def _clip(value: Any) -> str | None:
    """``value`` as a row error shows it, cut to ``VALUE_LIMIT`` characters."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        try:
            text = orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # nested deeper than orjson writes
            text = f"(a {type(value).__name__} nested too deeply to show)"
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 1] + "…"


def _absent(raw: Any) -> bool:
    # A CSV cell cannot tell "no value" from "empty": in an import both mean absent.
    return raw is None or raw == ""


def valid_name(raw: Any) -> str | None:
    """The item name a row gives, if it is a usable one (duplicates are keyed on it)."""
    try:
        return rules.item_name(raw)
    except rules.Broken:
        return None


def validate(row: int, data: Any) -> tuple[Item | None, str | None, list[RowError]]:
    """Check one parsed row: ``(item or None, usable name or None, errors)``."""
    item = _plain(data)
    if item is not None:
        return item, item[0], []
    return check_fields(row, data)


def check_fields(row: int, data: Any) -> tuple[Item | None, str | None, list[RowError]]:
    """The full check, field by field with ``app.rules``, naming every problem (the slow
    path)."""
    if not isinstance(data, dict):
        return None, None, [RowError(row, "row", "Each row must be an object.", _clip(data))]
    errors: list[RowError] = []
    for key in data:
        if key not in ITEM_FIELD_SET and key not in READ_ONLY:
            errors.append(RowError(row, str(key), "Unknown field.", _clip(data[key])))
    values: dict[str, Any] = {}
    for field, rule in rules.ITEM_RULES.items():
        raw = data.get(field)
        if _absent(raw):
            if field in REQUIRED:
                errors.append(RowError(row, field, "Missing data for required field.", _clip(raw)))
            values[field] = 0 if field == "quantity" else None
            continue
        try:
            values[field] = rule(raw)
        except rules.Broken as exc:
            errors.append(RowError(row, field, exc.message, _clip(raw)))
            values[field] = None
    name = values["name"]
    if errors:
        return None, name, errors
    item = (name, str(values["price"]), values["quantity"], values["sku"], values["description"])
    return item, name, errors


def _plain(data: Any) -> Item | None:
    """The fast path: a row that is plainly valid, or ``None`` to check it field by field
    (which finds the same verdict for any row this accepts; tests/test_rules.py)."""
    if type(data) is not dict or not data.keys() <= ITEM_FIELD_SET:
        return None
    name, price = data.get("name"), data.get("price")
    if type(name) is not str or type(price) not in (str, int):
        return None
    name = name.strip()
    price = str(price)
    if not name or len(name) > rules.NAME_MAX or not _PLAIN_PRICE.fullmatch(price):
        return None
    quantity = data.get("quantity")
    if quantity is None or quantity == "":
        quantity = 0
    elif type(quantity) is str and _PLAIN_QUANTITY.fullmatch(quantity):
        quantity = int(quantity)
    elif type(quantity) is not int or not 0 <= quantity < 10**9:
        return None
    sku, description = data.get("sku"), data.get("description")
    if sku is not None and (type(sku) is not str or len(sku) > rules.SKU_MAX):
        return None
    if description is not None and (
        type(description) is not str or len(description) > rules.DESCRIPTION_MAX
    ):
        return None
    if not rules.storable(name) or not (sku is None or rules.storable(sku)):
        return None
    if description is not None and not rules.storable(description):
        return None
    sku, description = sku or None, description or None  # an empty CSV cell is no value
    return name, price, quantity, sku, description


# --- batches: the rows of one chunk, checked together ---------------------------------

DUPLICATE = "Duplicate name in this file: an earlier row names the same item (it wins)."
# Whole CSV columns of plain values, one regex pass each (a cell holding a line break
# adds a line, which the count of lines catches).
_PRICE_COLUMN = re.compile(r"(?:[0-9]{1,10}(?:\.[0-9]{1,2})?\n)*")
_QUANTITY_COLUMN = re.compile(r"(?:[0-9]{0,9}\n)*")


@dataclass(slots=True)
class Batch:
    """Consecutive data rows, the first numbered ``first``: each a dict, a ``RowError``,
    or (CSV, ``columns`` set) its cells in the order of ``columns``."""

    first: int
    entries: list[Any]
    columns: list[str | None] | None = None

    def rows(self) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
        as_dict = _cells_to_dict(self.columns) if self.columns is not None else None
        for row, entry in enumerate(self.entries, self.first):
            if as_dict is not None and not isinstance(entry, RowError):
                entry = as_dict(entry)
            yield row, entry


@dataclass(slots=True)
class Checked:
    """A batch checked: its valid items and their row numbers (``rows``, in step), its row
    errors, and how many rows failed."""

    items: list[Item]
    rows: Sequence[int]
    errors: list[RowError]
    failed_rows: int


def batches(text: TextIO, file_format: str, size: int, *, skip: int = 0) -> Iterator[Batch]:
    """The data rows of ``text`` in batches of ``size``. The first ``skip`` rows come in
    batches of their own, so the batches after them start at row ``skip + 1`` (a resumed
    import keeps its chunks). Raises ``FileError``."""
    columns: list[str | None] | None = None
    try:
        if file_format == "csv":
            source = _csv_cells(text)
            columns = next(source)
        elif file_format == "json":
            source = _json_array(text)
        else:
            source = _ndjson_rows(text)
        first = 1
        while True:
            want = min(size, skip - first + 1) if first <= skip else size
            entries = list(itertools.islice(source, want))
            if not entries:
                return
            yield Batch(first, entries, columns)
            first += len(entries)
    except UnicodeDecodeError as exc:
        raise FileError(f"The file is not valid UTF-8 (byte offset about {exc.start}).") from exc


def remember_names(batch: Batch, seen: NameHashes) -> None:
    """Rows already applied (a resumed import): only their names count, for duplicates."""
    for _, data in batch.rows():
        name = valid_name(data.get("name")) if isinstance(data, dict) else None
        if name is not None:
            seen.add(hash(name))


def check(batch: Batch, seen: NameHashes) -> Checked:
    """Validate a batch and find the names met before (in ``seen``, the names of earlier
    rows, which this extends): the first row naming an item decides; every
    later one is a row error, whether or not the first was valid."""
    if batch.columns is not None:
        items = plain_columns(batch.columns, batch.entries)
        if items is not None and seen.add_all_new([hash(item[0]) for item in items]):
            return Checked(items, range(batch.first, batch.first + len(items)), [], 0)
    checked = Checked([], [], [], 0)
    numbers: list[int] = checked.rows  # type: ignore[assignment]
    for row, data in batch.rows():
        item, errors = _check_row(row, data, seen)
        if errors:
            checked.errors.extend(errors)
            checked.failed_rows += 1
        else:
            checked.items.append(item)  # type: ignore[arg-type]
            numbers.append(row)
    return checked


def _check_row(row: int, data: Any, seen: NameHashes) -> tuple[Item | None, list[RowError]]:
    if isinstance(data, RowError):
        return None, [data]
    item, name, errors = validate(row, data)
    if name is not None:
        key = hash(name)
        if key in seen:
            errors.append(RowError(row, "name", DUPLICATE, name[:200]))
            item = None
        else:
            seen.add(key)
    return item, errors


def plain_columns(columns: list[str | None], entries: list[Any]) -> list[Item] | None:
    """The fast path for CSV rows, a column at a time: the items when every row is plainly
    valid, exactly as ``_plain`` makes each (tests/test_imports_rows.py), or ``None``
    to check the rows one by one."""
    if not entries or any(type(entry) is not list for entry in entries):
        return None
    table = {
        c: column
        for c, column in zip(columns, zip(*entries, strict=True), strict=True)
        if c is not None
    }
    count = len(entries)
    names = list(map(str.strip, table["name"]))
    if not all(names) or max(map(len, names)) > rules.NAME_MAX:
        return None
    prices = table["price"]
    if not _whole_column(_PRICE_COLUMN, prices):
        return None
    quantities: list[int] = [0] * count
    if "quantity" in table:
        raw = table["quantity"]
        if not _whole_column(_QUANTITY_COLUMN, raw):
            return None
        quantities = [int(q) if q else 0 for q in raw]
    texts: dict[str, list[str | None]] = {}
    for field, limit in (("sku", rules.SKU_MAX), ("description", rules.DESCRIPTION_MAX)):
        column = table.get(field)
        if column is None:
            texts[field] = [None] * count
            continue
        if max(map(len, column)) > limit or not rules.storable("".join(column)):
            return None
        texts[field] = [value or None for value in column]  # an empty cell is no value
    if not rules.storable("".join(names)):
        return None
    return list(zip(names, prices, quantities, texts["sku"], texts["description"], strict=True))


def _whole_column(pattern: re.Pattern[str], values: tuple[str, ...]) -> bool:
    text = "\n".join(values) + "\n"
    return text.count("\n") == len(values) and pattern.fullmatch(text) is not None
