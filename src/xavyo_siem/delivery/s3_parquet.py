"""Objects for an Amazon Security Lake custom source, sans I/O: the OCSF records of a batch
as Apache Parquet, one object per OCSF event class and event day.

Security Lake reads a custom source's objects from the location the source was given when
it was created (`ext/<source name>[/<source version>]`, the S3 destination's prefix), under
three partitions (Amazon Security Lake User Guide, "Collecting data from custom sources"):

    <location>/region=<region>/accountId=<account id>/eventDay=<YYYYMMDD>/
        <tenant>_<class_uid>_<after>-<through>.parquet

It asks for Parquet, one OCSF event class per object, records sorted by `time`, data pages
of at most 1 MB and zstd compression; all of that is done here. The name carries the
batch's span as the NDJSON objects do (s3_objects.py), so a resend overwrites.

Each record must be an OCSF event as a JSON object with an integer `class_uid` and `time`
(epoch milliseconds); a record that is not is refused for good, by its index (it cannot go
to Security Lake as it is). Parquet's schema is inferred per object from its rows (the keys
of all rows unified); empty objects and lists are left out, since Parquet cannot store a
struct without fields. pyarrow is an optional dependency (`pip install
'xavyo-siem[parquet]'`), imported when the first object is made.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from xavyo_siem.delivery.base import Record
from xavyo_siem.delivery.s3_objects import S3Object, object_of

__all__ = ["PARQUET_MEDIA_TYPE", "parquet_available", "plan_parquet_objects"]

PARQUET_MEDIA_TYPE: Final = "application/vnd.apache.parquet"
_DATA_PAGE_BYTES: Final = 1 << 20


def parquet_available() -> bool:
    """Whether pyarrow can be imported (the `parquet` extra is installed)."""
    return importlib.util.find_spec("pyarrow") is not None


def _without_empty(value: Any) -> Any:
    """`value` with every empty object and empty list left out, at every depth."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v != {} and v != []}
    if isinstance(value, list):
        return [_without_empty(item) for item in value]
    return value


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_struct_array(pa.array(rows))
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", data_page_size=_DATA_PAGE_BYTES)
    body: bytes = sink.getvalue().to_pybytes()
    return body


def _ocsf_event(text: str) -> dict[str, Any] | str:
    """The OCSF event of a record, or why it is not one."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "not an OCSF event: the record is not JSON (use the ocsf format)"
    if not isinstance(value, dict):
        return "not an OCSF event: the record is not a JSON object"
    for field in ("class_uid", "time"):
        number = value.get(field)
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            return f"not an OCSF event: {field} must be a non-negative integer"
    return value


def plan_parquet_objects(
    records: Sequence[Record],
    *,
    prefix: str,
    region: str,
    account_id: str,
    tenant: str,
    name: str | None,
) -> tuple[list[S3Object], dict[int, str]]:
    """The Parquet objects holding `records`, and the records refused with the reason.

    Objects come in order of (class_uid, event day); rows in each by `time`, ties kept in
    the batch's order. `name` is the batch's `<after>-<through>` (None: its first and last
    event). A group that pyarrow cannot write (a field whose type differs between rows)
    is refused whole, with pyarrow's reason.
    """
    refused: dict[int, str] = {}
    groups: dict[tuple[int, str], list[tuple[int, dict[str, Any]]]] = {}
    for index, record in enumerate(records):
        event = _ocsf_event(record.text)
        if isinstance(event, str):
            refused[index] = event
            continue
        day = datetime.fromtimestamp(event["time"] // 1000, UTC).strftime("%Y%m%d")
        groups.setdefault((event["class_uid"], day), []).append((index, _without_empty(event)))
    if not groups:
        return [], refused
    base = name or f"{records[0].event_id}-{records[-1].event_id}"
    objects: list[S3Object] = []
    for (class_uid, day), members in sorted(groups.items()):
        rows = [row for _, row in sorted(members, key=lambda item: item[1]["time"])]
        try:
            body = _parquet(rows)
        except Exception as exc:  # pyarrow's errors: ArrowInvalid, ArrowTypeError, …
            reason = f"cannot be written as Parquet with the rest of its class: {exc}"[:300]
            refused.update({index: reason for index, _ in members})
            continue
        key = (
            f"{prefix}/region={region}/accountId={account_id}/eventDay={day}/"
            f"{tenant}_{class_uid}_{base}.parquet"
        )
        objects.append(object_of(key, body, len(rows)))
    return objects, refused
