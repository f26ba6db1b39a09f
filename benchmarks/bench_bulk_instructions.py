"""CPU per event of the HTTP bulk paths in instructions (valgrind's callgrind), which do not
depend on the machine's load: what the worker pays per event to write, compress and read
the answer of an Elasticsearch `_bulk` request beside a Splunk HEC one, and what the
`_bulk` contract peer pays per document to check and answer it.

Run: .venv/bin/python benchmarks/bench_bulk_instructions.py [--events 10000]

Each part runs twice under `valgrind --tool=callgrind` in a fresh process: once only
preparing its inputs (sample events formatted as JSON, and for the peer the gzip bodies),
once also doing the work; the difference divided by the events is the figure. No
network: the peer's checks run on the bodies directly (the steps of its `_bulk` after the
headers), the worker's answers are those the peer gives to a request that went through.

* `elasticsearch`: `BulkEncoder` per record, requests of 500 (the default spread of a
  batch of 1,000), `gzip_body`, and `classify_bulk_response` of an all-created answer;
* `hec`: `HecEnvelope` per record, requests of 1,000, `gzip_body`, `classify_hec_response`;
* `peer`: the contract peer on each gzip body of 500 documents: inflate, parse and check
  every line, store the ids, answer with `filter_path`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

PARTS = ("elasticsearch", "hec", "peer")


def _work(part: str, events: int) -> None:
    """Prepare the inputs of `part`; with `part` not ending in `:prepare`, do the work."""
    import orjson

    from xavyo_siem.delivery.base import Record
    from xavyo_siem.delivery.elasticsearch_bulk import (
        BULK_FILTER_PATH,
        BulkEncoder,
        classify_bulk_response,
    )
    from xavyo_siem.delivery.hec_replies import HecEnvelope, classify_hec_response
    from xavyo_siem.delivery.http import gzip_body
    from xavyo_siem.format import to_json
    from xavyo_siem.sample import generate_events

    kind, _, prepare_only = part.partition(":")
    records = [Record.of(e, to_json(e)) for e in generate_events(events, 1, seed=1)]
    if kind == "elasticsearch":
        per = 500
        answers = [
            orjson.dumps(
                {
                    "errors": False,
                    "items": [
                        {"create": {"_id": r.event_id, "status": 201}} for r in records[s : s + per]
                    ],
                }
            )
            for s in range(0, events, per)
        ]
        if prepare_only:
            return
        encode = BulkEncoder("create")
        for n, start in enumerate(range(0, events, per)):
            part_records = records[start : start + per]
            gzip_body(b"".join([encode(r) for r in part_records]))
            ids = [r.event_id for r in part_records]
            classify_bulk_response(200, {}, answers[n], ids=ids, op_type="create")
    elif kind == "hec":
        if prepare_only:
            return
        envelope = HecEnvelope(
            event_is_json=True, source="xavyo-siem", sourcetype="xavyo:identity:events"
        )
        for start in range(0, events, 1000):
            gzip_body(b"\n".join([envelope(r) for r in records[start : start + 1000]]))
            classify_hec_response(200, b'{"text":"Success","code":0}', {})
    else:
        from isal import isal_zlib

        from peers.elasticsearch_peer import ElasticsearchPeer, filter_path

        encode = BulkEncoder("create")
        bodies = []
        for start in range(0, events, 500):
            packer = zlib.compressobj(1, zlib.DEFLATED, 31)
            raw = b"".join(encode(r) for r in records[start : start + 500])
            bodies.append(packer.compress(raw) + packer.flush())
        peer = ElasticsearchPeer(api_keys={"bench": "secret-key"}, record=False)
        if prepare_only:
            return
        query = {"filter_path": BULK_FILTER_PATH}
        paths = [path.split(".") for path in BULK_FILTER_PATH.split(",")]
        for body in bodies:  # the steps of the peer's `_bulk` after the headers
            unpacker = isal_zlib.decompressobj(31)
            raw = unpacker.decompress(body, peer.max_content_length + 1)
            assert unpacker.eof
            assert raw.endswith(b"\n")
            operations = peer._parse(raw, "logs-xavyo.audit-default", query)
            targets: dict[str, tuple[bool, str]] = {}
            items = [peer._apply(op, "bench", query, targets) for op in operations]
            errors = any("error" in next(iter(item.values())) for item in items)
            orjson.dumps(filter_path({"took": 1, "errors": errors, "items": items}, paths))
        assert len(peer.stored_ids) == events


def _instructions(part: str, events: int) -> int:
    """Instructions callgrind counts for `_work(part, events)` in a fresh process."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--child", part, "--events", str(events)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found is not None, done.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(PARTS))
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        _work(args.child, args.events)
        return
    print("| part | events | instructions per event |")
    print("| --- | ---: | ---: |")
    for part in args.only.split(","):
        spent = _instructions(part, args.events) - _instructions(f"{part}:prepare", args.events)
        print(f"| {part} | {args.events:,} | {spent / args.events:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
