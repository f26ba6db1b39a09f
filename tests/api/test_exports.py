"""Batch exports over HTTP: create, list, get, cancel, and download the file and manifest.

Jobs are queued by the API and carried out here by a `BatchExporter`, as a worker of
`xavyo-siem run` would.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
from test_auth import add_udp

from format_parsers import parse_ocsf
from xavyo_siem.batch import BatchExporter, resume_export_job
from xavyo_siem.model import AuditEvent, BatchExportJob
from xavyo_siem.sample import DEFAULT_START, generate_events
from xavyo_siem.store import append_events

from conftest import Api

START = DEFAULT_START.isoformat()
END = (DEFAULT_START + timedelta(days=30)).isoformat()


def store_events(api: Api, count: int, seed: int = 1) -> list[dict[str, Any]]:
    events = []
    for event in generate_events(count, 1, seed=seed):
        data = event.to_dict()
        data["tenant_id"] = str(api.tenant)
        events.append(data)
    with api.engine.begin() as conn:
        append_events(conn, [AuditEvent.from_dict(e) for e in events])
    return events


async def run_job(api: Api, job_id: str) -> BatchExportJob:
    """Carry out a queued job now, as a worker would."""
    exporter = BatchExporter(engine=api.engine)
    job = resume_export_job(
        api.engine,
        tenant_id=api.tenant,
        job_id=UUID(job_id),
        owner=exporter.owner,
        ttl=timedelta(seconds=30),
    )
    return await exporter.run(job)


async def queue_file_export(api: Api, fmt: str) -> dict[str, Any]:
    """Queue a file export of [START, END) in `fmt` as the tenant's admin; the job (201)."""
    created = await api.client.post(
        api.path("/exports"),
        headers=api.as_("admin"),
        json={"start": START, "end": END, "format": fmt},
    )
    assert created.status_code == 201, created.text
    job: dict[str, Any] = created.json()
    return job


async def test_a_file_export_is_queued_run_and_downloaded_with_its_manifest(api: Api) -> None:
    """The file holds every event of the range; the manifest's hash matches the download."""
    events = store_events(api, 200)
    job = await queue_file_export(api, "csv")
    assert (job["status"], job["target_kind"], job["downloadable"]) == ("pending", "file", False)
    assert "/" not in job["target"]
    early = await api.client.get(api.path(f"/exports/{job['id']}/file"), headers=api.as_("viewer"))
    assert early.status_code == 409
    done = await run_job(api, job["id"])
    assert done.status.value == "completed"
    shown = (
        await api.client.get(api.path(f"/exports/{job['id']}"), headers=api.as_("viewer"))
    ).json()
    assert (shown["status"], shown["exported"], shown["downloadable"]) == ("completed", 200, True)
    listed = await api.client.get(api.path("/exports"), headers=api.as_("viewer"))
    assert [j["id"] for j in listed.json()] == [job["id"]]
    file = await api.client.get(api.path(f"/exports/{job['id']}/file"), headers=api.as_("viewer"))
    manifest = await api.client.get(
        api.path(f"/exports/{job['id']}/manifest"), headers=api.as_("viewer")
    )
    assert file.status_code == 200
    assert file.headers["content-type"].startswith("text/csv")
    assert "attachment" in file.headers["content-disposition"]
    data = orjson.loads(manifest.content)
    assert data["sha256"] == hashlib.sha256(file.content).hexdigest()
    assert data["events"] == 200
    rows = list(csv.DictReader(io.StringIO(file.content.decode())))
    assert sorted(row["event_id"] for row in rows) == sorted(e["event_id"] for e in events)


async def test_an_ocsf_export_downloads_as_ocsf_json_lines(api: Api) -> None:
    """An `ocsf` export is named .ocsf.jsonl, served as NDJSON, one valid OCSF event per line."""
    events = store_events(api, 20)
    job = await queue_file_export(api, "ocsf")
    assert job["target"].endswith(".ocsf.jsonl")
    assert (await run_job(api, job["id"])).status.value == "completed"
    file = await api.client.get(api.path(f"/exports/{job['id']}/file"), headers=api.as_("viewer"))
    assert file.status_code == 200
    assert file.headers["content-type"].startswith("application/x-ndjson")
    records = [parse_ocsf(line) for line in file.content.decode().splitlines()]
    assert sorted(r.fields["event_id"] for r in records) == sorted(e["event_id"] for e in events)


async def test_a_queued_export_can_be_cancelled_once(api: Api) -> None:
    """Cancel stops a pending job at once; cancelling it again is a 409."""
    store_events(api, 20, seed=2)
    job = (
        await api.client.post(
            api.path("/exports"), headers=api.as_("admin"), json={"start": START, "end": END}
        )
    ).json()
    cancelled = await api.client.post(
        api.path(f"/exports/{job['id']}/cancel"), headers=api.as_("admin")
    )
    assert cancelled.json()["status"] == "cancelled"
    again = await api.client.post(
        api.path(f"/exports/{job['id']}/cancel"), headers=api.as_("admin")
    )
    assert again.status_code == 409
    gone = await api.client.get(api.path(f"/exports/{job['id']}/file"), headers=api.as_("admin"))
    assert gone.status_code == 409


async def test_a_destination_export_names_one_of_the_tenants_destinations(api: Api) -> None:
    """A destination export is queued for that destination, in its format; an unknown one
    is a 422 naming `destination`."""
    store_events(api, 10, seed=3)
    destination = add_udp(api.engine, api.tenant)
    queued = await api.client.post(
        api.path("/exports"),
        headers=api.as_("admin"),
        json={"start": START, "end": END, "destination": destination.name},
    )
    assert queued.status_code == 201, queued.text
    assert (queued.json()["target"], queued.json()["format"]) == (str(destination.id), "cef")
    unknown = await api.client.post(
        api.path("/exports"),
        headers=api.as_("admin"),
        json={"start": START, "end": END, "destination": "nope"},
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "destination"]


async def test_bad_export_requests_are_422_and_store_no_job(api: Api) -> None:
    """End before start, a naive time, an empty range and an unknown option are refused."""
    store_events(api, 10, seed=4)
    for body, loc in (
        ({"start": END, "end": START}, ["body", "end"]),
        ({"start": "2026-01-01T00:00:00", "end": END}, ["body", "start"]),
        ({"start": "2001-01-01T00:00:00Z", "end": "2001-02-01T00:00:00Z"}, ["body", "range"]),
        ({"start": START, "end": END, "options": {"nonsense": 1}}, ["body", "options", "nonsense"]),
    ):
        response = await api.client.post(api.path("/exports"), headers=api.as_("admin"), json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"][: len(loc)] == loc
    assert (await api.client.get(api.path("/exports"), headers=api.as_("admin"))).json() == []


async def test_refused_export_requests_leave_the_export_directory_unchanged(
    api: Api, tmp_path: Path
) -> None:
    """Every refused request (schema, rule, store, role, tenant, size) leaves the export
    directory as it was: no tenant folder is made until a request is accepted."""
    exports = tmp_path / "exports"  # the `api` fixture's export directory
    admin = api.as_("admin")

    async def refused(body: Any, status: int, headers: dict[str, str] = admin) -> None:
        answer = await api.client.post(api.path("/exports"), headers=headers, json=body)
        assert answer.status_code == status, (body, answer.text)
        assert not exports.exists(), body

    await refused({"start": START, "end": END}, 422)  # the tenant has no events yet
    store_events(api, 10, seed=7)
    destination = add_udp(api.engine, api.tenant)
    for body in (
        {"start": END, "end": START},
        {"start": "2026-01-01T00:00:00", "end": END},
        {"start": "2001-01-01T00:00:00Z", "end": "2001-02-01T00:00:00Z"},
        {"start": START, "end": END, "options": {"nonsense": 1}},
        {"start": START, "end": END, "format": "xml"},
        {"start": START, "end": END, "filters": {"event_types": [""]}},
        {"start": START, "end": END, "filters": {"categories": ["security"]}, "extra": 1},
        {"start": START, "end": END, "destination": "nope"},
        {"start": START, "end": END, "destination": destination.name, "format": "json"},
        {"start": START, "end": END, "destination": destination.name, "options": {"a": 1}},
        ["not", "an", "object"],
    ):
        await refused(body, 422)
    await refused({"start": START, "end": END}, 403, api.as_("viewer"))
    await refused({"start": START, "end": END}, 404, api.as_("other_admin"))
    too_big = await api.client.post(
        api.path("/exports"),
        headers={**admin, "Content-Type": "application/json"},
        content=b" " * (11 << 20),
    )
    assert too_big.status_code == 413
    assert not exports.exists()
    accepted = await api.client.post(
        api.path("/exports"), headers=admin, json={"start": START, "end": END}
    )
    assert accepted.status_code == 201, accepted.text
    assert [p.name for p in exports.iterdir()] == [str(api.tenant)]
    assert (exports / str(api.tenant)).stat().st_mode & 0o777 == 0o700


async def test_exports_are_scoped_to_the_tenant_and_creating_needs_admin(api: Api) -> None:
    """Another tenant's token sees 404 for a job, a viewer cannot create one, and an unknown
    job id is 404."""
    store_events(api, 10, seed=5)
    job = (
        await api.client.post(
            api.path("/exports"), headers=api.as_("admin"), json={"start": START, "end": END}
        )
    ).json()
    for suffix in ("", "/file", "/manifest"):
        stranger = await api.client.get(
            api.path(f"/exports/{job['id']}{suffix}"), headers=api.as_("other_admin")
        )
        assert stranger.status_code == 404
    elsewhere = await api.client.get(
        api.path(f"/exports/{job['id']}", api.other), headers=api.as_("other_admin")
    )
    assert elsewhere.status_code == 404
    viewer = await api.client.post(
        api.path("/exports"), headers=api.as_("viewer"), json={"start": START, "end": END}
    )
    assert viewer.status_code == 403
    missing = await api.client.get(api.path(f"/exports/{uuid4()}"), headers=api.as_("admin"))
    assert missing.status_code == 404
    assert missing.json()["detail"][0]["loc"] == ["path", "job_id"]
