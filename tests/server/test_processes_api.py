"""OGC API - Processes over HTTP, against a real PostGIS and a real worker (ogc/processes.py)."""

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from catalog.settings import JobSettings
from ogc import processes as ogc_processes
from tests.catalog.processes import DoubleProcess
from tests.workers import MakeWorker, WorkerThread, wait_for

FAST = JobSettings(heartbeat_s=0.2, stale_after_s=2, idle_wake_s=0.5, max_attempts=3)
CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def api(client: TestClient) -> TestClient:
    """The app client with the test process ``double`` offered next to ``ingest``."""
    client.app.state.processes["double"] = DoubleProcess()  # type: ignore[attr-defined]
    return client


@pytest.fixture
def worker(make_worker: MakeWorker) -> WorkerThread:
    """A worker on the ``double`` process, started by the test when it wants one."""
    return make_worker(lambda engine: {"double": DoubleProcess()}, FAST)


def execute(
    api: TestClient, admin: dict[str, str], inputs: dict[str, Any], process: str = "double"
) -> dict[str, Any]:
    r = api.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()


def rels(doc: dict[str, Any]) -> dict[str, str]:
    return {link["rel"]: link["href"] for link in doc["links"]}


def assert_exception(r: Any, status: int, code: str, ogc_type: str | None = None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert body["description"]
    if ogc_type is not None:
        assert body["type"] == ogc_type, body


# -- processes ----------------------------------------------------------------------------------
def test_process_list_is_public_and_follows_process_list_yaml(api: TestClient) -> None:
    r = api.get("/processes")
    assert r.status_code == 200
    doc = r.json()
    assert set(doc) == {"processes", "links"}
    assert rels(doc)["self"] == "http://testserver/processes"
    summaries = {p["id"]: p for p in doc["processes"]}
    assert set(summaries) == {"double", "ingest", "mbtiles", "pmtiles", "pictures_dispatch"}
    ingest = summaries["ingest"]
    assert ingest["title"] == "Ingest a raster" and ingest["version"] == "1.0.0"
    assert (
        ingest["keywords"] == ["ingest", "COG", "STAC", "vector", "datacube", "Zarr", "NetCDF"]
        and ingest["description"]
    )
    assert ingest["jobControlOptions"] == ["async-execute", "dismiss"]
    assert ingest["outputTransmission"] == ["value"]
    assert "inputs" not in ingest  # a summary, not the description
    links = rels(ingest)
    assert links["self"] == "http://testserver/processes/ingest"
    assert links[REL + "execute"] == "http://testserver/processes/ingest/execution"

    seen, page = [], api.get("/processes", params={"limit": 1}).json()
    while True:
        assert len(page["processes"]) == 1
        seen += [p["id"] for p in page["processes"]]
        if "next" not in rels(page):
            break
        page = api.get(rels(page)["next"]).json()
    assert seen == [p["id"] for p in doc["processes"]] and len(seen) == 5
    assert api.get("/processes", params={"limit": 0}).status_code == 400


def test_process_descriptions_have_inputs_and_outputs(api: TestClient) -> None:
    double = api.get("/processes/double").json()
    assert double["id"] == "double" and double["jobControlOptions"] == ["async-execute", "dismiss"]
    assert double["inputs"]["value"] == {
        "title": "value", "description": "", "schema": {"type": "number"},
        "minOccurs": 1, "maxOccurs": 1,
    }  # fmt: skip
    assert double["inputs"]["seconds"]["minOccurs"] == 0
    assert double["outputs"] == {
        "doubled": {"title": "doubled", "description": "", "schema": {"type": "number"}}
    }
    assert rels(double)["self"] == "http://testserver/processes/double"

    ingest = api.get("/processes/ingest").json()
    assert ingest["inputs"]["upload_file"]["schema"] == {"type": "string", "format": "uuid"}
    assert ingest["outputs"]["item"]["schema"]["required"] == ["collection", "id"]


def test_unknown_process_is_no_such_process(api: TestClient, admin: dict[str, str]) -> None:
    assert_exception(api.get("/processes/nope"), 404, "process.NotFound", EXC + "no-such-process")
    r = api.post("/processes/nope/execution", json={"inputs": {}}, headers=admin)
    assert_exception(r, 404, "process.NotFound", EXC + "no-such-process")


def test_conformance_and_landing_page(api: TestClient, admin: dict[str, str]) -> None:
    conforms = api.get("/conformance").json()["conformsTo"]
    for name in ("core", "ogc-process-description", "json", "job-list", "dismiss"):
        assert CONF + name in conforms
    assert not [c for c in conforms if "ogcapi-processes" in c and c[len(CONF) :] not in (
        "core", "ogc-process-description", "json", "job-list", "dismiss")]  # fmt: skip
    links = rels(api.get("/").json())
    assert links[REL + "processes"] == "http://testserver/processes"
    assert links[REL + "job-list"] == "http://testserver/jobs"
    assert api.get(links[REL + "processes"]).status_code == 200
    assert api.get(links[REL + "job-list"], headers=admin).status_code == 200


def test_jobs_and_execution_need_the_admin_token(api: TestClient, admin: dict[str, str]) -> None:
    job_id = execute(api, admin, {"value": 1})["jobID"]
    anonymous = [
        api.post("/processes/double/execution", json={"inputs": {"value": 1}}),
        api.get("/jobs"),
        api.get(f"/jobs/{job_id}"),
        api.get(f"/jobs/{job_id}/results"),
        api.get(f"/jobs/{job_id}/log"),
        api.delete(f"/jobs/{job_id}"),
        api.post(f"/jobs/{job_id}/restart"),
    ]
    for r in anonymous:
        assert_exception(r, 401, "auth.Unauthorized")
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert api.get("/jobs", headers=wrong).status_code == 401
    assert api.get("/processes").status_code == 200
    assert api.get("/processes/double").status_code == 200
    assert api.get(f"/jobs/{job_id}", headers=admin).json()["status"] == "accepted"


# -- execution ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "request.InvalidParameter"),
        (b"[1, 2]", "request.InvalidParameter"),
        (b'"inputs"', "request.InvalidParameter"),
        (b'{"inputs": [1]}', "request.InvalidParameter"),
        (b'{"inputs": {"value": 1}, "response": "sideways"}', "request.InvalidParameter"),
    ],
)
def test_malformed_execute_bodies_are_400(
    api: TestClient, admin: dict[str, str], body: bytes, code: str
) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    r = api.post("/processes/double/execution", content=body, headers=headers)
    assert_exception(r, 400, code)


@pytest.mark.parametrize(
    ("process", "body", "words"),
    [
        ("double", {"inputs": {}}, "'value' is required"),
        ("double", {"inputs": {"value": 1, "colour": "red"}}, "unknown input(s): colour"),
        ("double", {"inputs": {"value": "two"}}, "input 'value'"),
        ("double", {"inputs": {"value": [1, 2]}}, "input 'value'"),
        ("double", {"inputs": {"value": 1}, "outputs": {"tripled": {}}}, "unknown output(s)"),
        ("ingest", {"inputs": {"upload_file": "not-a-uuid"}}, "not-a-uuid"),
        ("ingest", {"inputs": {"upload_file": 5}}, "must be a string"),
    ],
)
def test_bad_inputs_are_400_invalid_parameter_value(
    api: TestClient, admin: dict[str, str], process: str, body: dict[str, Any], words: str
) -> None:
    r = api.post(f"/processes/{process}/execution", json=body, headers=admin)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "InvalidParameterValue"
    assert r.json()["code"] == "request.InvalidParameter"
    assert words in r.json()["description"]
    assert api.get("/jobs", headers=admin).json()["jobs"] == []  # nothing was queued


def test_execute_answers_201_with_location_and_status_info(
    api: TestClient, admin: dict[str, str], sync_engine: Engine
) -> None:
    body = {"inputs": {"value": 21}, "outputs": {"doubled": {}}, "response": "document"}
    headers = {**admin, "Prefer": "respond-async"}
    r = api.post("/processes/double/execution", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.headers["Preference-Applied"] == "respond-async"
    doc = r.json()
    job_id = doc["jobID"]
    assert uuid.UUID(job_id)
    assert r.headers["Location"] == f"http://testserver/jobs/{job_id}"
    assert doc["processID"] == "double" and doc["type"] == "process"
    assert doc["status"] == "accepted" and doc["progress"] == 0 and doc["attempts"] == 0
    assert RFC3339.match(doc["created"]) and RFC3339.match(doc["updated"])
    assert "started" not in doc and "finished" not in doc and "error" not in doc
    links = rels(doc)
    assert links["self"] == r.headers["Location"]
    assert links["up"] == "http://testserver/jobs"
    assert links["log"] == f"http://testserver/jobs/{job_id}/log"
    assert REL + "results" not in links
    assert api.get(r.headers["Location"], headers=admin).json()["jobID"] == job_id

    plain = api.post("/processes/double/execution", json={"inputs": {"value": 1}}, headers=admin)
    assert "Preference-Applied" not in plain.headers
    with sync_engine.connect() as conn:
        row = conn.execute(
            text("SELECT timeout_s, max_attempts, inputs FROM jobs WHERE id = :id"), {"id": job_id}
        ).one()
    assert (row.timeout_s, row.max_attempts) == (3600, 3)  # JobSettings defaults
    assert row.inputs == {"value": 21}


def test_a_description_timeout_and_attempts_win_over_settings(
    api: TestClient, admin: dict[str, str], sync_engine: Engine
) -> None:
    class QuickDouble(DoubleProcess):
        description = DoubleProcess.description.model_copy(
            update={"id": "quick", "timeout_s": 5, "max_attempts": 1}
        )

    api.app.state.processes["quick"] = QuickDouble()  # type: ignore[attr-defined]
    job_id = execute(api, admin, {"value": 1}, process="quick")["jobID"]
    with sync_engine.connect() as conn:
        row = conn.execute(
            text("SELECT timeout_s, max_attempts FROM jobs WHERE id = :id"), {"id": job_id}
        ).one()
    assert (row.timeout_s, row.max_attempts) == (5, 1)


def test_links_follow_the_forwarded_prefix(
    api: TestClient, proxied: TestClient, admin: dict[str, str]
) -> None:
    headers = {**admin, "X-Forwarded-Prefix": "/geo"}
    r = proxied.post("/processes/double/execution", json={"inputs": {"value": 1}}, headers=headers)
    job_id = r.json()["jobID"]
    assert r.headers["Location"] == f"http://testserver/geo/jobs/{job_id}"
    assert rels(r.json())["up"] == "http://testserver/geo/jobs"
    listing = proxied.get("/processes", headers={"X-Forwarded-Prefix": "/geo"}).json()
    assert rels(listing["processes"][0])["self"] == "http://testserver/geo/processes/double"


# -- jobs ---------------------------------------------------------------------------------------
def test_a_job_runs_to_success_with_results_and_log(
    api: TestClient, admin: dict[str, str], worker: WorkerThread
) -> None:
    worker.start()
    job_id = execute(api, admin, {"value": 21})["jobID"]
    done = wait_for(api, admin, job_id, "successful", "failed")
    assert done["status"] == "successful", done
    assert done["progress"] == 100 and done["attempts"] == 1 and done["message"] == "done"
    assert RFC3339.match(done["started"]) and RFC3339.match(done["finished"])
    assert done["created"] <= done["started"] <= done["finished"]
    results_url = rels(done)[REL + "results"]
    assert results_url == f"http://testserver/jobs/{job_id}/results"

    r = api.get(results_url, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"doubled": 42}

    log = api.get(f"/jobs/{job_id}/log", headers=admin).json()
    assert log == {"jobID": job_id, "status": "successful", "from": 0, "next": 1,
                   "lines": ["doubling 21"]}  # fmt: skip
    tail = api.get(f"/jobs/{job_id}/log", params={"line": log["next"]}, headers=admin).json()
    assert (tail["from"], tail["next"], tail["lines"]) == (1, 1, [])
    for line in (-1, 19942094044045984, 2**63):  # PostgreSQL's bigint ends below the last
        bad = api.get(f"/jobs/{job_id}/log", params={"line": line}, headers=admin)
        assert bad.status_code == 400, (line, bad.text)


def test_a_failed_job_reports_its_error_and_restarts(
    api: TestClient, admin: dict[str, str], worker: WorkerThread
) -> None:
    worker.start()
    job_id = execute(api, admin, {"value": -1})["jobID"]
    failed = wait_for(api, admin, job_id, "successful", "failed")
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "job.Failed", "description": "negative values are refused"}
    assert REL + "results" not in rels(failed)

    r = api.get(f"/jobs/{job_id}/results", headers=admin)
    assert_exception(r, 422, "job.Failed", "job.Failed")
    assert r.json()["description"] == "negative values are refused"

    again = api.post(f"/jobs/{job_id}/restart", headers=admin)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "accepted" and again.json()["attempts"] == 0
    assert "error" not in again.json()
    refailed = wait_for(api, admin, job_id, "successful", "failed")
    assert refailed["status"] == "failed" and refailed["attempts"] == 1


def test_dismissing_a_running_job_stops_it_within_the_poll_window(
    api: TestClient, admin: dict[str, str], worker: WorkerThread
) -> None:
    worker.start()
    job_id = execute(api, admin, {"value": 2, "seconds": 30})["jobID"]
    wait_for(api, admin, job_id, "running")
    start = time.monotonic()
    r = api.delete(f"/jobs/{job_id}", headers=admin)
    took = time.monotonic() - start
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dismissed" and r.json()["message"] == "dismissed"
    assert RFC3339.match(r.json()["finished"])
    assert took < ogc_processes.DISMISS_WAIT_S
    r = api.get(f"/jobs/{job_id}/results", headers=admin)
    assert_exception(r, 404, "job.ResultNotReady", EXC + "result-not-ready")
    assert api.get(f"/jobs/{job_id}", headers=admin).json()["status"] == "dismissed"


def test_a_running_job_without_a_live_worker_gets_202(
    api: TestClient, admin: dict[str, str], sync_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ogc_processes, "DISMISS_WAIT_S", 0.3)
    job_id = execute(api, admin, {"value": 2})["jobID"]
    with sync_engine.begin() as conn:  # claimed by a worker that then went silent
        conn.execute(
            text("UPDATE jobs SET status = 'running', worker_id = 'ghost', started = now(), "
                 "heartbeat = now(), message = 'step 3' WHERE id = :id"),
            {"id": job_id},
        )  # fmt: skip
    r = api.delete(f"/jobs/{job_id}", headers=admin)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "running" and r.json()["message"] == "cancel requested"
    r = api.get(f"/jobs/{job_id}/results", headers=admin)
    assert_exception(r, 404, "job.ResultNotReady", EXC + "result-not-ready")


def test_dismiss_and_restart_of_a_queued_job(
    api: TestClient, admin: dict[str, str], worker: WorkerThread
) -> None:
    job_id = execute(api, admin, {"value": 5})["jobID"]
    r = api.get(f"/jobs/{job_id}/results", headers=admin)
    assert_exception(r, 404, "job.ResultNotReady", EXC + "result-not-ready")
    r = api.delete(f"/jobs/{job_id}", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "dismissed", r.text
    again = api.delete(f"/jobs/{job_id}", headers=admin)  # idempotent
    assert again.status_code == 200 and again.json()["status"] == "dismissed"

    r = api.post(f"/jobs/{job_id}/restart", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    assert r.json()["message"] == "restarted" and "finished" not in r.json()
    r = api.post(f"/jobs/{job_id}/restart", headers=admin)  # queued: nothing to restart
    assert_exception(r, 409, "job.InvalidState")

    worker.start()
    done = wait_for(api, admin, job_id, "successful", "failed")
    assert done["status"] == "successful"
    assert api.get(f"/jobs/{job_id}/results", headers=admin).json() == {"doubled": 10}
    r = api.post(f"/jobs/{job_id}/restart", headers=admin)
    assert_exception(r, 409, "job.InvalidState")
    r = api.delete(f"/jobs/{job_id}", headers=admin)  # a finished job: dismissed, once
    assert r.status_code == 200 and r.json()["status"] == "dismissed"


@pytest.mark.parametrize("job_id", ["6f1c0b4e-2d7a-4c1e-9b0e-5a3d8f2e7c41", "not-a-job", "1"])
def test_unknown_or_malformed_job_ids_are_no_such_job(
    api: TestClient, admin: dict[str, str], job_id: str
) -> None:
    calls = [
        api.get(f"/jobs/{job_id}", headers=admin),
        api.get(f"/jobs/{job_id}/results", headers=admin),
        api.get(f"/jobs/{job_id}/log", headers=admin),
        api.delete(f"/jobs/{job_id}", headers=admin),
        api.post(f"/jobs/{job_id}/restart", headers=admin),
    ]
    for r in calls:
        assert_exception(r, 404, "job.NotFound", EXC + "no-such-job")
        assert r.json()["title"] == "No such job"


def test_job_list_filters_and_pages(api: TestClient, admin: dict[str, str]) -> None:
    ids = [execute(api, admin, {"value": v})["jobID"] for v in range(5)]
    api.delete(f"/jobs/{ids[0]}", headers=admin)

    def listed(**params: Any) -> list[str]:
        r = api.get("/jobs", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return [j["jobID"] for j in r.json()["jobs"]]

    everything = api.get("/jobs", headers=admin).json()
    assert set(everything) == {"jobs", "links"}
    assert [j["jobID"] for j in everything["jobs"]] == ids[::-1]  # newest first
    assert rels(everything)["self"] == "http://testserver/jobs"
    assert "next" not in rels(everything)
    assert listed(status="dismissed") == [ids[0]]
    assert set(listed(status="accepted")) == set(ids[1:])
    assert len(listed(status="accepted,dismissed")) == 5
    assert len(listed(status=["accepted", "dismissed"])) == 5
    assert listed(status="running") == []
    assert listed(processID="ingest") == []
    assert len(listed(processID="double,ingest")) == 5
    assert len(listed(type="process")) == 5
    assert listed(type="openeo") == []
    assert listed(processID="double", status="dismissed") == [ids[0]]

    seen: list[str] = []
    url: str | None = "/jobs?limit=2&status=accepted,dismissed"
    pages = 0
    while url is not None:
        page = api.get(url, headers=admin).json()
        assert len(page["jobs"]) <= 2
        seen += [j["jobID"] for j in page["jobs"]]
        url = rels(page).get("next")
        pages += 1
        if url is not None:
            assert "status=accepted%2Cdismissed" in url and "limit=2" in url
    assert pages == 3 and seen == ids[::-1]
    assert listed(limit=2, offset=4) == [ids[0]]

    for bad in ({"status": "sleeping"}, {"limit": 0}, {"limit": 1001}, {"offset": -1}):
        r = api.get("/jobs", params=bad, headers=admin)
        assert r.status_code == 400, (bad, r.text)


def test_job_list_filters_by_created_datetime_and_duration(
    api: TestClient, admin: dict[str, str], sync_engine: Any
) -> None:
    from sqlalchemy import text

    ids = [execute(api, admin, {"value": v})["jobID"] for v in range(3)]
    with sync_engine.begin() as conn:  # three jobs of known age and run time
        for age_days, (job_id, seconds) in enumerate(zip(ids, (5, 50, None), strict=True)):
            conn.execute(
                text(
                    "UPDATE jobs SET created = now() - make_interval(days => :age), "
                    "status = CASE WHEN CAST(:s AS float8) IS NULL THEN status "
                    "  ELSE 'successful' END, "
                    "started = CASE WHEN CAST(:s AS float8) IS NULL THEN NULL "
                    "  ELSE now() - make_interval(secs => CAST(:s AS float8)) END, "
                    "finished = CASE WHEN CAST(:s AS float8) IS NULL THEN NULL ELSE now() END "
                    "WHERE id = :id"
                ),
                {"age": 10 * age_days, "s": seconds, "id": job_id},
            )

    def listed(**params: Any) -> set[str]:
        r = api.get("/jobs", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return {j["jobID"] for j in r.json()["jobs"]}

    assert listed(minDuration=10) == {ids[1]}
    assert listed(maxDuration=10) == {ids[0]}
    assert listed(minDuration=1, maxDuration=100) == {ids[0], ids[1]}  # never-started: none
    now = datetime.now(UTC)
    assert listed(datetime=f"{(now - timedelta(days=15)).isoformat()}/..") == {ids[0], ids[1]}
    assert listed(datetime=f"../{(now - timedelta(days=15)).isoformat()}") == {ids[2]}
    r = api.get("/jobs", params={"datetime": "yesterday"}, headers=admin)
    assert r.status_code == 400 and r.json()["code"] == "search.InvalidDatetime"
