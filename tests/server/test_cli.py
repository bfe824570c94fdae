"""``terracat collections`` against a live server: in-process (``main``), over real HTTP.

``terracat ingest`` is tested with the ingest stack and its workers in test_ingest_e2e.py.
"""

import re

import httpx
import pytest

from server.cli import browsable_root, main
from tests.factories import collection

from .conftest import LiveServer


def terracat(server: LiveServer, capsys: pytest.CaptureFixture[str], *args: str,
             token: bool = True) -> tuple[int, str, str]:  # fmt: skip
    """Run ``terracat ARGS --server URL [--token T]`` in-process: exit code, stdout, stderr."""
    auth = ["--token", server.token] if token else []
    code = main([*args, "--server", server.url, *auth])
    out, err = capsys.readouterr()
    return code, out, err


def test_collections_list_create_delete(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TERRACAT_TOKEN", raising=False)
    monkeypatch.delenv("TERRACAT_API_ADMIN_TOKEN", raising=False)
    url = f"{live_server.url}/collections/cli-made"
    code, out, _ = terracat(live_server, capsys, "collections", "create", "cli-made", "--title",
                            "Made by the CLI", "--description", "Orthophotos of 2024",
                            "--license", "CC-BY-4.0")  # fmt: skip
    assert (code, out) == (0, f"created collection cli-made: {url}\n")
    doc = httpx.get(url).json()
    assert (doc["title"], doc["description"], doc["license"]) == (
        "Made by the CLI", "Orthophotos of 2024", "CC-BY-4.0")  # fmt: skip

    code, out, err = terracat(live_server, capsys, "collections", "create", "cli-made")
    assert code == 2 and out == ""
    assert err.startswith("terracat collections create: creating collection 'cli-made': "
                          "HTTP 409 catalog.Conflict: "), err  # fmt: skip
    code, out, _ = terracat(live_server, capsys, "collections", "create", "cli-made",
                            "--exist-ok")  # fmt: skip
    assert (code, out) == (0, "collection cli-made exists already\n")
    code, _, err = terracat(live_server, capsys, "collections", "create", "other", token=False)
    assert code == 2 and "HTTP 401 auth.Unauthorized: " in err, err
    assert httpx.get(f"{live_server.url}/collections/other").status_code == 404

    extra = [f"cli-page-{n:02d}" for n in range(11)]  # more than a page of the listing (10)
    with httpx.Client(base_url=live_server.url, headers=live_server.auth) as http:
        for collection_id in extra:
            assert http.post("/collections", json=collection(collection_id)).status_code == 201
        code, out, _ = terracat(live_server, capsys, "collections", "list")
        listed = http.get("/collections", params={"limit": 10000}).json()["collections"]
        for collection_id in extra:
            http.delete(f"/collections/{collection_id}").raise_for_status()
    assert code == 0
    ids = [line.split()[0] for line in out.splitlines()]
    assert sorted(ids) == sorted(c["id"] for c in listed) and len(ids) >= 12
    line = next(line for line in out.splitlines() if line.startswith("cli-made "))
    width = max(len(i) for i in ids)  # ids padded to the longest, then two spaces, the title
    assert line == f"{'cli-made':<{width}}  Made by the CLI"

    code, out, _ = terracat(live_server, capsys, "collections", "delete", "cli-made")
    assert (code, out) == (0, "deleted collection cli-made and its 0 item(s)\n")
    assert httpx.get(url).status_code == 404
    code, out, err = terracat(live_server, capsys, "collections", "delete", "cli-made")
    assert code == 2 and out == ""
    assert re.match(r"terracat collections delete: .*HTTP 404 catalog\.NotFound: ", err), err
    code, out, _ = terracat(live_server, capsys, "collections", "delete", "cli-made",
                            "--missing-ok")  # fmt: skip
    assert (code, out) == (0, "no collection cli-made\n")


@pytest.mark.parametrize(
    ("host", "root_path", "url"),
    [
        ("127.0.0.1", "", "http://127.0.0.1:8000"),
        ("0.0.0.0", "/stac", "http://127.0.0.1:8000/stac"),
        ("::", "", "http://[::1]:8000"),
        ("::1", "/a/", "http://[::1]:8000/a"),
        ("maps.example.org", "", "http://maps.example.org:8000"),
    ],
)
def test_serve_prints_urls_a_browser_opens(host: str, root_path: str, url: str) -> None:
    """``terracat serve --host 0.0.0.0`` listens everywhere; the URLs it prints (the viewer's
    among them) name an address a browser on this machine can open."""
    assert browsable_root(host, 8000, root_path) == url
