"""Batch exports of a tenant: create, list, get, cancel; download the file and its manifest.

Jobs are created with `batch.create_export_job` and run by the workers of `xavyo-siem run`
(in the same process with `run --api`). A file export is written under the service's
export directory (`<export dir>/<tenant>/`), named by the service: a tenant never chooses
a path on the service's host. Downloads stream the file and its manifest once the job
completed.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from xavyo_siem.api.deps import ActorDep, AdminDep, ApiContext, ContextDep, TenantDep
from xavyo_siem.api.errors import ApiError, error_responses
from xavyo_siem.api.schemas import ExportCreate, ExportJobPublic
from xavyo_siem.batch import (
    ExportRequest,
    cancel_export_job,
    create_export_job,
    find_export_job,
)
from xavyo_siem.errors import InvalidExport, InvalidFilter
from xavyo_siem.manifest import manifest_path
from xavyo_siem.model import BatchExportJob, EventFilter, ExportFormat, ExportTarget, JobStatus
from xavyo_siem.store.jobs import list_jobs

__all__ = ["router"]

router = APIRouter(prefix="/v1/tenants/{tenant_id}/exports", tags=["exports"])

_READ = error_responses(401, 404, 422)
_WRITE = error_responses(401, 403, 404, 409, 413, 422)
_DOWNLOAD = error_responses(401, 404, 409, 422)
_EXTENSIONS: Final = {
    ExportFormat.CSV: ("csv", "text/csv"),
    ExportFormat.JSON: ("jsonl", "application/x-ndjson"),
    ExportFormat.CEF: ("cef", "text/plain"),
    ExportFormat.SYSLOG: ("log", "text/plain"),
    ExportFormat.OCSF: ("ocsf.jsonl", "application/x-ndjson"),
}
JobPath = Annotated[UUID, PathParam(description="The export job (UUID).")]


def _tenant_dir(context: ApiContext, tenant_id: UUID) -> Path:
    return context.export_dir / str(tenant_id)


def _downloadable(context: ApiContext, job: BatchExportJob) -> Path | None:
    """The file of a completed file export under this service's export directory, or None."""
    if job.target_kind is not ExportTarget.FILE or job.status is not JobStatus.COMPLETED:
        return None
    path = Path(job.target).resolve()
    if not path.is_relative_to(_tenant_dir(context, job.tenant_id).resolve()):
        return None  # written by an operator elsewhere: not served over the API
    return path


def _public(context: ApiContext, job: BatchExportJob) -> dict[str, Any]:
    data = job.to_dict()
    for internal in ("owner", "lease_expires_at", "attempts"):
        data.pop(internal)
    if job.target_kind is ExportTarget.FILE:
        data["target"] = Path(job.target).name
    if job.error:
        data["error"] = job.error.replace(str(context.export_dir), "<export dir>")
    data["downloadable"] = _downloadable(context, job) is not None
    return data


def _job(context: ApiContext, tenant_id: UUID, job_id: UUID) -> BatchExportJob:
    try:
        return find_export_job(context.engine, job_id=job_id, tenant_id=tenant_id)
    except InvalidExport:
        raise ApiError(404, ["path", "job_id"], "not found") from None


@router.post("", status_code=201, response_model=ExportJobPublic, responses=_WRITE)
def create_export(
    tenant_id: AdminDep, body: ExportCreate, context: ContextDep, actor: ActorDep
) -> dict[str, Any]:
    """Queue an export of `[start, end)` to a file (downloadable when completed) or to one
    of the tenant's destinations; the workers of `xavyo-siem run` carry it out."""
    output = None
    if body.destination is None:  # the folder is made only once the request passed
        extension = _EXTENSIONS[body.format or ExportFormat.CSV][0]
        name = f"export-{body.start:%Y%m%d}-{uuid.uuid4().hex[:12]}.{extension}"
        output = _tenant_dir(context, tenant_id) / name
    try:
        filters = None if body.filters is None else EventFilter.from_dict(body.filters.model_dump())
    except InvalidFilter as exc:
        raise InvalidExport(exc.field, exc.reason) from None
    job = create_export_job(
        context.engine,
        ExportRequest(
            tenant_id=tenant_id,
            start=body.start,
            end=body.end,
            output=output,
            destination=body.destination,
            format=body.format,
            filters=filters,
            options=body.options,
            make_directory=True,
        ),
        actor=actor,
    )
    return _public(context, job)


@router.get("", response_model=list[ExportJobPublic], responses=_READ)
def list_exports(
    tenant_id: TenantDep, context: ContextDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[dict[str, Any]]:
    """The tenant's export jobs, newest first."""
    with context.engine.connect() as conn:
        jobs = list_jobs(conn, tenant_id=tenant_id, limit=limit)
    return [_public(context, job) for job in jobs]


@router.get("/{job_id}", response_model=ExportJobPublic, responses=_READ)
def get_export(tenant_id: TenantDep, job_id: JobPath, context: ContextDep) -> dict[str, Any]:
    """One export job: status, progress, error."""
    return _public(context, _job(context, tenant_id, job_id))


@router.post("/{job_id}/cancel", response_model=ExportJobPublic, responses=_WRITE)
def cancel_export(
    tenant_id: AdminDep, job_id: JobPath, context: ContextDep, actor: ActorDep
) -> dict[str, Any]:
    """Cancel a job: a queued one at once, a running one at its next checkpoint (its partial
    file is deleted; a destination keeps what it already received)."""
    job = _job(context, tenant_id, job_id)
    if job.finished:
        raise ApiError(409, ["path", "job_id"], f"the job is already {job.status.value}")
    cancelled = cancel_export_job(context.engine, tenant_id=tenant_id, job_id=job_id, actor=actor)
    return _public(context, cancelled)


def _file_of(context: ApiContext, tenant_id: UUID, job_id: UUID) -> tuple[BatchExportJob, Path]:
    job = _job(context, tenant_id, job_id)
    path = _downloadable(context, job)
    if path is None:
        why = (
            f"the job is {job.status.value}; download once it completed"
            if job.status is not JobStatus.COMPLETED
            else "the job did not write a file this service may serve"
        )
        raise ApiError(409, ["path", "job_id"], why)
    return job, path


_FILE_BODY: Final = {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}


@router.get(
    "/{job_id}/file",
    response_class=FileResponse,
    responses={200: {"description": "The exported file.", **_FILE_BODY}, **_DOWNLOAD},
)
def download_export(tenant_id: TenantDep, job_id: JobPath, context: ContextDep) -> FileResponse:
    """The exported file, streamed (CSV, JSON lines, CEF, RFC 5424 or OCSF lines)."""
    job, path = _file_of(context, tenant_id, job_id)
    return FileResponse(path, media_type=_EXTENSIONS[job.format][1], filename=path.name)


@router.get(
    "/{job_id}/manifest",
    response_class=FileResponse,
    responses={200: {"description": "The manifest (JSON).", **_FILE_BODY}, **_DOWNLOAD},
)
def download_manifest(tenant_id: TenantDep, job_id: JobPath, context: ContextDep) -> FileResponse:
    """The export's manifest: range, filters, event count, first and last ids, SHA-256."""
    _, path = _file_of(context, tenant_id, job_id)
    manifest = manifest_path(path)
    if not os.path.exists(manifest):
        raise ApiError(409, ["path", "job_id"], "the manifest of this export is missing")
    return FileResponse(manifest, media_type="application/json", filename=manifest.name)
