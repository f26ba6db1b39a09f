"""Encoder throughput: each xavyo_siem.format encoder beside what a Python user would pick.

Run: .venv/bin/python benchmarks/bench_formats.py [--events 200000] [--repeat 3]

Every encoder runs on the same events (xavyo_siem.sample.generate_events), one process, one
core, inside the same harness: each record is appended to a batch that is dropped every 1,000
records, as a pipeline would send it. The best of `--repeat` runs is reported. Events are
generated first and frozen out of the garbage collector's view (`gc.freeze`), so no encoder
pays for collecting the benchmark's own 200,000 events.

The alternatives, each used the way its documentation shows, configured to write the same
fields:

* CEF: `cefevent.CEFEvent` (PyPI `cefevent`); one instance reused with `reset()` per event,
  which is cheaper for it than a new instance per event. It has no `outcome` key.
* RFC 5424: `rfc5424logging.Rfc5424SysLogHandler.build_msg` (PyPI `rfc5424-logging-handler`)
  on a LogRecord carrying the event's time, MSGID and SD, with the stdlib-JSON body. It
  returns bytes, so our row is measured with `.encode()` too.
* JSON lines: stdlib `json.dumps(event.to_dict())`; `orjson.dumps(event.to_dict())` is shown
  as a reference for what orjson alone gives.
* CSV: stdlib `csv.DictWriter` (QUOTE_ALL) over `to_dict()` rows, against our `CsvWriter`
  (formula guard on), both writing to a sink that discards the text.
* OCSF: `ocsf_emitter` (PyPI `ocsf-emitter`, OCSF 1.5.0 Pydantic models): every event built
  with `build_authentication` (user, severity, message, time, service) and written by
  `emit_json`, which validates it. It writes far fewer attributes than our `OcsfFormatter`
  (one class, no metadata ids, no actor, endpoint, request or unmapped fields), so the
  comparison flatters it.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ocsf_emitter
import orjson
from cefevent import CEFEvent
from ocsf_emitter.defaults import Severity
from ocsf_emitter.domain import UserRef
from rfc5424logging import Rfc5424SysLogHandler

from xavyo_siem.format import (
    CSV_COLUMNS,
    CefFormatter,
    CsvWriter,
    OcsfFormatter,
    SyslogFormatter,
    to_json,
)
from xavyo_siem.model import AuditEvent, to_epoch_us
from xavyo_siem.sample import generate_events

from machine import describe_machine

BATCH = 1000


class _Sink:
    """A text file that forgets what it is given."""

    def write(self, text: str) -> int:
        return len(text)


def _run_records(encode: Callable[[AuditEvent], object], events: list[AuditEvent]) -> float:
    batch: list[object] = []
    append = batch.append
    start = time.perf_counter()
    for event in events:
        append(encode(event))
        if len(batch) >= BATCH:
            batch.clear()
    return time.perf_counter() - start


def _run_stream(
    write_all: Callable[[Iterable[AuditEvent]], object], events: list[AuditEvent]
) -> float:
    start = time.perf_counter()
    for index in range(0, len(events), BATCH):
        write_all(events[index : index + BATCH])
    return time.perf_counter() - start


# -- the alternatives ------------------------------------------------------------------------


def cefevent_encoder() -> Callable[[AuditEvent], str]:
    """CEF with cefevent: set each prefix and field, then build_cef()."""
    cef = CEFEvent()

    def encode(event: AuditEvent) -> str:
        cef.reset()
        cef.set_prefix("deviceVendor", "Xavyo")
        cef.set_prefix("deviceProduct", "IDP")
        cef.set_prefix("deviceVersion", "0.1.0")
        cef.set_prefix("signatureId", event.event_type)
        cef.set_prefix("name", event.event_name or event.event_type)
        cef.set_prefix("severity", event.severity)
        cef.set_field("rt", to_epoch_us(event.timestamp) // 1000)
        cef.set_field("externalId", str(event.event_id))
        cef.set_field("cat", event.category.value)
        pairs: list[tuple[str, Any]] = [
            ("act", event.action),
            ("suser", event.actor_email),
            ("suid", event.actor_id),
            ("duser", event.target_user),
            ("reason", event.reason),
            ("requestClientApplication", event.user_agent),
        ]
        ip = event.source_ip
        if ip is not None:
            pairs += (
                [("c6a2", ip), ("c6a2Label", "sourceIPv6Address")] if ":" in ip else [("src", ip)]
            )
        pairs += [("cs1Label", "tenantId"), ("cs1", str(event.tenant_id))]
        pairs += [("cs2Label", "sessionId"), ("cs2", event.session_id)]
        pairs += [("cs3Label", "requestId"), ("cs3", event.request_id)]
        pairs += [("cs4Label", "targetResource"), ("cs4", event.target_resource)]
        if event.metadata:
            pairs += [("cs5Label", "metadata"), ("cs5", json.dumps(dict(event.metadata)))]
        for key, value in pairs:
            if value is not None:
                cef.set_field(key, value)
        result: str = cef.build_cef()
        return result

    return encode


def rfc5424_handler_encoder() -> Callable[[AuditEvent], bytes]:
    """RFC 5424 with rfc5424-logging-handler: build_msg on a LogRecord per event."""
    handler = Rfc5424SysLogHandler(
        stream=io.BytesIO(),
        facility=13,
        hostname="idp1.example.com",
        appname="xavyo-siem",
        procid="-",
        enterprise_id=32473,
        utc_timestamp=True,
    )
    levels = {s: ("INFO" if s <= 3 else "NOTICE" if s <= 5 else "WARNING") for s in range(11)}

    def encode(event: AuditEvent) -> bytes:
        body = json.dumps(event.to_dict())
        record = logging.LogRecord("xavyo-siem", logging.INFO, __file__, 0, body, None, None)
        record.levelname = levels[event.severity]
        record.created = to_epoch_us(event.timestamp) / 1e6
        record.msgid = event.event_type
        params = {
            "eventId": str(event.event_id),
            "tenantId": str(event.tenant_id),
            "eventType": event.event_type,
            "category": event.category.value,
            "severity": str(event.severity),
        }
        for name, value in (
            ("outcome", event.outcome),
            ("action", event.action),
            ("actorId", event.actor_id),
            ("actorEmail", event.actor_email),
            ("targetUser", event.target_user),
            ("sourceIp", event.source_ip),
            ("sessionId", event.session_id),
            ("requestId", event.request_id),
        ):
            if value is not None:
                params[name] = str(value)
        record.structured_data = {"xavyo": params}
        message: bytes = handler.build_msg(record)
        return message

    return encode


def stdlib_json_encoder(event: AuditEvent) -> str:
    """JSON with the standard library."""
    return json.dumps(event.to_dict())


def orjson_to_dict_encoder(event: AuditEvent) -> str:
    """JSON with orjson over to_dict() (reference only)."""
    return orjson.dumps(event.to_dict()).decode()


def ocsf_emitter_encoder() -> Callable[[AuditEvent], str]:
    """OCSF with ocsf-emitter: an Authentication event per audit event, then emit_json."""
    product = ocsf_emitter.configure_product(name="IDP", vendor_name="Xavyo", version="0.1.0")
    levels = [Severity.INFORMATIONAL] * 2 + [Severity.LOW] * 2 + [Severity.MEDIUM] * 3
    levels += [Severity.HIGH] * 2 + [Severity.CRITICAL] * 2

    def encode(event: AuditEvent) -> str:
        built = ocsf_emitter.build_authentication(
            user=UserRef(uid=event.actor_id, name=event.actor_email),
            severity=levels[event.severity],
            message=event.event_name,
            service_name="Xavyo IDP",
            time_ms=to_epoch_us(event.timestamp) // 1000,
            product=product,
        )
        return ocsf_emitter.emit_json(built)

    return encode


def dictwriter_stream() -> Callable[[Iterable[AuditEvent]], object]:
    """CSV with csv.DictWriter over to_dict() rows, metadata as a JSON cell."""
    writer = csv.DictWriter(_Sink(), fieldnames=CSV_COLUMNS, quoting=csv.QUOTE_ALL)
    writer.writeheader()

    def rows(events: Iterable[AuditEvent]) -> Iterable[dict[str, Any]]:
        for event in events:
            row = event.to_dict()
            if "metadata" in row:
                row["metadata"] = json.dumps(row["metadata"])
            yield row

    return lambda events: writer.writerows(rows(events))


# -- the table -------------------------------------------------------------------------------


@dataclass
class Contest:
    """One encoder of ours against one alternative (or none), and its target."""

    encoder: str
    ours: Callable[[], float]
    alternative: str = ""
    theirs: Callable[[], float] | None = None
    target: int | None = None


def _measure(contests: list[Contest], count: int, repeat: int) -> dict[int, float]:
    """Best events/s of every runner; ours and theirs alternate, so load hits both alike."""
    best: dict[int, float] = {}
    for _ in range(repeat):
        for contest in contests:
            for run in (contest.ours, contest.theirs):
                if run is not None:
                    best[id(run)] = max(best.get(id(run), 0.0), count / run())
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    events = list(generate_events(args.events, tenants=args.tenants, seed=args.seed))
    gc.collect()
    gc.freeze()

    syslog_json = SyslogFormatter(hostname="idp1.example.com")
    syslog_cef = SyslogFormatter(hostname="idp1.example.com", body="cef")

    def syslog_json_bytes(event: AuditEvent) -> bytes:
        return syslog_json(event).encode()

    def ours_csv(batch: Iterable[AuditEvent], writer: CsvWriter = CsvWriter(_Sink())) -> int:
        return writer.write_many(batch)

    def rec(encode: Callable[[AuditEvent], object]) -> Callable[[], float]:
        return lambda: _run_records(encode, events)

    def stream(write_all: Callable[[Iterable[AuditEvent]], object]) -> Callable[[], float]:
        return lambda: _run_stream(write_all, events)

    ours_json = rec(to_json)
    contests = [
        Contest("CEF (`CefFormatter`)", rec(CefFormatter()),
                "cefevent 0.5", rec(cefevent_encoder()), 150_000),
        Contest("RFC 5424, JSON body (`SyslogFormatter` + `.encode()`)", rec(syslog_json_bytes),
                "rfc5424-logging-handler 1.4 + stdlib json", rec(rfc5424_handler_encoder()),
                120_000),
        Contest('RFC 5424, CEF body (`SyslogFormatter(body="cef")`)', rec(syslog_cef)),
        Contest("JSON lines (`to_json`)", ours_json,
                "stdlib json", rec(stdlib_json_encoder), 500_000),
        Contest("JSON lines (`to_json`)", ours_json,
                "orjson over to_dict() (reference)", rec(orjson_to_dict_encoder)),
        Contest("CSV (`CsvWriter`, formula guard on)", stream(ours_csv),
                "stdlib csv.DictWriter", stream(dictwriter_stream()), 120_000),
        Contest("OCSF 1.5.0 (`OcsfFormatter`)", rec(OcsfFormatter()),
                "ocsf-emitter 0.3 (Authentication only)", rec(ocsf_emitter_encoder()), 150_000),
    ]  # fmt: skip
    best = _measure(contests, len(events), args.repeat)

    print(f"Machine: {describe_machine()}")
    print(f"{len(events):,} sample events, {args.tenants} tenants, best of {args.repeat} runs.\n")
    print("| encoder | ours, events/s | target | alternative | alternative, events/s | ratio |")
    print("| --- | ---: | --- | --- | ---: | ---: |")
    for c in contests:
        ours = best[id(c.ours)]
        target = (
            ""
            if c.target is None
            else f">= {c.target:,} " + ("met" if ours >= c.target else "MISSED")
        )
        theirs = best[id(c.theirs)] if c.theirs is not None else None
        shown = "" if theirs is None else f"{theirs:,.0f}"
        ratio = "" if theirs is None else f"{ours / theirs:.1f}x"
        print(f"| {c.encoder} | {ours:,.0f} | {target} | {c.alternative} | {shown} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
