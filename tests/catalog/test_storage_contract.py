"""The storage contract (catalog/storage/base.py), the same for the local folder and S3.

S3 runs against the session's moto server process (``s3_server``), a bucket per test.
"""

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rasterio
from pydantic import SecretStr, ValidationError

from catalog.settings import StorageSettings
from catalog.storage import build_storage, storage_from_plan, storage_plan
from catalog.storage.base import Storage
from catalog.storage.local import LocalStorage
from catalog.storage.s3 import S3Storage, content_disposition
from tests.conftest import S3Server


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Each storage, on an empty folder or bucket (with a prefix, as a shared bucket has)."""
    if request.param == "local":
        yield build_storage(StorageSettings(), tmp_path / "data")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    made = build_storage(server.settings(server.make_bucket(), "deploy/one"), tmp_path / "data")
    assert isinstance(made, S3Storage)
    yield made
    made.close()


def _staged(storage: Storage, content: bytes, suffix: str = ".bin") -> Path:
    path = storage.temp_path(suffix)
    path.write_bytes(content)
    return path


def _read(storage: Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(storage.open_range(key, start, end))


def test_publish_stat_read_fetch(storage: Storage, tmp_path: Path) -> None:
    content = os.urandom(300_000)
    staged = _staged(storage, content)
    storage.publish(staged, "assets/c/i/data.tif")
    assert not staged.exists()  # the staged file is consumed
    found = storage.stat("assets/c/i/data.tif")
    assert found is not None
    assert (found.key, found.size) == ("assets/c/i/data.tif", len(content))
    assert found.modified.tzinfo is not None and found.etag and '"' not in found.etag
    assert _read(storage, "assets/c/i/data.tif") == content
    copy = tmp_path / "copy.bin"
    storage.fetch("assets/c/i/data.tif", copy)
    assert copy.read_bytes() == content
    assert storage.stat("assets/c/i/other.tif") is None


def test_replacing_changes_the_etag(storage: Storage) -> None:
    storage.publish(_staged(storage, b"first version"), "exports/a.mbtiles")
    first = storage.stat("exports/a.mbtiles")
    storage.publish(_staged(storage, b"second, longer version"), "exports/a.mbtiles")
    second = storage.stat("exports/a.mbtiles")
    assert first is not None and second is not None and first.etag != second.etag
    assert _read(storage, "exports/a.mbtiles") == b"second, longer version"


def test_ranges_are_exact_and_chunked(storage: Storage) -> None:
    content = os.urandom(2_500_000)  # more than one chunk of either storage
    storage.publish(_staged(storage, content), "assets/c/i/big.tif")
    for start, end in [(0, 0), (1, 9), (100_000, 400_000), (2_499_990, None), (5, 2_499_999)]:
        assert (
            _read(storage, "assets/c/i/big.tif", start, end)
            == content[start : None if end is None else end + 1]
        )
    chunks = list(storage.open_range("assets/c/i/big.tif"))
    assert len(chunks) > 1 and max(map(len, chunks)) <= 1024 * 1024  # bounded memory
    assert _read(storage, "assets/c/i/big.tif", 2_600_000) == b""  # past the end: nothing
    with pytest.raises(FileNotFoundError):
        _read(storage, "assets/c/i/none.tif")


def test_keys_and_delete_prefix(storage: Storage) -> None:
    for key, size in [
        ("assets/c/i/a.tif", 10),
        ("assets/c/i/b.png", 20),
        ("assets/c/i2/a.tif", 30),
        ("assets/c/i0", 5),
        ("exports/x.pmtiles", 40),
    ]:
        storage.publish(_staged(storage, b"x" * size), key)
    listed = {(o.key, o.size) for o in storage.keys("assets/c/i")}
    assert listed == {("assets/c/i/a.tif", 10), ("assets/c/i/b.png", 20)}
    assert {o.key for o in storage.keys("assets/")} == {
        "assets/c/i/a.tif", "assets/c/i/b.png", "assets/c/i2/a.tif", "assets/c/i0"}  # fmt: skip
    assert list(storage.keys("staging")) == []
    storage.delete_prefix("assets/c/i")
    assert storage.stat("assets/c/i/a.tif") is None and storage.stat("assets/c/i/b.png") is None
    # only its prefix: the item "i2" and the object "i0" beside it stay
    assert storage.stat("assets/c/i2/a.tif") is not None
    assert storage.stat("assets/c/i0") is not None
    storage.delete_prefix("assets/c/nothing")  # missing is fine
    storage.delete("exports/x.pmtiles")
    storage.delete("exports/x.pmtiles")  # twice is fine
    assert storage.stat("exports/x.pmtiles") is None


def test_delete_prefix_of_many_objects(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """More objects than one listing page or DeleteObjects request takes (1000; 10 here)."""
    monkeypatch.setattr("catalog.storage.s3._PAGE", 10)
    monkeypatch.setattr("catalog.storage.s3._DELETE_BATCH", 10)
    for n in range(25):
        storage.publish(_staged(storage, b""), f"tus/u/{n:04d}")
    storage.publish(_staged(storage, b""), "tus/v")
    assert sum(1 for _ in storage.keys("tus/u")) == 25  # paginated listing
    storage.delete_prefix("tus/u")
    assert [found.key for found in storage.keys("tus")] == ["tus/v"]


def _break_local(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(source: object, target: object) -> None:
        raise OSError("disk failure during the rename")

    monkeypatch.setattr("catalog.storage.local.os.replace", replace)


def _break_s3(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection fails on the second part of a multipart upload."""
    assert isinstance(storage, S3Storage)
    monkeypatch.setattr("catalog.storage.s3.MULTIPART_THRESHOLD", 5 * 1024**2)
    storage.transfer.multipart_threshold = storage.transfer.multipart_chunksize = 5 * 1024**2
    upload_part, calls = storage.client.upload_part, []

    def failing(**kwargs: object) -> object:
        calls.append(kwargs["PartNumber"])
        if kwargs["PartNumber"] == 2:
            raise ConnectionResetError("connection lost mid-upload")
        return upload_part(**kwargs)

    monkeypatch.setattr(storage.client, "upload_part", failing)
    storage.transfer.max_concurrency = 1
    storage.transfer.use_threads = False


BREAK: dict[str, Callable[[Storage, pytest.MonkeyPatch], None]] = {
    "local": _break_local, "s3": _break_s3}  # fmt: skip


def test_a_failed_publish_leaves_nothing_under_the_key(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither a new key nor a replaced one shows part of the failed file."""
    content = os.urandom(11 * 1024**2)  # three parts of 5 MiB on S3
    storage.publish(_staged(storage, b"old version"), "assets/c/i/old.tif")
    BREAK[storage.kind](storage, monkeypatch)
    for key in ("assets/c/i/new.tif", "assets/c/i/old.tif"):
        staged = _staged(storage, content)
        with pytest.raises(Exception):  # noqa: B017  # whatever the transport raised
            storage.publish(staged, key)
        assert staged.exists()  # the caller's to remove (or to try again)
        staged.unlink()
    monkeypatch.undo()
    assert storage.stat("assets/c/i/new.tif") is None
    assert _read(storage, "assets/c/i/old.tif") == b"old version"
    if isinstance(storage, S3Storage):  # the multipart uploads were aborted, not left behind
        uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket)
        assert uploads.get("Uploads", []) == []


def test_multipart_publish(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file above the multipart threshold arrives whole."""
    if isinstance(storage, S3Storage):
        storage.transfer.multipart_threshold = storage.transfer.multipart_chunksize = 5 * 1024**2
    content = os.urandom(11 * 1024**2)
    storage.publish(_staged(storage, content), "exports/big.pmtiles")
    found = storage.stat("exports/big.pmtiles")
    assert found is not None and found.size == len(content)
    digest = hashlib.sha256(_read(storage, "exports/big.pmtiles")).hexdigest()
    assert digest == hashlib.sha256(content).hexdigest()


def test_keys_are_checked(storage: Storage) -> None:
    for key in ("../x", "assets/../x", "/assets/x", "assets//x", ""):
        with pytest.raises(ValueError):
            storage.stat(key)
    with pytest.raises(ValueError):
        storage.temp_path("/../x")


def test_gdal_reads_a_published_geotiff(storage: Storage, small_cog: Path) -> None:
    """With the storage's options (the tiler's storage_env: credentials as a session)."""
    from tiler.readers.shared import storage_env

    storage.publish(_staged(storage, small_cog.read_bytes(), ".tif"), "assets/c/i/i.tif")
    with (
        rasterio.Env(**storage_env(storage)),
        rasterio.open(storage.gdal_path("assets/c/i/i.tif")) as src,
    ):
        assert src.read(1, window=((0, 4), (0, 4))).shape == (4, 4)
    if isinstance(storage, S3Storage):
        assert storage.gdal_path("assets/c/i/i.tif") == (
            f"/vsis3/{storage.bucket}/deploy/one/assets/c/i/i.tif")  # fmt: skip


def test_presigned_url(storage: Storage) -> None:
    import httpx

    storage.publish(_staged(storage, b"archive bytes"), "exports/j.mbtiles")
    url = storage.presigned_url("exports/j.mbtiles", 60, filename='tiles "ä".mbtiles')
    if isinstance(storage, LocalStorage):
        assert url is None
        return
    assert url is not None
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"archive bytes"
    assert answer.headers["content-disposition"] == content_disposition('tiles "ä".mbtiles')


@pytest.fixture
def small_cog(tmp_path: Path) -> Path:
    import numpy
    from rasterio.transform import from_origin

    path = tmp_path / "small.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 1, "dtype": "uint8",
               "crs": "EPSG:4326", "transform": from_origin(10, 50, 0.01, 0.01),
               "tiled": True, "blockxsize": 32, "blockysize": 32}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(numpy.arange(64 * 64, dtype="uint16").reshape(1, 64, 64).astype("uint8"))
    return path


# -- settings ----------------------------------------------------------------------------------
def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="S3_BUCKET"):
        StorageSettings(kind="s3")
    with pytest.raises(ValidationError, match="bucket name"):
        StorageSettings(kind="s3", s3_bucket="Bad_Bucket")
    with pytest.raises(ValidationError, match="no path"):
        StorageSettings(kind="s3", s3_bucket="b-1", s3_endpoint_url="http://h:9000/bucket")
    with pytest.raises(ValidationError, match="http"):
        StorageSettings(kind="s3", s3_bucket="b-1", s3_endpoint_url="ftp://h")
    with pytest.raises(ValidationError, match="or neither"):
        StorageSettings(kind="s3", s3_bucket="b-1", s3_access_key_id=SecretStr("k"))
    with pytest.raises(ValidationError, match="redirect"):
        StorageSettings(download="redirect")
    with pytest.raises(ValidationError, match="PREFIX"):
        StorageSettings(kind="s3", s3_bucket="b-1", s3_prefix="a/../b")
    assert StorageSettings(kind="s3", s3_bucket="b-1", s3_prefix="/a/b").s3_prefix == "a/b/"


def test_download_auto_redirects_for_public_clouds_only(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not StorageSettings().redirects()
    assert StorageSettings(kind="s3", s3_bucket="b-1").redirects()  # AWS
    aws = "https://s3.eu-west-3.amazonaws.com"
    assert StorageSettings(kind="s3", s3_bucket="b-1", s3_endpoint_url=aws).redirects()
    minio = StorageSettings(kind="s3", s3_bucket="b-1", s3_endpoint_url="http://minio:9000")
    assert not minio.redirects()
    assert StorageSettings(**{**minio.model_dump(), "download": "redirect"}).redirects()
    monkeypatch.setenv("TERRACAT_STORAGE_KIND", "s3")
    monkeypatch.setenv("TERRACAT_STORAGE_S3_BUCKET", "from-env")
    monkeypatch.setenv("TERRACAT_STORAGE_DOWNLOAD", "stream")
    assert StorageSettings().s3_bucket == "from-env" and not StorageSettings().redirects()


def test_gdal_options_of_an_endpoint(tmp_path: Path) -> None:
    settings = StorageSettings(
        kind="s3", s3_bucket="b-1", s3_endpoint_url="https://store.example:9443/",
        s3_path_style=True, s3_region="eu-central-1",
    )  # fmt: skip
    options = S3Storage(settings, tmp_path).gdal_options()
    assert options["AWS_S3_ENDPOINT"] == "store.example:9443"
    assert options["AWS_HTTPS"] == "YES" and options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert options["AWS_REGION"] == "eu-central-1"
    assert "AWS_ACCESS_KEY_ID" not in options  # GDAL's own chain, as boto3's
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"


def test_a_plan_rebuilds_the_storage(s3_server: S3Server, tmp_path: Path) -> None:
    settings = s3_server.settings(s3_server.make_bucket())
    plan = storage_plan(build_storage(settings, tmp_path))
    rebuilt = storage_from_plan(json.loads(json.dumps(plan)))
    assert isinstance(rebuilt, S3Storage) and rebuilt.settings == settings
    assert rebuilt.tmp == tmp_path.resolve() / "tmp"
    rebuilt.close()
    local = storage_from_plan(storage_plan(build_storage(StorageSettings(), tmp_path / "d")))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "d").resolve()


def test_abandoned_multipart_uploads_are_aborted(s3_server: S3Server, tmp_path: Path) -> None:
    """A process that died mid-upload leaves an invisible multipart upload: swept by age."""
    storage = build_storage(s3_server.settings(s3_server.make_bucket(), "p"), tmp_path)
    assert isinstance(storage, S3Storage)
    name = storage.object_name("exports/dead.mbtiles")
    storage.client.create_multipart_upload(Bucket=storage.bucket, Key=name)
    # (moto dates every upload in 2010: the age limit itself is not tested here)
    assert storage.abort_stale_uploads(older_than_s=0) == 1
    assert storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []) == []
    assert storage.stat("exports/dead.mbtiles") is None
    storage.close()


def test_check_tells_a_missing_bucket(s3_server: S3Server, tmp_path: Path) -> None:
    """What the health check asks: the bucket answers to our credentials."""
    from botocore.exceptions import ClientError

    storage = build_storage(s3_server.settings(s3_server.make_bucket()), tmp_path)
    assert isinstance(storage, S3Storage)
    storage.check()
    gone = build_storage(s3_server.settings("no-such-bucket-here"), tmp_path)
    assert isinstance(gone, S3Storage)
    with pytest.raises(ClientError):
        gone.check()
    assert gone.stat("assets/c/i/a.tif") is None  # a HEAD cannot tell: the check must
    with pytest.raises(ClientError):
        list(gone.keys("assets"))
