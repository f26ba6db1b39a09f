"""The column mapping of a source and the JSON form a row becomes; where a connection string
points. Pure code: no peer."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xavyo_siem.errors import InvalidEvent, InvalidSource
from xavyo_siem.model import AuditEvent
from xavyo_siem.sources.mapping import RowReader, parse_mapping
from xavyo_siem.sources.peer import peer_target

BASE = ["event_id=id", "tenant_id=tenant", "timestamp=created_at"]


def test_a_mapping_names_each_field_and_its_column() -> None:
    """`field=column` pairs become a mapping, spaces around either side dropped."""
    assert parse_mapping([*BASE, " event_type = kind ", "metadata.region=region"]) == {
        "event_id": "id",
        "tenant_id": "tenant",
        "timestamp": "created_at",
        "event_type": "kind",
        "metadata.region": "region",
    }


@pytest.mark.parametrize(
    ("pairs", "field", "words"),
    [
        (["event_id=id", "tenant_id=tenant"], "map", "must map timestamp"),
        ([*BASE, "shoe_size=size"], "map.shoe_size", "not an event field"),
        ([*BASE, "normalized=n"], "map.normalized", "not an event field"),
        ([*BASE, "event_type"], "map", "FIELD=COLUMN"),
        ([*BASE, "event_type=kind; DROP TABLE x"], "map.event_type", "not a plain identifier"),
        ([*BASE, 'actor_email="Actor"'], "map.actor_email", "not a plain identifier"),
        ([*BASE, "event_id=other"], "map.event_id", "mapped twice"),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_field(
    pairs: list[str], field: str, words: str
) -> None:
    """Each broken rule of a mapping raises `InvalidSource` naming the field and the rule."""
    with pytest.raises(InvalidSource) as refused:
        parse_mapping(pairs)
    assert refused.value.field == field
    assert words in refused.value.reason


def test_a_row_becomes_the_json_form_of_its_event() -> None:
    """Columns land in their fields (database types kept where the event takes them, text
    otherwise), NULL leaves a field absent, and metadata merges the JSON column with the
    metadata.KEY columns; `from_dict` then builds the event."""
    reader = RowReader(
        parse_mapping([*BASE, "source_ip=ip", "severity=level", "actor_id=actor",
                       "metadata=details", "metadata.region=region"]),
        offset=2,
    )  # fmt: skip
    assert reader.columns == ("id", "tenant", "created_at", "ip", "level", "actor", "details",
                              "region")  # fmt: skip
    event_id, tenant = uuid.uuid4(), uuid.uuid4()
    when = datetime(2026, 3, 1, 10, 15, 30, 123456, tzinfo=UTC)
    row = (7, 1, event_id, tenant, when, ipaddress.ip_address("192.0.2.7"), Decimal(4), None,
           {"app": "console"}, "eu")  # fmt: skip
    data = reader(row)
    assert data == {
        "event_id": event_id,
        "tenant_id": tenant,
        "timestamp": when,
        "source_ip": "192.0.2.7",
        "severity": "4",
        "metadata": {"app": "console", "region": "eu"},
    }
    event = AuditEvent.from_dict(data)
    assert event.source_ip == "192.0.2.7"
    assert event.metadata == {"app": "console", "region": "eu"}
    assert event.timestamp == when


def test_metadata_from_text_and_from_a_value_that_is_no_object() -> None:
    """A JSON text column is parsed as the metadata object; a metadata column that is no
    object is kept under `_` beside the metadata.KEY entries."""
    reader = RowReader(parse_mapping([*BASE, "metadata=details", "metadata.k=k"]))
    assert reader((1, 2, 3, '{"a": 1}', None))["metadata"] == {"a": 1}
    assert reader((1, 2, 3, "[1, 2]", "v"))["metadata"] == {"k": "v", "_": "[1,2]"}
    assert "metadata" not in reader((1, 2, 3, None, None))


@pytest.mark.parametrize(
    ("dsn", "origin"),
    [
        ("postgresql://idp:pw@idp-db.internal/audit", "postgresql://idp-db.internal:5432"),
        ("postgresql://idp@10.0.0.5:6432/audit", "postgresql://10.0.0.5:6432"),
        ("host=idp-db port=5433 dbname=audit password=pw", "postgresql://idp-db:5433"),
        ("postgresql://u@[2001:db8::1]:5432/db", "postgresql://[2001:db8::1]:5432"),
    ],
)
def test_a_connection_string_points_at_its_host_and_port(dsn: str, origin: str) -> None:
    """The origin a sealed connection string is bound to: its one host and its port."""
    assert peer_target(dsn).origin == origin


@pytest.mark.parametrize(
    "dsn",
    [
        "dbname=audit password=pw",
        "host=/var/run/postgresql dbname=audit password=pw",
        "postgresql://u:pw@a,b/db",
        "host=idp hostaddr=10.0.0.5 password=pw",
        "postgresql://u:pw@idp:99999/db",
        "not a = connection = string password=pw",
    ],
)
def test_a_connection_string_without_one_network_host_is_refused_unquoted(dsn: str) -> None:
    """A socket, several hosts, hostaddr, a bad port or no host at all is refused on `dsn`,
    and the message never repeats the string (nor its password)."""
    with pytest.raises(InvalidSource) as refused:
        peer_target(dsn)
    assert refused.value.field == "dsn"
    assert "pw" not in str(refused.value)


_CELLS = st.one_of(
    st.none(),
    st.sampled_from(["", "x", "zoe\x00@example.com", "\ud800agent", "gateway.internal",
                     "10.0.0.1", "authentication", "success", "2016-12-31T23:59:60Z"]),
    st.text(max_size=8),
    st.integers(-3, 12),
    st.floats(allow_nan=True),
    st.booleans(),
    st.uuids(),
    st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1)),
    st.decimals(allow_nan=False, places=1, max_value=20, min_value=-20),
    st.datetimes(timezones=st.just(UTC)),
)  # fmt: skip
_METADATA_CELLS = st.one_of(
    st.none(), st.just('{"a": "b"}'), st.just("[1, 2]"), st.just("not json"), st.just(b"\x00"),
    st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers())),
)  # fmt: skip
_ROW_MAPPING = parse_mapping([
    *BASE, "event_type=kind", "category=category", "severity=level", "outcome=outcome",
    "source_ip=ip", "actor_email=email", "user_agent=agent", "reason=reason",
    "metadata=details", "metadata.region=region",
])  # fmt: skip


_OTHER_COLUMNS = ("level", "outcome", "ip", "email", "agent", "reason", "region")


def _event_or_refusal(build: Callable[[], AuditEvent]) -> object:
    try:
        return build()
    except InvalidEvent as exc:
        return str(exc)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries({
        "id": st.uuids(),
        "tenant": st.uuids(),
        "created_at": st.one_of(st.datetimes(timezones=st.just(UTC)), _CELLS),
        "kind": st.sampled_from(["USER_LOGIN", " ", "x\x00"]),
        "category": st.sampled_from(["authentication", "security", "weather"]),
        **dict.fromkeys(_OTHER_COLUMNS, _CELLS),
        "details": _METADATA_CELLS,
    })
)  # fmt: skip
def test_a_rows_values_make_the_event_its_json_form_makes(cells: dict[str, object]) -> None:
    """`AuditEvent.from_field_values` of a row's `values` gives the event (or the refusal)
    that `from_dict` of the row's JSON form gives, whatever the columns hold."""
    reader = RowReader(_ROW_MAPPING, offset=1)
    row = (0, *(cells[column] for column in reader.columns))
    by_values = _event_or_refusal(
        lambda: AuditEvent.from_field_values(reader.values(row), partial(reader, row))
    )
    assert by_values == _event_or_refusal(lambda: AuditEvent.from_dict(reader(row)))
