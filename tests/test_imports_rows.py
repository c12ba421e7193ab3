"""The row parsers and validation on their own (no database): properties and edge cases."""

from __future__ import annotations

import csv as csv_module
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services import rows
from app.services.names import NameHashes
from app.services.rows import FileError, RowError


class Trickle(io.StringIO):
    """A text stream that hands out at most ``step`` characters per read (file edges)."""

    def __init__(self, text: str, step: int) -> None:
        super().__init__(text)
        self.step = step

    def read(self, size: int | None = -1) -> str:
        return super().read(self.step if size is None or size < 0 else min(size, self.step))


def parsed(text: str, file_format: str, step: int = 1 << 20) -> list:
    return list(rows.parse(Trickle(text, step), file_format))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    elements=st.lists(json_values, max_size=12),
    step=st.integers(min_value=1, max_value=9),
    indent=st.sampled_from([None, 0, 2]),
)
def test_json_array_elements_come_out_as_json_loads_gives_them(elements, step, indent):
    text = json.dumps(elements, indent=indent)
    assert parsed(text, "json", step) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ["", "{}", "[1, 2", "[1 2]", "[1,]", "[,1]", "[1] x", '[{"a": 1}, {"a": ]'],
)
def test_malformed_json_arrays_are_file_errors(text):
    with pytest.raises(FileError):
        parsed(text, "json", 3)


def test_numbers_cut_by_a_buffer_edge_are_read_whole():
    assert parsed("[123456789, 5]", "json", 4) == [123456789, 5]


def test_ndjson_numbers_rows_without_blank_lines():
    out = parsed('{"a": 1}\n\n  \n[1]\n{bad\n', "ndjson")
    assert out[:2] == [{"a": 1}, [1]]
    assert isinstance(out[2], RowError) and out[2].row == 3


def test_csv_rows_keep_their_number_past_blank_lines_and_quoted_newlines():
    out = parsed('name,price\n"A\nB",1\n\nC,2,extra\n', "csv", 2)
    assert out[0] == {"name": "A\nB", "price": "1"}
    assert isinstance(out[1], RowError) and out[1].row == 2


@pytest.mark.parametrize(
    ("header", "words"),
    [("name,price,name", "more than once"), ("name,colour,price", "colour"), ("price", "name")],
)
def test_csv_header_problems_are_file_errors(header, words):
    with pytest.raises(FileError, match=words):
        parsed(header + "\n", "csv")


cells = st.one_of(
    st.sampled_from(["", "0", "1", "1.5", "1.50", "1.505", "-1", "abc", " 7 ", "1e3", "00.10"]),
    st.text(max_size=5),
    st.integers(min_value=-5, max_value=10**11),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)
row_dicts = st.dictionaries(
    st.sampled_from(["name", "price", "quantity", "sku", "description", "id", "colour"]),
    cells,
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(data=row_dicts)
def test_the_fast_path_agrees_with_the_full_check(data):
    item, name, errors = rows.validate(1, data)
    full_item, full_name, full_errors = rows.check_fields(1, data)
    assert name == full_name
    assert (item is None) == (full_item is None), (data, errors, full_errors)
    if item is not None:
        # Same item; the fast path keeps the price as written, the full check quantizes.
        assert item[0] == full_item[0] and item[2:] == full_item[2:]
        assert float(item[1]) == float(full_item[1])


def test_validation_messages_name_the_field_and_keep_the_value():
    item, name, errors = rows.validate(7, {"name": " ", "price": "1.999", "quantity": "x"})
    assert item is None and name is None
    assert [(e.row, e.field, e.value) for e in errors] == [
        (7, "name", " "),
        (7, "price", "1.999"),
        (7, "quantity", "x"),
    ]


csv_cells = st.one_of(
    st.sampled_from(
        ["", " ", "0", "7", "12.5", "1.50", "1.505", "-1", "abc", " 7 ", "1e3", "٣", "1\n2"]
    ),
    st.sampled_from(["a\x00b", "\ud800", "x" * 201, "s" * 65, "1234567890", "12345678901"]),
    st.text(max_size=5),
)
csv_headers = st.permutations(["name", "price", "quantity", "sku", "description", "id"]).flatmap(
    lambda names: st.integers(min_value=2, max_value=6).map(
        lambda n: [h for h in names[:n]] + [h for h in ("name", "price") if h not in names[:n]]
    )
)


@settings(max_examples=400, deadline=None)
@given(
    header=csv_headers,
    data=st.data(),
)
def test_whole_columns_agree_with_the_row_by_row_fast_path(header, data):
    columns = rows.csv_columns(header)
    entries = data.draw(
        st.lists(st.lists(csv_cells, min_size=len(header), max_size=len(header)), max_size=8)
    )
    as_dict = rows._cells_to_dict(columns)
    one_by_one = [rows._plain(as_dict(cells)) for cells in entries]
    together = rows.plain_columns(columns, entries)
    if entries and all(item is not None for item in one_by_one):
        assert together == one_by_one
    else:
        assert together is None


@settings(max_examples=200, deadline=None)
@given(
    header=csv_headers,
    data=st.data(),
    size=st.integers(min_value=1, max_value=4),
)
def test_batches_check_as_the_rows_one_by_one(header, data, size):
    """Whichever path a batch takes, its items, row numbers and errors are those of the
    rows checked one at a time, duplicates across batches included."""
    names = st.sampled_from(["a", "b", " a", "c", "", "d"])
    width = len(header)
    lines = data.draw(
        st.lists(st.lists(st.one_of(names, csv_cells), min_size=width, max_size=width), max_size=10)
    )
    text = io.StringIO()
    csv_module.writer(text).writerows([header, *lines])
    body = text.getvalue()
    batched = NameHashes()
    got_items, got_rows, got_errors = [], [], []
    for batch in rows.batches(io.StringIO(body), "csv", size):
        checked = rows.check(batch, batched)
        got_items += checked.items
        got_rows += list(checked.rows)
        got_errors += [(e.row, e.field, e.message) for e in checked.errors]
    single = NameHashes()
    want_items, want_rows, want_errors = [], [], []
    for row, entry in enumerate(rows.parse(io.StringIO(body), "csv"), 1):
        item, errors = rows._check_row(row, entry, single)
        if item is not None:
            want_items.append(item)
            want_rows.append(row)
        want_errors += [(e.row, e.field, e.message) for e in errors]
    assert (got_items, got_rows, got_errors) == (want_items, want_rows, want_errors)
