"""Who may read and change a collection: its owner, its visibility and its grants.

The rights table (server/policy.py) lets only callers with the ``admin`` right on the
collection (its owner, an admin, an ``admin`` grantee) reach these routes: others get 404 when
they may not read it, 403 when they may. Changing the owner is for admins alone.
"""

from uuid import UUID

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, Field

from catalog.accounts.errors import Forbidden, InvalidRight
from catalog.accounts.repository import AccountRepository
from catalog.accounts.web import principal_of
from catalog.errors import NotFound

from .parts import ApiPart, routers_part

RIGHTS_PATH = "/collections/{collection_id}/rights"
GRANT_PATH = RIGHTS_PATH + "/grants/{kind}/{grantee}"
GRANTEE_KINDS = ("account", "group")


class Grant(BaseModel):
    """One grant: an account (by id) or a group (by name) and its right."""

    kind: str = Field(description="`account` or `group`.")
    grantee: str = Field(description="An account id, or a group name of the identity provider.")
    right: str = Field(description="`read`, `write` or `admin`.")


class CollectionRights(BaseModel):
    """Who reads and changes a collection."""

    collection: str
    owner: UUID | None = Field(description="The owning account (null: admins only).")
    visibility: str = Field(description="`public`, `accounts` or `private`.")
    grants: list[Grant]


class RightsChange(BaseModel):
    """A new visibility and, for admins only, a new owner (an account id, or null)."""

    visibility: str | None = Field(default=None, description="`public`, `accounts`, `private`.")
    owner: UUID | None = Field(default=None, description="Admins only: the new owner's id.")


class GrantChange(BaseModel):
    """The right a grant gives."""

    right: str = Field(description="`read`, `write` or `admin`.")


def _accounts(request: Request) -> AccountRepository:
    accounts: AccountRepository = request.app.state.accounts
    return accounts


async def _rights(accounts: AccountRepository, collection_id: str) -> CollectionRights:
    access = await accounts.collection_access(collection_id)
    if access is None:  # admins pass the rule for any id; the words of every other 404
        raise NotFound(f"collection {collection_id!r} does not exist")
    grants = [
        Grant(kind=g["grantee_kind"], grantee=g["grantee"], right=g["right"])
        for g in access["grants"]
    ]
    return CollectionRights(
        collection=collection_id,
        owner=access["owner_id"],
        visibility=access["visibility"],
        grants=grants,
    )


async def _grantee(accounts: AccountRepository, kind: str, grantee: str) -> str:
    """The grantee as stored: an existing account's id, or a group name."""
    if kind not in GRANTEE_KINDS:
        raise InvalidRight(f"grantee kind must be one of {list(GRANTEE_KINDS)}, got {kind!r}")
    if kind == "group":
        return grantee
    try:
        account_id = UUID(grantee)
    except ValueError as exc:
        raise InvalidRight(f"an account grantee is an account id, got {grantee!r}") from exc
    await accounts.get_account(account_id)  # account.NotFound for an unknown one
    return str(account_id)


def rights_router() -> APIRouter:
    """The routes of a collection's owner, visibility and grants."""
    router = APIRouter(tags=["Rights"])

    @router.get(RIGHTS_PATH, operation_id="getCollectionRights", response_model=CollectionRights)
    async def get_rights(collection_id: str, request: Request) -> CollectionRights:
        """Owner, visibility and grants of the collection."""
        return await _rights(_accounts(request), collection_id)

    @router.put(RIGHTS_PATH, operation_id="putCollectionRights", response_model=CollectionRights)
    async def put_rights(
        collection_id: str, request: Request, change: RightsChange
    ) -> CollectionRights:
        """Change the visibility; admins may also give the collection to another account."""
        accounts = _accounts(request)
        await _rights(accounts, collection_id)
        if "owner" in change.model_fields_set:
            if not principal_of(request).is_admin:
                raise Forbidden("only an admin may change a collection's owner")
            if change.owner is not None:
                await accounts.get_account(change.owner)
        if change.visibility is not None:
            await accounts.set_visibility(collection_id, change.visibility)
        if "owner" in change.model_fields_set:
            await accounts.set_owner(collection_id, change.owner)
        return await _rights(accounts, collection_id)

    @router.put(GRANT_PATH, operation_id="putCollectionGrant", response_model=CollectionRights)
    async def put_grant(
        collection_id: str, kind: str, grantee: str, request: Request, change: GrantChange
    ) -> CollectionRights:
        """Give an account or a group a right on the collection (or change the one it has)."""
        accounts = _accounts(request)
        await _rights(accounts, collection_id)
        stored = await _grantee(accounts, kind, grantee)
        await accounts.grant(collection_id, kind, stored, change.right)
        return await _rights(accounts, collection_id)

    @router.delete(
        GRANT_PATH, operation_id="deleteCollectionGrant", status_code=204, response_class=Response
    )
    async def delete_grant(
        collection_id: str, kind: str, grantee: str, request: Request
    ) -> Response:
        """Take a grant back (204 whether or not there was one)."""
        accounts = _accounts(request)
        await _rights(accounts, collection_id)
        if kind not in GRANTEE_KINDS:
            raise InvalidRight(f"grantee kind must be one of {list(GRANTEE_KINDS)}, got {kind!r}")
        await accounts.revoke_grant(collection_id, kind, grantee)
        return Response(status_code=204)

    return router


def rights_part() -> ApiPart:
    """The collection rights routes (their rule, MANAGE: server/policy.py)."""

    def routers(app: FastAPI) -> list[APIRouter]:
        return [rights_router()]

    return routers_part("collection-rights", routers)
