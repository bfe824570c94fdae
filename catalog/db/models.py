"""SQLAlchemy 2 models of the catalogue. The schema itself is created only by Alembic migrations."""

import datetime as dt
from typing import Any
from uuid import UUID

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    Interval,
    LargeBinary,
    SmallInteger,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every Terracat table."""


class Collection(Base):
    """A STAC collection; ``content`` is the document as stored, minus server-made links."""

    __tablename__ = "collections"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    search_text: Mapped[str] = mapped_column(Text, default="")
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR, Computed("to_tsvector('simple'::regconfig, search_text)", persisted=True)
    )
    spatial: Mapped[WKBElement | None] = mapped_column(
        Geometry("GEOMETRY", srid=4326, spatial_index=False)
    )
    start_datetime: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    end_datetime: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The extent as the client gave it; served while the collection has no items (migration
    # 0005). ``item_*`` hold the items' extent, kept by triggers on ``items``.
    declared_extent: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    declared_spatial: Mapped[WKBElement | None] = mapped_column(
        Geometry("GEOMETRY", srid=4326, spatial_index=False)
    )
    declared_start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    declared_end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    item_xmin: Mapped[float | None] = mapped_column(Double)
    item_ymin: Mapped[float | None] = mapped_column(Double)
    item_xmax: Mapped[float | None] = mapped_column(Double)
    item_ymax: Mapped[float | None] = mapped_column(Double)
    item_xmin360: Mapped[float | None] = mapped_column(Double)
    item_xmax360: Mapped[float | None] = mapped_column(Double)
    item_start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    item_end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The longest ``end_datetime - datetime`` of the items, or longer (migration 0006): gives
    # interval searches an index bound on ``datetime``.
    item_max_span: Mapped[dt.timedelta | None] = mapped_column(Interval)
    # Who may read it (migration 0007): ``public``, ``accounts`` (signed in) or ``private``
    # (owner, admins and grantees, collection_grants).
    owner_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("accounts.id", ondelete="SET NULL")
    )
    visibility: Mapped[str] = mapped_column(Text, server_default="public")


class Item(Base):
    """A STAC item.

    ``datetime``/``end_datetime`` hold the item's time span (equal for an instant), ``properties``
    the properties as given and ``content`` every other top-level member (geometry, bbox, assets,
    links, stac_extensions...). ``geometry`` is the indexed EPSG:4326 footprint.

    Two stored generated columns are left out of the model, so that no item read fetches them:
    ``tile_geometry`` and ``tile_properties``, the footprint in Web Mercator and the properties
    of a footprint tile's feature, read by catalog/maps/tiles.py alone (migration 0019).
    """

    __tablename__ = "items"

    collection_id: Mapped[str] = mapped_column(
        Text, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    geometry: Mapped[WKBElement | None] = mapped_column(
        Geometry("GEOMETRY", srid=4326, spatial_index=False)
    )
    datetime: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    end_datetime: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB)
    content: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Queryable(Base):
    """A property seen in a collection's items or summaries, with its JSON type."""

    __tablename__ = "queryables"

    collection_id: Mapped[str] = mapped_column(
        Text, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)


class Job(Base):
    """One run of a process (OGC API - Processes job), claimed by workers from this table."""

    __tablename__ = "jobs"

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    process_id: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="accepted")
    progress: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    message: Mapped[str | None] = mapped_column(Text)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONB)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    log_lines: Mapped[int] = mapped_column(Integer, server_default="0")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="3")
    timeout_s: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default="false")
    worker_id: Mapped[str | None] = mapped_column(Text)
    run_after: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    owner_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("accounts.id", ondelete="SET NULL")
    )


class JobLog(Base):
    """One log line of a job, numbered from 0."""

    __tablename__ = "job_log"

    job_id: Mapped[UUID] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    message: Mapped[str] = mapped_column(Text)


class UploadSet(Base):
    """A batch of files going into one collection."""

    __tablename__ = "upload_sets"

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    collection_id: Mapped[str] = mapped_column(
        Text, ForeignKey("collections.id", ondelete="CASCADE")
    )
    title: Mapped[str | None] = mapped_column(Text)
    expected_files: Mapped[int | None] = mapped_column(Integer)
    item_datetime: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    owner_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("accounts.id", ondelete="SET NULL")
    )
    # How vector files load (migration 0011): one layer, the datetime property, annotates.
    layer: Mapped[str | None] = mapped_column(Text)
    datetime_property: Mapped[str | None] = mapped_column(Text)
    annotates: Mapped[str | None] = mapped_column(
        Text, ForeignKey("collections.id", ondelete="SET NULL")
    )
    # How datacube URLs are taken (migration 0014): 'copy', 'register', or as files (NULL).
    cube_url: Mapped[str | None] = mapped_column(Text)
    # How pictures are sorted, cut into sequences and de-duplicated (migration 0015).
    split_distance: Mapped[float | None] = mapped_column(Double)
    split_time: Mapped[float | None] = mapped_column(Double)
    duplicate_distance: Mapped[float | None] = mapped_column(Double)
    duplicate_rotation: Mapped[float | None] = mapped_column(Double)
    sort_method: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str | None] = mapped_column(Text)
    dispatch_job_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class UploadFile(Base):
    """One file of an upload set, from receipt to item (or rejection)."""

    __tablename__ = "upload_files"

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    upload_set_id: Mapped[UUID] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("upload_sets.id", ondelete="CASCADE")
    )
    collection_id: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    href: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="received")
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    item_id: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    # Where its bytes wait for the ingest job: a storage key, ``staging/...`` or ``tus/{id}``.
    staged_key: Mapped[str | None] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TusUpload(Base):
    """A tus upload: its record, shared by every API process; its parts are storage objects."""

    __tablename__ = "tus_uploads"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    owner: Mapped[str | None] = mapped_column(Text)
    length: Mapped[int] = mapped_column(BigInteger)
    upload_offset: Mapped[int] = mapped_column(BigInteger, server_default="0")
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONB)
    parts: Mapped[list[str]] = mapped_column(JSONB)  # keys of the parts, in offset order
    finished: Mapped[bool] = mapped_column(Boolean, server_default="false")
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)  # what on_complete answered
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Search(Base):
    """A saved item search (its canonical body), rendered as a mosaic by id."""

    __tablename__ = "searches"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    owner_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("accounts.id", ondelete="SET NULL")
    )


class Account(Base):
    """Someone (or some program) using the API, with a role and a storage quota."""

    __tablename__ = "accounts"

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text, server_default="user")
    password_hash: Mapped[str | None] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default="false")
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)  # None: the settings' default
    subject: Mapped[str | None] = mapped_column(Text, unique=True)  # external (OIDC) identity
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiToken(Base):
    """An API token: only the SHA-256 of its secret is kept. No account until claimed."""

    __tablename__ = "api_tokens"

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    account_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("accounts.id", ondelete="CASCADE")
    )
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    description: Mapped[str] = mapped_column(Text, server_default="")
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expires: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    claimed: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CollectionGrant(Base):
    """A right (``read``, ``write``, ``admin``) on one collection, to an account or a group."""

    __tablename__ = "collection_grants"

    collection_id: Mapped[str] = mapped_column(
        Text, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    grantee_kind: Mapped[str] = mapped_column(Text, primary_key=True)  # account | group
    grantee: Mapped[str] = mapped_column(Text, primary_key=True)  # account id or group name
    right: Mapped[str] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ServerSecret(Base):
    """A secret every API process shares, made once by the first that needs it (migration
    0008): ``asset-signing`` signs asset links when no secret is configured."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Picture(Base):
    """A picture read and with its derivatives published, waiting for its set's dispatch."""

    __tablename__ = "pictures"

    upload_file_id: Mapped[UUID] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("upload_files.id", ondelete="CASCADE"), primary_key=True
    )
    upload_set_id: Mapped[UUID] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("upload_sets.id", ondelete="CASCADE")
    )
    collection_id: Mapped[str] = mapped_column(Text)
    item_id: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONB)
    item: Mapped[dict[str, Any]] = mapped_column(JSONB)


class PictureSequence(Base):
    """A sequence of pictures cut by a dispatch: its line, time span and items, in order."""

    __tablename__ = "picture_sequences"

    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    collection_id: Mapped[str] = mapped_column(
        Text, ForeignKey("collections.id", ondelete="CASCADE")
    )
    upload_set_id: Mapped[UUID | None] = mapped_column(
        PgUUID(as_uuid=True), ForeignKey("upload_sets.id", ondelete="SET NULL")
    )
    geom: Mapped[WKBElement] = mapped_column(Geometry("GEOMETRY", srid=4326, spatial_index=False))
    start_datetime: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    end_datetime: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    picture_count: Mapped[int] = mapped_column(Integer)
    item_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
