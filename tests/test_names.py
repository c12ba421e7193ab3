"""``NameHashes``, the import's table of the names met so far, behaves as a set of ints."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.names import NameHashes

# Small keys, keys equal in their low bits (they probe the same slots), 0 and 1 (0 is
# stored as 1: the empty slot's mark), and full 64-bit hashes of either sign.
keys = st.one_of(
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=1, max_value=30).map(lambda k: k << 20),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), keys),
        st.tuples(st.just("add_all_new"), st.lists(keys, max_size=6)),
    ),
    max_size=200,
)


def same(key: int) -> int:
    return key or 1


@settings(max_examples=300, deadline=None)
@given(ops=operations, probes=st.lists(keys, max_size=20))
def test_it_answers_as_a_set_would(ops, probes):
    table, model = NameHashes(bits=2), set()
    for op, arg in ops:
        if op == "add":
            assert table.add(arg) == (same(arg) not in model)
            model.add(same(arg))
        else:
            wanted = [same(k) for k in arg]
            new = len(set(wanted)) == len(wanted) and model.isdisjoint(wanted)
            assert table.add_all_new(arg) == new
            if new:
                model.update(wanted)
        assert len(table) == len(model)
    for key in [*probes, *model]:
        assert (key in table) == (same(key) in model)


def test_a_million_names_take_16_megabytes():
    table = NameHashes()
    assert table.add_all_new([hash(f"Item {i:07d}") for i in range(1_000_000)])
    assert len(table) == 1_000_000
    assert len(table._table) * table._table.itemsize == 16 * 1024 * 1024
