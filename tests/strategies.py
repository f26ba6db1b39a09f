"""Hypothesis strategies for audit events: anything the model accepts, hostile text included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from xavyo_siem.model import FIELD_NAMES, AuditEvent, EventCategory, Outcome

# Any Unicode the model accepts: no lone surrogates (Cs), no NUL.
audit_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=40,
)
hostile_text = st.one_of(
    audit_text,
    st.text(alphabet='|=\\"] \r\n\t\x01\x1b\x7f\x85\u2028=+-@é🔐', max_size=20),
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
timestamps = st.builds(
    lambda moment, offset: moment.replace(tzinfo=UTC).astimezone(offset),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9998, 12, 30)),
    offsets,
)
ip_texts = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))


@st.composite
def audit_events(
    draw: st.DrawFn, tenant_ids: st.SearchStrategy[object] | None = None
) -> AuditEvent:
    """Any valid AuditEvent as ingest makes them (an empty text is absent), optionally
    drawing its tenant from `tenant_ids`."""
    optional = lambda strategy: st.none() | strategy.filter(bool)  # noqa: E731
    return AuditEvent(
        event_id=draw(st.uuids()),
        tenant_id=draw(tenant_ids if tenant_ids is not None else st.uuids()),  # type: ignore[arg-type]
        timestamp=draw(timestamps),
        event_type=draw(hostile_text.filter(lambda text: text.strip() != "")),
        category=draw(st.sampled_from(EventCategory)),
        severity=draw(st.integers(min_value=0, max_value=10)),
        event_name=draw(optional(hostile_text)),
        action=draw(optional(hostile_text)),
        outcome=draw(optional(st.sampled_from(Outcome))),
        actor_id=draw(optional(hostile_text)),
        actor_email=draw(optional(hostile_text)),
        source_ip=draw(optional(ip_texts)),
        user_agent=draw(optional(hostile_text)),
        target_user=draw(optional(hostile_text)),
        target_resource=draw(optional(hostile_text)),
        reason=draw(optional(hostile_text)),
        session_id=draw(optional(hostile_text)),
        request_id=draw(optional(hostile_text)),
        source_address=draw(optional(hostile_text)),
        metadata=draw(st.dictionaries(hostile_text.filter(bool), hostile_text, max_size=4)),
        normalized=tuple(sorted(draw(st.sets(st.sampled_from(FIELD_NAMES), max_size=4)))),
    )


# Hostile JSON values for any field of an incoming event: text with NUL, lone surrogates
# and controls, empty strings, numbers, booleans, lists, objects, huge and odd times.
_raw_text = st.text(
    alphabet=st.characters(codec=None, blacklist_categories=())
    | st.sampled_from("\x00\ud800\udfff\x7f\x85"),
    max_size=20,
)
hostile_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _raw_text
    | st.just(""),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_raw_text, inner, max_size=3),
    max_leaves=6,
)
_odd_times = st.sampled_from(
    ["2016-12-31T23:59:60Z", "2016-12-31T23:59:60.123456+00:00", "2024-06-30 23:59:60+02:00"]
)


@st.composite
def hostile_event_dicts(draw: st.DrawFn) -> dict[str, object]:
    """The JSON form of an event with a usable id, tenant and time, and hostile values in
    any other field (and keys that are no field)."""
    data: dict[str, object] = {
        "event_id": str(draw(st.uuids())),
        "tenant_id": str(draw(st.uuids())),
        "timestamp": draw(_odd_times | timestamps.map(lambda t: t.isoformat())),
    }
    for name in FIELD_NAMES[3:]:
        if draw(st.booleans()):
            data[name] = draw(hostile_json)
    data.update(
        draw(
            st.dictionaries(
                _raw_text.filter(lambda k: k not in FIELD_NAMES), hostile_json, max_size=2
            )
        )
    )
    return data
