"""The audit event: its fields, declared once, and its JSON form.

`AuditEvent`'s class body is the one declaration of the event's fields: each field's name,
its kind (`FieldKind`, in `Annotated`), and whether it is required (it has no default). From
it come `EVENT_FIELDS` and everything else that lists the fields: the checks of a directly
built event, `from_dict`'s known and required keys, `to_dict`, `TEXT_FIELDS`, and
`from_values`, which builds an event from values in declaration order (the store's columns
follow that order, the HTTP API's event schema too). A new field is one line here.

`AuditEvent` validates on construction, so an invalid event cannot exist: every rule
violation raises `InvalidEvent` naming the field and the rule. `from_dict` / `to_dict`
convert to and from the JSON form, and round-trip exactly.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, final, get_type_hints
from uuid import UUID

from xavyo_siem.errors import InvalidEvent
from xavyo_siem.model.codegen import compile_function
from xavyo_siem.model.conversions import format_timestamp
from xavyo_siem.model.enums import EventCategory, Outcome
from xavyo_siem.model.validation import (
    DEFAULT_EVENT_TYPE,
    MAX_EVENT_TYPE_CHARS,
    MAX_TEXT_CHARS,
    add_repaired_entries,
    check_category,
    check_event_type_within_limits,
    check_ip,
    check_metadata,
    check_metadata_within_limits,
    check_outcome,
    check_required_text,
    check_severity,
    check_tenant_id,
    check_text,
    check_text_within_limits,
    check_timestamp,
    check_uuid,
    is_ip_address,
    is_plain_metadata,
    parse_severity,
    repair_metadata,
    repair_text,
    repair_timestamp,
    repair_unplain_metadata,
)
from xavyo_siem.speedups import repaired_text

__all__ = [
    "EVENT_FIELDS",
    "FIELD_NAMES",
    "TEXT_FIELDS",
    "AuditEvent",
    "EventField",
    "FieldKind",
]


class FieldKind(StrEnum):
    """What an event field holds: it decides the field's check, JSON form and stored form."""

    UUID = "uuid"  # a UUID; JSON and stored: its canonical text
    TENANT = "tenant"  # the tenant's UUID: as UUID, parsed once per text (ids repeat)
    TIMESTAMP = "timestamp"  # an aware datetime in UTC; JSON: RFC 3339; stored: epoch µs
    TEXT = "text"  # free text; a required one may not be blank
    CATEGORY = "category"  # an EventCategory; JSON and stored: its value
    SEVERITY = "severity"  # 0-10; when absent, the category's default
    OUTCOME = "outcome"  # an Outcome; JSON and stored: its value
    IP = "ip"  # an IPv4 or IPv6 address, as text
    METADATA = "metadata"  # string -> string; empty when absent, left out of JSON then
    NAMES = "names"  # sorted event field names; empty when absent, left out of JSON then


@final  # `from_values` builds exactly this class (see `_UncheckedEvent`)
@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One audit event of one tenant, as the identity provider recorded it.

    Required: `event_id`, `tenant_id`, `timestamp` (aware; normalised to UTC, microseconds
    kept), `event_type`, `category`. `severity` (0-10) defaults from the category. Every other
    field may be absent (`None`); `metadata` maps strings to strings; `normalized` names the
    fields `from_dict` changed (sorted, empty when none).

    Building one checks every rule but length; `from_dict`, the way events come in, never
    refuses an event that has an id, a tenant and a time: what cannot be carried is
    normalised (`_normalised`) and `normalized` says which fields were changed.

    The fields are in their JSON order, which is also the order of `from_values`.
    """

    event_id: Annotated[UUID, FieldKind.UUID]
    tenant_id: Annotated[UUID, FieldKind.TENANT]
    timestamp: Annotated[datetime, FieldKind.TIMESTAMP]
    event_type: Annotated[str, FieldKind.TEXT]
    category: Annotated[EventCategory, FieldKind.CATEGORY]
    severity: Annotated[int, FieldKind.SEVERITY] = -1  # -1: the category's default
    outcome: Annotated[Outcome | None, FieldKind.OUTCOME] = None
    source_ip: Annotated[str | None, FieldKind.IP] = None
    event_name: Annotated[str | None, FieldKind.TEXT] = None
    action: Annotated[str | None, FieldKind.TEXT] = None
    actor_id: Annotated[str | None, FieldKind.TEXT] = None
    actor_email: Annotated[str | None, FieldKind.TEXT] = None
    user_agent: Annotated[str | None, FieldKind.TEXT] = None
    target_user: Annotated[str | None, FieldKind.TEXT] = None
    target_resource: Annotated[str | None, FieldKind.TEXT] = None
    reason: Annotated[str | None, FieldKind.TEXT] = None
    session_id: Annotated[str | None, FieldKind.TEXT] = None
    request_id: Annotated[str | None, FieldKind.TEXT] = None
    # A source that is not an IP address, as the producer sent it (`source_ip` is then None).
    source_address: Annotated[str | None, FieldKind.TEXT] = None
    metadata: Annotated[Mapping[str, str], FieldKind.METADATA] = field(default_factory=dict)
    # The fields `from_dict` had to change for the event to be carried (see `normalise`).
    normalized: Annotated[tuple[str, ...], FieldKind.NAMES] = ()

    def __post_init__(self) -> None:
        put = object.__setattr__
        for declared, check in _CHECKS:
            name = declared.name
            value = getattr(self, name)
            if value is None and declared.nullable:
                continue
            if declared.kind is FieldKind.SEVERITY and value == -1 and type(value) is int:
                value = self.category.default_severity  # category is checked before severity
            put(self, name, check(name, value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        """Build an event from its JSON form, normalising what cannot be carried.

        Raises `InvalidEvent` naming the field only for what cannot be an event at all: not
        an object, no usable `event_id`, `tenant_id` or `timestamp`, or a value nested too
        deeply to be written.

        First every rule is checked, as fast as it goes, and what is commonly wrong is
        repaired on the way, each field looked at once: category and severity first
        (severity's default comes from the category), then the free text as one joined
        string (short ASCII without NUL passes at once; otherwise each field is repaired),
        the time (a leap second repaired), the source IP (one that is not an address moved
        to `source_address`), the metadata (repaired unless plain; keys that are no field
        put into it), then the rest in field order (`_values_in` and `_check_the_rest` are
        compiled from the declaration). An empty string in an optional text or the source
        IP is absent. The names of the fields changed join those given in `normalized`.
        When any other check fails, the event is built again by `_normalised`, which
        repairs field by field and records what changed: the reference that this quick
        path gives the same event as (the tests compare the two).
        """
        if not isinstance(data, Mapping):
            raise InvalidEvent("event", f"must be a JSON object, got {type(data).__name__}")
        try:
            return _event_of(_values_in(data.get), data, None)
        except RecursionError:
            raise InvalidEvent("event", _TOO_DEEP) from None

    @classmethod
    def from_field_values(
        cls, values: list[Any], data_of: Callable[[], Mapping[str, Any]]
    ) -> AuditEvent:
        """`from_dict(data_of())`, given the values of that mapping in `FIELD_NAMES` order
        (None where absent; `values` is used up), for a mapping of event fields only.

        A source's row gives its values in that order at once; the mapping is then built
        (`data_of`) only for an event that needs `_normalised`, instead of for every row."""
        try:
            return _event_of(values, None, data_of)
        except RecursionError:
            raise InvalidEvent("event", _TOO_DEEP) from None

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> AuditEvent:
        """An event from valid values in `FIELD_NAMES` order (every one given); no checks run.

        The store's read path calls this with the values it validated when it wrote them,
        as do `from_dict` once its own checks have passed and the sample generator: it is
        what lets a read of a million events run at the speed of the database rather than
        of the validators.

        Why a class swap: a frozen dataclass sets each field through `object.__setattr__`,
        about 150 ns a field. `_UncheckedEvent` has the same slots in the same order and a
        plain constructor whose slot assignments cost a fifth of that; the object it makes
        then becomes an `AuditEvent` by `__class__` assignment, which Python allows because
        the two layouts are the same. Reads of a million events spend seconds less.
        """
        event = _UncheckedEvent(*values)
        event.__class__ = cls
        built: AuditEvent = event
        return built

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: absent fields left out, the timestamp as RFC 3339 UTC with µs."""
        out: dict[str, Any] = {}
        for (name, to_json), value in zip(_TO_JSON, _values_of(self), strict=True):
            if value is not None:
                out[name] = value if to_json is None else to_json(value)
        if not out[_METADATA_NAME]:
            del out[_METADATA_NAME]
        if not out[_NORMALIZED_NAME]:
            del out[_NORMALIZED_NAME]
        return out


@dataclass(frozen=True, slots=True)
class EventField:
    """One field of `AuditEvent`: its name, its kind, and whether an event must give it."""

    name: str
    kind: FieldKind
    required: bool

    @property
    def nullable(self) -> bool:
        """True when an event may hold None here (severity, metadata and names always hold a
        value)."""
        return not self.required and self.kind not in _NEVER_NONE


_NEVER_NONE: Final = (FieldKind.SEVERITY, FieldKind.METADATA, FieldKind.NAMES)


def _declared_fields() -> tuple[EventField, ...]:
    hints = get_type_hints(AuditEvent, include_extras=True)
    return tuple(
        EventField(
            f.name,
            FieldKind(hints[f.name].__metadata__[0]),
            f.default is MISSING and f.default_factory is MISSING,
        )
        for f in fields(AuditEvent)
    )


EVENT_FIELDS: Final[tuple[EventField, ...]] = _declared_fields()
FIELD_NAMES: Final[tuple[str, ...]] = tuple(f.name for f in EVENT_FIELDS)
# The optional free-text fields, in their JSON order.
TEXT_FIELDS: Final[tuple[str, ...]] = tuple(
    f.name for f in EVENT_FIELDS if f.kind is FieldKind.TEXT and not f.required
)


# `AuditEvent`'s slots, in the same order, with a plain positional constructor: what
# `from_values` builds an event with (its docstring says why). Made from `FIELD_NAMES`, so
# it cannot drift from the declaration.
_UncheckedEvent: Final = make_dataclass(
    "_UncheckedEvent", FIELD_NAMES, slots=True, repr=False, eq=False, match_args=False
)


def check_field_names(name: str, value: object) -> tuple[str, ...]:
    """Names of event fields, sorted and each once (a list or tuple of them), as a tuple."""
    if not isinstance(value, list | tuple):
        raise InvalidEvent(name, f"must be a list of field names, got {type(value).__name__}")
    names = tuple(value)
    for item in names:
        if type(item) is not str or item not in _KNOWN_KEYS:
            raise InvalidEvent(name, f"must hold only field names, got {str(item)[:60]!r}")
    if list(names) != sorted(set(names)):
        raise InvalidEvent(name, "must be sorted, each name once")
    return names


Check = Callable[[str, Any], Any]
_CHECK_OF: Final[dict[FieldKind, Check]] = {
    FieldKind.UUID: check_uuid,
    FieldKind.TENANT: check_tenant_id,
    FieldKind.TIMESTAMP: check_timestamp,
    FieldKind.TEXT: check_text,
    FieldKind.CATEGORY: check_category,
    FieldKind.SEVERITY: check_severity,
    FieldKind.OUTCOME: check_outcome,
    FieldKind.IP: check_ip,
    FieldKind.METADATA: check_metadata,
    FieldKind.NAMES: check_field_names,
}


def _check_for(declared: EventField) -> Check:
    if declared.kind is FieldKind.TEXT and declared.required:
        return check_required_text
    return _CHECK_OF[declared.kind]


def _check_in_for(declared: EventField) -> Check:
    """What `from_dict`'s checks run for a field: its check, and for a field with a length
    limit the check that it is within it."""
    if declared.kind is FieldKind.TEXT:
        return check_event_type_within_limits if declared.required else check_text_within_limits
    if declared.kind is FieldKind.METADATA:
        return check_metadata_within_limits
    return _check_for(declared)


def _index_of(kind: FieldKind) -> int:
    (index,) = (i for i, f in enumerate(EVENT_FIELDS) if f.kind is kind)
    return index


_CHECKS: Final = tuple((f, _check_for(f)) for f in EVENT_FIELDS)
_KNOWN_KEYS: Final = frozenset(FIELD_NAMES)
_REQUIRED: Final = tuple(f.name for f in EVENT_FIELDS if f.required)
_required_values: Final = operator.itemgetter(*(FIELD_NAMES.index(n) for n in _REQUIRED))
_CATEGORY: Final = _index_of(FieldKind.CATEGORY)
_SEVERITY: Final = _index_of(FieldKind.SEVERITY)
_METADATA: Final = _index_of(FieldKind.METADATA)
_SOURCE_IP: Final = _index_of(FieldKind.IP)
_SOURCE_IP_NAME: Final = FIELD_NAMES[_SOURCE_IP]
_SOURCE_ADDRESS: Final = FIELD_NAMES.index("source_address")
_SOURCE_ADDRESS_NAME: Final = FIELD_NAMES[_SOURCE_ADDRESS]
_TIMESTAMP: Final = _index_of(FieldKind.TIMESTAMP)
_TIMESTAMP_NAME: Final = FIELD_NAMES[_TIMESTAMP]
_NORMALIZED: Final = _index_of(FieldKind.NAMES)
_CATEGORY_NAME: Final = FIELD_NAMES[_CATEGORY]
_SEVERITY_NAME: Final = FIELD_NAMES[_SEVERITY]
_METADATA_NAME: Final = FIELD_NAMES[_METADATA]
_NORMALIZED_NAME: Final = FIELD_NAMES[_NORMALIZED]
_TEXT_INDEXES: Final = tuple(FIELD_NAMES.index(name) for name in TEXT_FIELDS)
# The fields where an empty string is simply absent (elsewhere `_normalised` decides).
_EMPTY_AS_ABSENT: Final = frozenset((*_TEXT_INDEXES, _SOURCE_IP))
_optional_texts: Final = operator.itemgetter(*_TEXT_INDEXES)


def _check_cell(index: int, declared: EventField) -> str:
    """The expression `_check_the_rest` gives for the field at `index`."""
    value = declared.name
    if index in (_CATEGORY, _SEVERITY, _TIMESTAMP, _SOURCE_IP, _METADATA, _NORMALIZED):
        return value  # checked (or repaired) before
    if declared.name in TEXT_FIELDS:
        return value  # checked (or repaired) before
    checked = f"check_{index}({declared.name!r}, {value})"
    if declared.required:
        return checked
    absent = {FieldKind.METADATA: "{}", FieldKind.NAMES: "()"}.get(declared.kind, "None")
    return f"{absent} if {value} is None else {checked}"


# from_dict's first step: the value of each field, None when absent, in field order.
_values_in: Final[Callable[[Callable[[str], Any]], list[Any]]] = compile_function(
    "values_in", ["get"], f"[{', '.join(f'get({name!r})' for name in FIELD_NAMES)}]", {}
)
# from_dict's last step: the checks of the fields not checked yet, in field order, and the
# event made from all values; e.g. `check_0('event_id', event_id)` for the first field.
_check_the_rest: Final[Callable[..., AuditEvent]] = compile_function(
    "check_the_rest",
    FIELD_NAMES,
    f"from_values(({', '.join(_check_cell(i, f) for i, f in enumerate(EVENT_FIELDS))},))",
    {
        "from_values": AuditEvent.from_values,
        **{f"check_{index}": _check_in_for(f) for index, f in enumerate(EVENT_FIELDS)},
    },
)
_values_of: Final = operator.attrgetter(*FIELD_NAMES)
_TO_JSON_OF: Final[dict[FieldKind, Callable[[Any], Any]]] = {
    FieldKind.UUID: str,
    FieldKind.TENANT: str,
    FieldKind.TIMESTAMP: format_timestamp,
    FieldKind.CATEGORY: operator.attrgetter("value"),
    FieldKind.OUTCOME: operator.attrgetter("value"),
    FieldKind.METADATA: dict,
    FieldKind.NAMES: list,
}
_TO_JSON: Final = tuple((f.name, _TO_JSON_OF.get(f.kind)) for f in EVENT_FIELDS)


# A value nested so deeply that writing it (its JSON text, or a message that quotes it)
# passes Python's recursion limit, about a thousand levels where orjson reads up to 1,024:
# no event that can be carried, so its input is set aside like any other, never an error
# that ends the whole ingest. Raised where the work is entered, so no event pays for a
# further call.
_TOO_DEEP: Final = "holds a value nested too deeply to be written"


def _event_of(
    values: list[Any],
    data: Mapping[str, Any] | None,
    data_of: Callable[[], Mapping[str, Any]] | None,
) -> AuditEvent:
    """`from_dict`'s work on the values of `data` (or, when it is None, of the mapping of
    event fields only that `data_of` builds), in `FIELD_NAMES` order. Its callers turn a
    `RecursionError` into `InvalidEvent` (`_TOO_DEEP`)."""
    try:
        if None in _required_values(values):
            raise InvalidEvent("event", "lacks a field")
        changed: list[str] = []
        while "" in values:  # an empty string is absent, where that is all it means
            index = values.index("")
            if index not in _EMPTY_AS_ABSENT or not isinstance(values[index], str):
                raise InvalidEvent("event", "has an empty field")
            values[index] = None
            changed.append(FIELD_NAMES[index])
        category = values[_CATEGORY] = check_category(_CATEGORY_NAME, values[_CATEGORY])
        severity = values[_SEVERITY]
        values[_SEVERITY] = (
            category.default_severity
            if severity is None
            else parse_severity(_SEVERITY_NAME, severity)
        )
        try:  # the present texts as one string (TypeError: one is not a string)
            joined = "".join([text for text in _optional_texts(values) if text is not None])
        except TypeError:
            joined = "\x00"
        if not joined.isascii() or "\x00" in joined or len(joined) > MAX_TEXT_CHARS:
            for index in _TEXT_INDEXES:  # look closer, field by field
                value = values[index]
                if value is not None:
                    # `repair_text`, its string case inlined: this loop is most of the
                    # cost of an event with a NUL or a lone surrogate in its text.
                    values[index] = text = (
                        repaired_text(value, MAX_TEXT_CHARS)
                        if type(value) is str
                        else repair_text(value)
                    )
                    if text is not value and value != text:
                        changed.append(FIELD_NAMES[index])
        values[_TIMESTAMP], leap = repair_timestamp(_TIMESTAMP_NAME, values[_TIMESTAMP])
        if leap:
            changed.append(_TIMESTAMP_NAME)
        if values[_SOURCE_IP] is not None:
            _check_source_ip(values, changed)
        metadata = values[_METADATA]
        if data is not None and not _KNOWN_KEYS.issuperset(data):
            values[_METADATA] = _metadata_with_unknown_keys(metadata, data)
            changed.append(_METADATA_NAME)
        elif metadata is None:
            values[_METADATA] = {}
        elif not is_plain_metadata(metadata):
            values[_METADATA] = repaired = repair_unplain_metadata(metadata)
            if metadata != repaired:
                changed.append(_METADATA_NAME)
        given = values[_NORMALIZED]
        given = () if given is None else check_field_names(_NORMALIZED_NAME, given)
        values[_NORMALIZED] = tuple(sorted({*changed, *given})) if changed else given
        return _check_the_rest(*values)
    except InvalidEvent:
        if data is None:
            assert data_of is not None  # one of the two is given, by the two ways in
            data = data_of()
        return _normalised(data)


def _check_source_ip(values: list[Any], changed: list[str]) -> None:
    """`from_dict`'s check of the source IP in `values`: one that is not an address is moved
    to `source_address` as text (unless one is given), and both are named in `changed`."""
    source_ip = values[_SOURCE_IP]
    try:  # `check_ip`, without raising for text that is no address (a host name is common)
        address = is_ip_address(check_text(_SOURCE_IP_NAME, source_ip))
    except InvalidEvent:
        address = False
    if address:
        return
    values[_SOURCE_IP] = None
    changed.append(_SOURCE_IP_NAME)
    if values[_SOURCE_ADDRESS] is None:
        values[_SOURCE_ADDRESS] = repair_text(source_ip)
        changed.append(_SOURCE_ADDRESS_NAME)


def _metadata_with_unknown_keys(metadata: object, data: Mapping[Any, Any]) -> dict[str, str]:
    """The repaired metadata of an event whose `data` has keys that are no field: they join
    `metadata` (given ones win); metadata that is not an object is kept under the empty key."""
    unknown = [key for key in data if key not in _KNOWN_KEYS]
    if metadata is None:
        metadata = {}
    if is_plain_metadata(metadata):  # the common case: only the unknown keys need repair
        entries = [(key, data[key]) for key in unknown if key not in metadata]
        return add_repaired_entries(metadata.copy(), entries)
    if type(metadata) is dict:  # as JSON gives it: no Mapping check (an ABC's costs more)
        merged = metadata.copy()
    elif isinstance(metadata, Mapping):
        merged = dict(metadata)
    else:
        merged = {"": metadata}
    for key in unknown:
        merged.setdefault(key, data[key])
    return repair_metadata(merged)


# What an event cannot be without: a line without one of these is not an event.
_KEY_NAMES: Final = ("event_id", "tenant_id", "timestamp")


def _normalised(data: Mapping[str, Any]) -> AuditEvent:
    """The event of `data`, every field repaired that cannot be carried as it is, with the
    names of the fields changed in `normalized` (with those `data` said were changed before).

    The rules (docs/store.md has them as a table): an empty string is absent; text is
    `repair_text` (JSON text of a non-string, cut, NUL and lone surrogates -> U+FFFD); no or
    a blank `event_type` is `UNKNOWN`; an unknown `category` is `security`; a bad `severity`
    is clamped to 0-10 when it is a number, else the category's default; a bad `outcome` is
    `unknown`; a `source_ip` that is not an address goes to `source_address` as text;
    metadata is `repair_metadata`, and a key that is not a field goes into it (as
    `metadata`); a leap second is the last microsecond of its minute. Only an event without
    a usable `event_id`, `tenant_id` or `timestamp` raises `InvalidEvent`.

    A field is changed when what the event holds differs from what was given (a value
    given but not kept, such as a `source_ip` moved to `source_address`, is changed too).
    Each field is repaired and compared once, where it is repaired; a text that needs no
    repair comes back as the very object given, so comparing it costs nothing.
    """
    changed: set[str] = set()
    given: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KNOWN_KEYS:
            continue  # into the metadata, below
        if isinstance(value, str) and not value:
            changed.add(key)  # an empty string is absent
        elif value is not None:
            given[key] = value
    for name in _KEY_NAMES:
        if name not in given:
            raise InvalidEvent(name, "is required")
    get = given.get
    out: dict[str, Any] = dict.fromkeys(FIELD_NAMES)  # None: absent
    out["event_id"] = check_uuid("event_id", given["event_id"])
    out["tenant_id"] = check_tenant_id("tenant_id", given["tenant_id"])
    out["timestamp"], leap = repair_timestamp("timestamp", given["timestamp"])
    if leap:
        changed.add("timestamp")
    event_type = get("event_type")
    if event_type is not None:
        event_type = repair_text(event_type, MAX_EVENT_TYPE_CHARS)
    if event_type is None or not event_type.strip():
        event_type = DEFAULT_EVENT_TYPE
    out["event_type"] = event_type
    if get("event_type") != event_type:
        changed.add("event_type")
    try:
        category = check_category("category", get("category"))
    except InvalidEvent:
        category = EventCategory.SECURITY
    out["category"] = category
    if get("category") != category.value:
        changed.add("category")
    severity = get("severity")
    if severity is not None:
        try:
            out["severity"] = parse_severity("severity", severity)
        except InvalidEvent:
            number = isinstance(severity, int | float) and not isinstance(severity, bool)
            if number and severity == severity:  # a number, not NaN: clamped to 0-10
                out["severity"] = min(10, max(0, int(min(1e9, max(-1e9, severity)))))
        if severity != out["severity"]:  # None: not a number, so not kept
            changed.add("severity")
        if out["severity"] is None:
            out["severity"] = category.default_severity
    else:
        out["severity"] = category.default_severity
    outcome = get("outcome")
    if outcome is not None:
        try:
            out["outcome"] = check_outcome("outcome", outcome)
        except InvalidEvent:
            out["outcome"] = Outcome.UNKNOWN
        if outcome != out["outcome"].value:
            changed.add("outcome")
    for name in TEXT_FIELDS:
        value = get(name)
        if value is not None:
            out[name] = text = repair_text(value)
            if text is not value and value != text:
                changed.add(name)
    source_ip = get("source_ip")
    if source_ip is not None:
        try:
            out["source_ip"] = check_ip("source_ip", source_ip)
        except InvalidEvent:
            changed.add("source_ip")  # given, but not kept as given
            if out["source_address"] is None:
                out["source_address"] = repair_text(source_ip)
                changed.add("source_address")
    metadata = get("metadata")
    if not _KNOWN_KEYS.issuperset(data):
        out["metadata"] = _metadata_with_unknown_keys(metadata, data)
        changed.add("metadata")
    elif metadata is not None:
        out["metadata"] = repaired = repair_metadata(metadata)
        if metadata != repaired:
            changed.add("metadata")
    else:
        out["metadata"] = {}
    previous: set[str] = set()
    if "normalized" in given:
        try:
            previous.update(check_field_names("normalized", given["normalized"]))
        except InvalidEvent:
            previous.add("normalized")
    out["normalized"] = tuple(sorted(previous | changed))
    # Every value is checked or repaired above: built without checking them again.
    return AuditEvent.from_values(_values_by_name(out))


_values_by_name: Final = operator.itemgetter(*FIELD_NAMES)
