"""Amazon Security Lake objects: OCSF records as Parquet, one object per class and event day,
read back with pyarrow; and the settings of a Security Lake destination."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from xavyo_siem.delivery import S3Config, validate_destination
from xavyo_siem.delivery.base import Record
from xavyo_siem.delivery.s3_parquet import plan_parquet_objects
from xavyo_siem.destinations import DestinationSpec, check_destination
from xavyo_siem.errors import InvalidDestination
from xavyo_siem.model import DeliveryType, ExportFormat

DAY1 = int(datetime(2026, 1, 5, 23, 59, tzinfo=UTC).timestamp() * 1000)
DAY2 = DAY1 + 120_000  # two minutes later: 2026-01-06
TENANT = "5f0c9a64-1111-4222-8333-444455556666"


def ocsf(n: int, class_uid: int, time_ms: int, **extra: Any) -> Record:
    event = {
        "class_uid": class_uid,
        "time": time_ms,
        "activity_id": 1,
        "metadata": {"uid": f"00000000-0000-4000-8000-{n:012d}", "version": "1.1.0"},
        "user": {"name": f"user{n}"},
        **extra,
    }
    return Record(f"00000000-0000-4000-8000-{n:012d}", time_ms * 1000, orjson.dumps(event).decode())


def plan(records: list[Record], name: str | None = "9.0-9.9") -> tuple[list, dict[int, str]]:
    return plan_parquet_objects(
        records,
        prefix="ext/xavyo/1.0",
        region="eu-west-1",
        account_id="123456789012",
        tenant=TENANT,
        name=name,
    )


def rows_of(body: bytes) -> list[dict[str, Any]]:
    return pq.read_table(io.BytesIO(body)).to_pylist()


def test_one_object_per_class_and_day_under_the_source_partitions() -> None:
    """Classes and days are split; keys follow the custom source's layout."""
    records = [
        ocsf(1, 3002, DAY1),
        ocsf(2, 3005, DAY1),
        ocsf(3, 3002, DAY2),
        ocsf(4, 3002, DAY1 + 1),
    ]
    objects, refused = plan(records)
    assert refused == {}
    assert [o.key for o in objects] == [
        f"ext/xavyo/1.0/region=eu-west-1/accountId=123456789012/eventDay=20260105/"
        f"{TENANT}_3002_9.0-9.9.parquet",
        f"ext/xavyo/1.0/region=eu-west-1/accountId=123456789012/eventDay=20260106/"
        f"{TENANT}_3002_9.0-9.9.parquet",
        f"ext/xavyo/1.0/region=eu-west-1/accountId=123456789012/eventDay=20260105/"
        f"{TENANT}_3005_9.0-9.9.parquet",
    ]
    assert [row["user"]["name"] for row in rows_of(objects[0].body)] == ["user1", "user4"]
    assert [o.records for o in objects] == [2, 1, 1]


def test_rows_are_sorted_by_time_and_keep_every_field() -> None:
    """Within an object rows go by `time`; nested objects come back as they were sent."""
    records = [ocsf(1, 3002, DAY1 + 50), ocsf(2, 3002, DAY1 + 10, status_id=2)]
    (obj,), _ = plan(records)
    rows = rows_of(obj.body)
    assert [row["time"] for row in rows] == [DAY1 + 10, DAY1 + 50]
    assert rows[0]["status_id"] == 2
    assert rows[1]["status_id"] is None  # keys of every row unified
    assert rows[0]["metadata"] == {
        "uid": "00000000-0000-4000-8000-000000000002",
        "version": "1.1.0",
    }
    assert pq.ParquetFile(io.BytesIO(obj.body)).metadata.row_group(0).column(0).compression == (
        "ZSTD"
    )


def test_the_same_batch_gives_the_same_bytes() -> None:
    """A resend overwrites with identical Parquet."""
    records = [ocsf(n, 3002, DAY1 + n) for n in range(20)]
    assert [o.body for o in plan(records)[0]] == [o.body for o in plan(records)[0]]


def test_empty_objects_are_left_out() -> None:
    """Parquet cannot store a struct without fields: `{}` and `[]` values are dropped."""
    (obj,), refused = plan([ocsf(1, 3002, DAY1, unmapped={}, observables=[])])
    assert refused == {}
    assert "unmapped" not in rows_of(obj.body)[0]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("CEF:0|xavyo|…", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"time": 1}', "class_uid"),
        ('{"class_uid": 3002, "time": "2026-01-05"}', "time"),
        ('{"class_uid": true, "time": 1}', "class_uid"),
    ],
)
def test_a_record_that_is_no_ocsf_event_is_refused_alone(text: str, why: str) -> None:
    """A record without integer class_uid and time is refused by index; the rest is written."""
    bad = Record("00000000-0000-4000-8000-00000000000b", DAY1 * 1000, text)
    objects, refused = plan([ocsf(1, 3002, DAY1), bad])
    assert list(refused) == [1]
    assert why in refused[1]
    assert len(objects) == 1


def test_a_field_of_two_types_refuses_its_group_with_the_reason() -> None:
    """Rows of one class whose field changes type cannot share a Parquet schema."""
    records = [ocsf(1, 3002, DAY1, status_id=1), ocsf(2, 3002, DAY1, status_id="x")]
    objects, refused = plan(records)
    assert objects == []
    assert set(refused) == {0, 1}
    assert "Parquet" in refused[0]


def lake(**options: Any) -> S3Config:
    config = validate_destination(
        "s3",
        "s3://aws-security-data-lake-eu-west-1-abc/ext/xavyo/1.0",
        {"layout": "security_lake", "account_id": "123456789012", **options},
        development=False,
    )
    assert isinstance(config, S3Config)
    return config


def test_a_security_lake_destination_reads_its_location_and_account() -> None:
    """The prefix is the source's location; the account id its partition."""
    config = lake(region="eu-west-1")
    assert (config.layout, config.prefix, config.account_id) == (
        "security_lake",
        "ext/xavyo/1.0",
        "123456789012",
    )


@pytest.mark.parametrize(
    ("endpoint", "options", "field"),
    [
        ("s3://lake-bucket/ext/xavyo", {}, "options.account_id"),
        ("s3://lake-bucket/xavyo", {"account_id": "1"}, "endpoint"),
        ("s3://lake-bucket/ext/a/b/c", {"account_id": "1"}, "endpoint"),
        ("s3://lake-bucket/ext/xavyo", {"account_id": "a b"}, "options.account_id"),
        ("s3://lake-bucket/ext/xavyo", {"account_id": "1", "layout": "lake"}, "options.layout"),
    ],
)
def test_a_security_lake_destination_refuses_what_does_not_fit(
    endpoint: str, options: dict[str, str], field: str
) -> None:
    """Without an account id, outside `ext/<source>[/<version>]` or with a bad value: refused."""
    with pytest.raises(InvalidDestination) as caught:
        validate_destination(
            "s3", endpoint, {"layout": "security_lake", **options}, development=False
        )
    assert caught.value.field == field


def test_security_lake_takes_ocsf_only() -> None:
    """Another format is refused naming `format`: Security Lake reads OCSF."""
    spec = DestinationSpec(
        name="lake",
        delivery_type=DeliveryType.S3,
        format=ExportFormat.JSON,
        endpoint="s3://lake-bucket/ext/xavyo",
        options={"layout": "security_lake", "account_id": "123456789012"},
    )
    with pytest.raises(InvalidDestination) as caught:
        check_destination(spec, development=False)
    assert caught.value.field == "format"
    assert "ocsf" in caught.value.reason
