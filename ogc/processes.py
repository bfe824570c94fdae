"""OGC API - Processes - Part 1: Core (1.0) over the job table (catalog/jobs/queue.py).

Execution is asynchronous only: ``POST /processes/{id}/execution`` queues a job row and a
``terracat worker`` runs it. The job row is the OGC job resource: ``/jobs/{id}`` is its status,
``/results`` its outputs, ``DELETE`` dismisses it; ``/restart`` and ``/log`` are ours.
Processes store links in their outputs relative to the API root (``exports/<job>.mbtiles``):
the server URL depends on the request (proxies, root paths), so ``/results`` resolves them.

Jobs are their owners': the account that executed the process (an upload set's owner for the
ingest jobs of its files). Another account gets no-such-job for them, and ``GET /jobs`` lists
the caller's own jobs only; admins see every job.

Error bodies keep our ``{"code", "description"}`` and add the OGC exception ``type`` (and
``title``) through the error's detail, so one body satisfies both a STAC client and
exception.yaml.
"""

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode, urljoin, urlsplit

import attr
import jsonschema_rs
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Query, Request
from pydantic import BaseModel
from stac_fastapi.types.extension import ApiExtension
from starlette.responses import Response

from catalog.accounts.web import principal_of
from catalog.errors import CatalogError, InvalidParameter, NotFound
from catalog.jobs.queue import JobRecord, JobRepository, JobStatus, Process, ProcessDescription
from catalog.jobs.queue import parse_job_id as _parse_job_id
from catalog.settings import JobSettings
from catalog.timeparse import parse_interval
from catalog.web import base_url, json_response

CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
CONFORMANCE_CLASSES = [
    CONF + name for name in ("core", "ogc-process-description", "json", "job-list", "dismiss")
]
EXCEPTION = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
# The OWS exception code the standard's abstract tests name for bad input data.
INVALID_VALUE = "InvalidParameterValue"
JSON = "application/json"
DISMISS_WAIT_S = 5.0
DISMISS_POLL_S = 0.1


# -- errors -------------------------------------------------------------------------------------
class ProcessNotFound(NotFound):
    """No process with this id is offered here."""

    code = "process.NotFound"

    def __init__(self, process_id: str) -> None:
        super().__init__(
            f"process {process_id!r} does not exist",
            type=EXCEPTION + "no-such-process",
            title="No such process",
        )


class JobNotFound(NotFound):
    """No job with this id (or the id is not a job id at all)."""

    code = "job.NotFound"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id!r} does not exist", type=EXCEPTION + "no-such-job", title="No such job"
        )


class ResultNotReady(CatalogError):
    """The job has no results: it is queued, running or was dismissed."""

    code = "job.ResultNotReady"
    status = 404

    def __init__(self, description: str) -> None:
        super().__init__(description, type=EXCEPTION + "result-not-ready", title="Result not ready")


class JobFailed(CatalogError):
    """The results of a failed job: its own error code, as an exception report.

    422 for every failure: the results request is well formed and the job exists, but what it
    asked for could not be produced; a 5xx would tell clients (and monitoring) that this
    server is broken, which the worker's failure of one job does not mean.
    """

    status = 422

    def __init__(self, job: JobRecord) -> None:
        code = job.error_code or "job.Failed"
        super().__init__(job.error_message or "the job failed", type=code, title="Job failed")
        self.code = code  # type: ignore[misc]  # the job's code, not one per class


def _invalid(description: str) -> InvalidParameter:
    return InvalidParameter(description, type=INVALID_VALUE, title="Invalid parameter value")


@contextmanager
def _no_such_job(job_id: str) -> Iterator[None]:
    """Report a missing or malformed job id as the OGC no-such-job exception."""
    try:
        yield
    except JobNotFound:
        raise
    except NotFound:
        raise JobNotFound(job_id) from None


def parse_job_id(job_id: str) -> uuid.UUID:
    """A job id from a URL, or JobNotFound."""
    with _no_such_job(job_id):
        return _parse_job_id(job_id)


# -- dependency slots ---------------------------------------------------------------------------
def process_registry(request: Request) -> Mapping[str, Process]:
    """The processes offered, by id (set in the app's lifespan)."""
    processes: Mapping[str, Process] = request.app.state.processes
    return processes


def job_repository(request: Request) -> JobRepository:
    """The job table (set in the app's lifespan)."""
    jobs: JobRepository = request.app.state.jobs
    return jobs


Processes = Annotated[Mapping[str, Process], Depends(process_registry)]
Jobs = Annotated[JobRepository, Depends(job_repository)]
ProcessID = Annotated[str, Path(alias="processID", description="A process id.")]
JobID = Annotated[str, Path(alias="jobID", description="A job id.")]


# -- documents ----------------------------------------------------------------------------------
def _link(href: str, rel: str, title: str | None = None, media: str = JSON) -> dict[str, str]:
    link = {"href": href, "rel": rel, "type": media}
    return link | {"title": title} if title else link


def _stamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def process_summary(description: ProcessDescription, base: str) -> dict[str, Any]:
    """processSummary.yaml: what /processes lists."""
    href = f"{base}processes/{description.id}"
    return {
        "id": description.id,
        "title": description.title,
        "description": description.description,
        "version": description.version,
        "keywords": list(description.keywords),
        "jobControlOptions": ["async-execute", "dismiss"],
        "outputTransmission": ["value"],
        "links": [
            _link(href, "self", "Process description"),
            _link(f"{href}/execution", REL + "execute", "Execute (POST)"),
        ],
    }


def process_document(description: ProcessDescription, base: str) -> dict[str, Any]:
    """process.yaml: a summary with inputs and outputs."""
    return {
        **process_summary(description, base),
        "inputs": {
            name: spec.model_dump(by_alias=True) for name, spec in description.inputs.items()
        },
        "outputs": {
            name: spec.model_dump(by_alias=True) for name, spec in description.outputs.items()
        },
    }


def status_info(job: JobRecord, base: str) -> dict[str, Any]:
    """statusInfo.yaml, with our ``attempts`` and, for a failed job, its ``error``."""
    href = f"{base}jobs/{job.id}"
    message = job.message
    if job.status == JobStatus.running and job.cancel_requested:
        message = "cancel requested"  # heartbeats overwrite the message with progress
    doc: dict[str, Any] = {"jobID": str(job.id), "processID": job.process_id, "type": "process",
                           "status": job.status}  # fmt: skip
    if message is not None:
        doc["message"] = message
    for name in ("created", "started", "finished", "updated"):
        if (moment := getattr(job, name)) is not None:
            doc[name] = _stamp(moment)
    doc |= {"progress": job.progress, "attempts": job.attempts}
    if job.status == JobStatus.failed:
        doc["error"] = {"code": job.error_code, "description": job.error_message}
    links = [_link(href, "self", "Job status")]
    if job.status == JobStatus.successful:
        links.append(_link(f"{href}/results", REL + "results", "Job results"))
    links += [_link(f"{href}/log", "log", "Job log"), _link(f"{base}jobs", "up", "Job list")]
    doc["links"] = links
    return doc


def _output_value(value: Any) -> Any:
    # results.yaml: an inline value that is an object must be a qualified value.
    return {"value": value, "mediaType": JSON} if isinstance(value, dict) else value


def resolve_outputs(outputs: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """Outputs whose ``href`` is relative to the API root (as exports store it) made absolute.

    Processes store no server URL (it depends on the request: proxies, root paths); the
    results route resolves their links against its base URL.
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    resolved: dict[str, Any] = {}
    for name, value in outputs.items():
        href = value.get("href") if isinstance(value, dict) else None
        if isinstance(href, str) and not urlsplit(href).scheme and not href.startswith("/"):
            value = {**value, "href": urljoin(base, href)}
        resolved[name] = value
    return resolved


def results_document(job: JobRecord, base: str) -> dict[str, Any]:
    """results.yaml for a successful job (links absolute under ``base``); else the exception."""
    if job.status == JobStatus.successful:
        outputs = resolve_outputs(job.outputs or {}, base)
        return {name: _output_value(v) for name, v in outputs.items()}
    if job.status == JobStatus.failed:
        raise JobFailed(job)
    if job.status == JobStatus.dismissed:
        raise ResultNotReady(f"job {job.id} was dismissed; restart it to run it again")
    raise ResultNotReady(f"job {job.id} is {job.status}; its results are not ready yet")


def _page_links(request: Request, path: str, offset: int, limit: int, more: bool) -> list[Any]:
    base = base_url(request) + path
    query = request.url.query
    links = [_link(f"{base}?{query}" if query else base, "self", "This document")]
    if more:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
        params.append(("offset", str(offset + limit)))
        links.append(_link(f"{base}?{urlencode(params)}", "next", "Next page"))
    return links


# -- execution ----------------------------------------------------------------------------------
class ExecuteRequest(BaseModel):
    """execute.yaml: inputs by id, optionally which outputs and the response form."""

    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] | None = None
    response: Literal["raw", "document"] = "raw"
    subscriber: dict[str, Any] | None = None  # callbacks are not offered; ignored


def _find_process(processes: Mapping[str, Process], process_id: str) -> Process:
    process = processes.get(process_id)
    if process is None:
        raise ProcessNotFound(process_id)
    return process


def _check_schemas(description: ProcessDescription, inputs: Mapping[str, Any]) -> None:
    """Each given input against its JSON schema (and maxOccurs, for arrays of values)."""
    for name, value in inputs.items():
        spec = description.inputs[name]
        values = value if spec.max_occurs > 1 and isinstance(value, list) else [value]
        if len(values) > spec.max_occurs:
            raise _invalid(f"input {name!r} takes at most {spec.max_occurs} value(s)")
        validator = jsonschema_rs.validator_for(spec.schema_)
        for one in values:
            error = next(iter(validator.iter_errors(one)), None)
            if error is not None:
                raise _invalid(f"input {name!r}: {error.message}")


def check_execution(process: Process, body: ExecuteRequest) -> dict[str, Any]:
    """The inputs to store for an execute request; 400 for anything the process refuses."""
    unknown = set(body.outputs or {}) - set(process.description.outputs)
    if unknown:
        raise _invalid(f"unknown output(s): {', '.join(sorted(unknown))}")
    try:
        inputs = process.check_inputs(body.inputs)
        _check_schemas(process.description, inputs)
    except InvalidParameter as exc:
        exc.detail.setdefault("type", INVALID_VALUE)
        raise
    except NotFound as exc:  # an id given as input that cannot exist: the input is wrong
        raise _invalid(exc.description) from exc
    return inputs


def _respond_async(prefer: str | None) -> bool:
    """RFC 7240: whether the client asked for ``respond-async``."""
    tokens = (p.split(";")[0].strip().lower() for p in (prefer or "").split(","))
    return "respond-async" in tokens


def _execute_endpoint(settings: JobSettings) -> Callable[..., Any]:
    async def execute(
        request: Request,
        process_id: ProcessID,
        body: Annotated[ExecuteRequest, Body()],
        processes: Processes,
        jobs: Jobs,
        prefer: Annotated[str | None, Header(description="RFC 7240; always async")] = None,
    ) -> Response:
        """Queue a job (asynchronous execution only); 201 with its status and Location."""
        process = _find_process(processes, process_id)
        inputs = check_execution(process, body)
        inputs = await process.admit(inputs, principal_of(request), request.app.state.accounts)
        described = process.description
        job = await jobs.submit(
            process_id,
            inputs,
            timeout_s=described.timeout_s or settings.default_timeout_s,
            max_attempts=described.max_attempts or settings.max_attempts,
            owner_id=principal_of(request).account_id,  # None: the bootstrap admin
        )
        base = base_url(request)
        headers = {"Location": f"{base}jobs/{job.id}"}
        if _respond_async(prefer):
            headers["Preference-Applied"] = "respond-async"
        return json_response(status_info(job, base), 201, headers)

    return execute


# -- routes -------------------------------------------------------------------------------------
async def get_processes(
    request: Request,
    processes: Processes,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The processes offered here (processList.yaml)."""
    base = base_url(request)
    ids = sorted(processes)
    page = ids[offset : offset + limit]
    more = offset + limit < len(ids)
    return json_response({
        "processes": [process_summary(processes[i].description, base) for i in page],
        "links": _page_links(request, "processes", offset, limit, more),
    })  # fmt: skip


async def get_process(request: Request, process_id: ProcessID, processes: Processes) -> Response:
    """One process description (process.yaml), or no-such-process."""
    process = _find_process(processes, process_id)
    return json_response(process_document(process.description, base_url(request)))


@dataclass
class JobListParams:
    """The job-list query parameters; repeatable or comma-separated lists."""

    limit: Annotated[int, Query(ge=1, le=1000)] = 100
    offset: Annotated[int, Query(ge=0)] = 0
    status: Annotated[list[str] | None, Query(description="Job statuses.")] = None
    process_id: Annotated[list[str] | None, Query(alias="processID")] = None
    types: Annotated[list[str] | None, Query(alias="type", description="Only 'process'.")] = None
    created_in: Annotated[
        str | None,
        Query(alias="datetime", description="Jobs created at this instant or in this interval."),
    ] = None
    min_duration: Annotated[
        float | None, Query(alias="minDuration", ge=0, description="Seconds.")
    ] = None
    max_duration: Annotated[
        float | None, Query(alias="maxDuration", ge=0, description="Seconds.")
    ] = None

    def created(self) -> tuple[datetime | None, datetime | None]:
        """The ``datetime`` filter as an interval (400 search.InvalidDatetime if unreadable)."""
        return parse_interval(self.created_in) if self.created_in else (None, None)

    def statuses(self) -> list[str] | None:
        """The status filter, each value checked."""
        values = _split(self.status)
        bad = [v for v in values or [] if v not in JobStatus.__members__]
        if bad:
            raise _invalid(f"unknown status(es): {', '.join(bad)}")
        return values


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


async def owned_job(request: Request, jobs: JobRepository, job_id: str) -> JobRecord:
    """The caller's job (any job for admins); no-such-job for anyone else's, as for none."""
    with _no_such_job(job_id):
        job = await jobs.get(parse_job_id(job_id))
    if not principal_of(request).owns(job.owner_id):
        raise JobNotFound(job_id)
    return job


async def get_jobs(
    request: Request, jobs: Jobs, params: Annotated[JobListParams, Depends()]
) -> Response:
    """The caller's jobs (admins: everyone's), newest first (jobList.yaml)."""
    statuses, process_ids = params.statuses(), _split(params.process_id)
    principal = principal_of(request)
    owners = None if principal.is_admin else [principal.account_id] if principal.account_id else []
    found: list[JobRecord] = []
    if "process" in (_split(params.types) or ["process"]):  # every job here is a process job
        found = await jobs.list_jobs(
            statuses,
            process_ids,
            params.limit + 1,
            params.offset,
            created=params.created(),
            min_duration_s=params.min_duration,
            max_duration_s=params.max_duration,
            owners=owners,
        )
    more = len(found) > params.limit
    base = base_url(request)
    return json_response({
        "jobs": [status_info(job, base) for job in found[: params.limit]],
        "links": _page_links(request, "jobs", params.offset, params.limit, more),
    })  # fmt: skip


async def get_status(request: Request, job_id: JobID, jobs: Jobs) -> Response:
    """One job's status (statusInfo.yaml), or no-such-job."""
    job = await owned_job(request, jobs, job_id)
    return json_response(status_info(job, base_url(request)))


async def get_results(request: Request, job_id: JobID, jobs: Jobs) -> Response:
    """A successful job's outputs (results.yaml); an exception report otherwise."""
    job = await owned_job(request, jobs, job_id)
    return json_response(results_document(job, base_url(request)))


async def _until_dismissed(jobs: JobRepository, job: JobRecord, wait_s: float) -> JobRecord:
    """A running job's worker honours the cancel within a heartbeat: give it that long."""
    deadline = time.monotonic() + wait_s
    while job.status == JobStatus.running and time.monotonic() < deadline:
        await asyncio.sleep(DISMISS_POLL_S)
        job = await jobs.get(job.id)
    return job


async def dismiss(request: Request, job_id: JobID, jobs: Jobs) -> Response:
    """Dismiss a job: 200 once dismissed; 202 while a running job has yet to stop."""
    before = await owned_job(request, jobs, job_id)
    with _no_such_job(job_id):
        job = await jobs.dismiss(before.id)
        if before.status == JobStatus.accepted:
            # No worker holds a queued job: let its process record the end (an upload file
            # becomes rejected with job.Dismissed) as the worker would have.
            process = request.app.state.processes.get(job.process_id)
            if process is not None:
                await process.failed(job, "job.Dismissed", "the job was dismissed", final=True)
        job = await _until_dismissed(jobs, job, DISMISS_WAIT_S)
    status = 202 if job.status == JobStatus.running else 200
    return json_response(status_info(job, base_url(request)), status)


async def restart(request: Request, job_id: JobID, jobs: Jobs) -> Response:
    """Queue a failed or dismissed job again (not OGC); 409 in any other state."""
    before = await owned_job(request, jobs, job_id)
    with _no_such_job(job_id):
        job = await jobs.restart(before.id)
    return json_response(status_info(job, base_url(request)))


async def get_log(
    request: Request,
    job_id: JobID,
    jobs: Jobs,
    line: Annotated[int, Query(ge=0, description="First line (0-based).")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """A job's log from ``line`` on; ``next`` is where the following call starts."""
    job = await owned_job(request, jobs, job_id)
    lines = await jobs.log(job.id, from_line=line, limit=limit)
    return json_response({"jobID": str(job.id), "status": job.status, "from": line,
                  "next": line + len(lines), "lines": lines})  # fmt: skip


@attr.s
class ProcessesExtension(ApiExtension):
    """OGC API - Processes routes as a stac-fastapi extension (conformance via /conformance).

    ``read_dependencies`` guard every /jobs route, ``write_dependencies`` execution, dismiss
    and restart; the process list and descriptions stay public. ``settings`` gives the timeout
    and attempts of a process whose description leaves them unset.
    """

    settings: JobSettings = attr.ib(factory=JobSettings)
    read_dependencies: list[Any] = attr.ib(factory=list)
    write_dependencies: list[Any] = attr.ib(factory=list)
    conformance_classes: list[str] = attr.ib(factory=lambda: list(CONFORMANCE_CLASSES))
    router: APIRouter = attr.ib(factory=lambda: APIRouter(tags=["OGC API - Processes"]))

    def register(self, app: FastAPI) -> None:
        """Add the routes to ``app``."""
        read, write = list(self.read_dependencies), [*self.read_dependencies,
                                                     *self.write_dependencies]  # fmt: skip
        routes: list[tuple[str, str, Callable[..., Any], str, list[Any], str]] = [
            ("GET", "/processes", get_processes, "getProcesses", [], "List processes"),
            ("GET", "/processes/{processID}", get_process, "getProcessDescription", [],
             "Describe a process"),
            ("POST", "/processes/{processID}/execution", _execute_endpoint(self.settings),
             "execute", write, "Execute a process (asynchronously)"),
            ("GET", "/jobs", get_jobs, "getJobs", read, "List jobs"),
            ("GET", "/jobs/{jobID}", get_status, "getStatus", read, "Status of a job"),
            ("DELETE", "/jobs/{jobID}", dismiss, "dismiss", write, "Dismiss a job"),
            ("GET", "/jobs/{jobID}/results", get_results, "getResult", read, "Results of a job"),
            ("POST", "/jobs/{jobID}/restart", restart, "restartJob", write, "Restart a job"),
            ("GET", "/jobs/{jobID}/log", get_log, "getJobLog", read, "Log of a job"),
        ]  # fmt: skip
        for method, path, endpoint, operation_id, dependencies, summary in routes:
            self.router.add_api_route(
                path, endpoint, methods=[method], operation_id=operation_id,
                dependencies=dependencies, summary=summary, response_class=Response,
            )  # fmt: skip
        app.include_router(self.router)
