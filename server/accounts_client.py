"""``terracat accounts`` and ``terracat tokens``: accounts and API tokens over HTTP.

``accounts`` needs an admin's token (the bootstrap one, or an admin account's); ``tokens``
manages the tokens of the account whose token the command runs with.
"""

import sys
from typing import Any, TextIO
from uuid import UUID

import httpx

from .api_client import ClientError, check


def _account_id(http: httpx.Client, name_or_id: str) -> str:
    """The id of the account named (or numbered) ``name_or_id``."""
    try:
        return str(UUID(name_or_id))
    except ValueError:
        pass
    accounts = check(http.get("accounts"), "listing the accounts")["accounts"]
    found = [a["id"] for a in accounts if a["name"] == name_or_id]
    if not found:
        raise ClientError(f"account.NotFound: no account named {name_or_id!r}", 404,
                          "account.NotFound")  # fmt: skip
    return str(found[0])


def _quota(value: int | None) -> str:
    return "server default" if value is None else f"{value} bytes"


def accounts_command(action: str, http: httpx.Client, options: dict[str, Any],
                     out: TextIO | None = None) -> int:  # fmt: skip
    """``terracat accounts add|list|disable``; 0 on success (ClientError otherwise)."""
    out = out or sys.stdout
    if action == "add":
        body = {"name": options["name"], "role": options.get("role") or "user",
                "email": options.get("email"), "quota_bytes": options.get("quota")}  # fmt: skip
        account = check(http.post("accounts", json=body), f"creating account {body['name']!r}")
        token = check(
            http.post(f"accounts/{account['id']}/tokens", json={"description": "first token"}),
            f"making a token for {body['name']!r}",
        )
        print(f"account  {account['name']}\nid       {account['id']}\n"
              f"role     {account['role']}\nemail    {account['email'] or '-'}\n"
              f"quota    {_quota(account['quota_bytes'])}\n"
              f"scopes   {','.join(token['scopes'])}\ntoken    {token['token']}",
              file=out)  # fmt: skip
        print("The token is shown only this once: give it to the account's owner.",
              file=sys.stderr)  # fmt: skip
        return 0
    if action == "list":
        accounts = check(http.get("accounts"), "listing the accounts")["accounts"]
        width = max((len(a["name"]) for a in accounts), default=0)
        for a in accounts:
            state = "disabled" if a["disabled"] else "enabled"
            print(f"{a['name']:<{width}}  {a['role']:<5}  {state:<8}  {a['id']}  "
                  f"{a['email'] or ''}".rstrip(), file=out)  # fmt: skip
        return 0
    account_id = _account_id(http, options["account"])
    account = check(http.patch(f"accounts/{account_id}", json={"disabled": True}),
                    f"disabling account {options['account']!r}")  # fmt: skip
    print(f"disabled account {account['name']} ({account['id']})", file=out)
    return 0


def tokens_command(action: str, http: httpx.Client, options: dict[str, Any],
                   out: TextIO | None = None) -> int:  # fmt: skip
    """``terracat tokens create|list|revoke`` of the caller's account; 0 on success."""
    out = out or sys.stdout
    if action == "create":
        body: dict[str, Any] = {"description": options.get("description") or ""}
        if options.get("scopes"):
            body["scopes"] = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        if options.get("expires"):
            body["expires"] = options["expires"]
        token = check(http.post("users/me/tokens", json=body), "making a token")
        print(token["token"], file=out)  # alone on stdout: TERRACAT_TOKEN=$(terracat tokens ...)
        print(f"token {token['id']} (scopes {','.join(token['scopes'])}): shown only this once",
              file=sys.stderr)  # fmt: skip
        return 0
    if action == "list":
        tokens = check(http.get("users/me/tokens"), "listing the tokens")["tokens"]
        for t in tokens:
            state = ("revoked" if t["revoked"] else
                     f"expires {t['expires']}" if t["expires"] else "active")  # fmt: skip
            print(f"{t['id']}  {','.join(t['scopes']):<16}  {t['created'][:19]}  {state}  "
                  f"{t['description']}".rstrip(), file=out)  # fmt: skip
        return 0
    token_id = options["id"]
    check(http.delete(f"users/me/tokens/{token_id}"), f"revoking token {token_id}")
    print(f"revoked token {token_id}", file=out)
    return 0
