"""The contract peer's `filter_path`: its shortcut for `items.*.<field>` filters prunes an
answer exactly as the general pruning does, empty objects dropped as Elasticsearch drops
them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peers.elasticsearch_peer import _NOTHING, _prune, filter_path

bodies = st.fixed_dictionaries(
    {"_index": st.just("x"), "_id": st.sampled_from(["e0", "e1"])},
    optional={
        "status": st.sampled_from([201, 409, 429]),
        "error": st.just({"type": "t", "reason": "r"}),
        "result": st.just("created"),
    },
)
answers = st.fixed_dictionaries(
    {
        "took": st.just(1),
        "errors": st.booleans(),
        "items": st.lists(
            st.dictionaries(st.sampled_from(["create", "index"]), bodies, min_size=1, max_size=1)
        ),
    }
)
FILTERS = [
    "errors,items.*.status,items.*._id,items.*.error",
    "items.*.error",
    "errors",
    "took,items.*.status",
    "items.*.nothing",
    "items",
    "errors,items",
    "items.*.create.status",
]


@settings(max_examples=200, deadline=None)
@given(answer=answers, wanted=st.sampled_from(FILTERS))
def test_the_shortcut_prunes_as_the_general_rule(answer: dict[str, Any], wanted: str) -> None:
    """For every filter, the result equals the general recursive pruning."""
    paths = [path.split(".") for path in wanted.split(",")]
    general = _prune(answer, paths)
    assert filter_path(answer, paths) == ({} if general is _NOTHING else general)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("errors,items.*.status", {"errors": False, "items": [{"create": {"status": 201}}]}),
        ("items.*.error", {"items": []}),
        ("took", {"took": 1}),
    ],
)
def test_known_answers(wanted: str, expected: dict[str, Any]) -> None:
    """A stored document's item keeps only the fields asked for; one with nothing asked
    for is dropped from `items`."""
    answer = {"took": 1, "errors": False, "items": [{"create": {"_id": "e0", "status": 201}}]}
    assert filter_path(answer, [p.split(".") for p in wanted.split(",")]) == expected
