"""The version guard: which incident changes may leave on FEED after what it already has of each
incident, so that the city never sees an incident's older state after a newer one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.feed.order import in_order

X, Y = ("ulsan-refining", "01KBX"), ("ulsan-refining", "01KBY")


def test_a_change_older_than_what_was_decided_is_left_out_and_newer_ones_move_the_incident_on() -> None:
    kept, moved = in_order([(X, 2), (Y, 5), (X, 4)], {X: 3, Y: 1})
    assert kept == [1, 2]  # X at 2 is older than the 3 already on FEED
    assert moved == {X: 4, Y: 5}


def test_within_a_batch_a_change_older_than_one_before_it_is_left_out() -> None:
    kept, moved = in_order([(X, 5), (X, 3), (X, 6)], {})
    assert kept == [0, 2]
    assert moved == {X: 6}


def test_changes_of_one_version_all_leave_and_move_nothing() -> None:
    # One batch of fusion writes several changes of an incident, each carrying the incident as the
    # batch left it: they share a version.
    kept, moved = in_order([(X, 4), (X, 4)], {X: 4})
    assert kept == [0, 1]
    assert moved == {}


def test_a_change_without_a_version_is_not_guarded() -> None:
    kept, moved = in_order([(X, 0), (Y, 0)], {X: 7})
    assert kept == [0, 1]
    assert moved == {}


def test_an_incident_never_decided_on_takes_its_first_change() -> None:
    assert in_order([(Y, 1)], {X: 9}) == ([0], {Y: 1})


@given(
    st.lists(st.tuples(st.sampled_from([X, Y]), st.integers(min_value=1, max_value=20)), max_size=40),
    st.dictionaries(st.sampled_from([X, Y]), st.integers(min_value=0, max_value=20)),
)
def test_what_leaves_of_each_incident_never_goes_back_and_its_latest_version_leaves(
    items: list[tuple[tuple[str, str], int]], last: dict[tuple[str, str], int]
) -> None:
    kept, moved = in_order(items, last)
    for key in (X, Y):
        left = [items[i][1] for i in kept if items[i][0] == key]
        assert left == sorted(left)
        assert all(v >= last.get(key, 0) for v in left)
        newest = max([v for k, v in items if k == key], default=0)
        if newest >= last.get(key, 0) and newest > 0:
            assert left and left[-1] == newest  # the latest state is never lost
        assert moved.get(key, last.get(key, 0)) == max(last.get(key, 0), *left, 0)
