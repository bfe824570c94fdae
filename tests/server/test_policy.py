"""The rights table covers the API exactly, and the rights dependency guards every route.

server/policy.py names each operation's rule; an operation it does not name is refused to all
but admins. These tests make a forgotten row fail loudly instead: every operation of the
OpenAPI document has a row, every row names an operation, and every route of the app (the
ones left out of the document too) runs ``authorize`` before it does anything.
"""

import re
import runpy
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from catalog.accounts import errors as account_errors
from catalog.errors import CatalogError
from server.parts import api_routes
from server.policy import POLICY, Rule, rule_of
from server.settings import Settings
from tests.apps import AppPool

# Rows for operations that other parts of issue 15 add (the account, token, sign-in and
# collection rights routes): the table names them before their routers exist, so that none of
# them is ever served without its rule. Remove a name once its route is in the document.
ADDED_ELSEWHERE = frozenset({
    "generateToken", "claimToken", "login",
    "getMyAccount", "getMyTokens", "createMyToken", "revokeMyToken",
    "getAccounts", "createAccount", "getAccount", "patchAccount",
    "getAccountTokens", "createAccountToken", "revokeAccountToken",
    "getCollectionRights", "putCollectionRights", "putCollectionGrant", "deleteCollectionGrant",
})  # fmt: skip

# A bearer token that is neither the bootstrap token, nor one of ours, nor a JWT.
BAD_TOKEN = {"Authorization": "Bearer not-a-valid-token"}
# Values for path parameters: shaped as their routes expect, naming nothing that exists.
PATH_VALUES = {
    "z": "1", "x": "1", "y": "1", "scale": "1", "lon": "10", "lat": "45", "minx": "10",
    "miny": "45", "maxx": "11", "maxy": "46", "width": "64", "height": "64", "format": "png",
    "extension": "mbtiles", "tileMatrixSetId": "WebMercatorQuad",
}  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
PARAMETER = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@pytest.fixture
def app(apps: AppPool, settings: Settings) -> FastAPI:
    """The suite's app for the default test settings."""
    return apps.app(settings)


def operations(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Operation id -> (METHOD, path) of every operation of an OpenAPI document."""
    return {op["operationId"]: (method.upper(), path)
            for path, item in doc["paths"].items()
            for method, op in item.items() if isinstance(op, dict)}  # fmt: skip


def test_every_operation_has_a_rule(app: FastAPI) -> None:
    missing = [f"{op_id} ({method} {path})"
               for op_id, (method, path) in operations(app.openapi()).items()
               if op_id not in POLICY]  # fmt: skip
    assert missing == [], f"operations without a row in server/policy.POLICY: {missing}"


def test_every_rule_names_an_operation(app: FastAPI) -> None:
    # the routes left out of the document (tus without its slash) are operations too
    served = {*operations(app.openapi()), *(r.operation_id for _, r in api_routes(app.routes))}
    unknown = sorted(op for op in POLICY if op not in served and op not in ADDED_ELSEWHERE)
    assert unknown == [], f"rows of server/policy.POLICY that name no operation: {unknown}"


def test_routes_left_out_of_the_document_have_a_rule_too(app: FastAPI) -> None:
    """tus answers its URLs without the trailing slash too; those routes are not documented."""
    hidden = [(path, route.operation_id) for path, route in api_routes(app.routes)
              if not route.include_in_schema]  # fmt: skip
    assert hidden, "expected the undocumented tus routes"
    assert [h for h in hidden if h[1] not in POLICY] == []


def test_an_operation_without_a_row_is_for_admins_only() -> None:
    assert rule_of("someOperationAddedLater") is Rule.ADMIN
    assert rule_of(None) is Rule.ADMIN


def _url(path: str) -> str:
    return PARAMETER.sub(lambda m: PATH_VALUES.get(m[1], "no-such-thing"), path)


def test_every_route_runs_the_rights_dependency(settings: Settings, apps: AppPool) -> None:
    """A refused token answers 401 ``auth.InvalidToken`` on every route, the public ones too:
    only ``authorize`` says that, and it says it before the route does anything."""
    settings.auth.failure_limit = 1_000_000  # a refused token per route: no reason to block
    called = []
    with apps.client(settings) as client:
        app = client.app
        assert isinstance(app, FastAPI)
        for path, route in api_routes(app.routes):
            for method in sorted(route.methods or ()):
                answer = client.request(method, _url(path), headers=BAD_TOKEN)
                called.append(route.operation_id)
                where = (method, path, answer.status_code, answer.text)
                assert answer.status_code == 401, where
                if method != "HEAD":
                    assert answer.json()["code"] == "auth.InvalidToken", where
                assert 'error="invalid_token"' in answer.headers["www-authenticate"], where
        assert set(operations(app.openapi())) <= set(called)


def test_the_rights_table_of_the_docs_is_the_policy() -> None:
    """docs/auth.md's table is generated from server/policy.py: regenerate it when this fails."""
    table = runpy.run_path(str(ROOT / "scripts" / "policy_table.py"))
    text = (ROOT / "docs" / "auth.md").read_text()
    assert table["section"](text) == table["render"](), "run: python scripts/policy_table.py"
    listed = set(re.findall(r"`([a-z][A-Za-z]+)`", table["section"](text)))
    assert set(POLICY) <= listed


def test_every_rights_error_code_is_documented() -> None:
    """docs/errors.md has a row for each code of catalog/accounts/errors.py, with its status."""
    text = (ROOT / "docs" / "errors.md").read_text()
    statuses = {
        cls.code: cls.status
        for cls in vars(account_errors).values()
        if isinstance(cls, type) and issubclass(cls, CatalogError) and cls is not CatalogError
    }
    assert len(statuses) >= 10
    documented = {
        code: int(row[1])
        for code in statuses
        if (row := re.search(rf"^\| `{re.escape(code)}` \| (\d+) \|", text, re.M))
    }
    assert documented == statuses
