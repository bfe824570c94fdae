"""The worker's sweeps of what killed processes leave: local temp files and work folders, and
staged uploads no file record names (through the storage, as in a bucket)."""

import os
import time
from pathlib import Path

from catalog.storage.local import LocalStorage
from catalog.uploads.ingest import remove_staged
from server.worker import sweep_staging, sweep_temp

OLD = time.time() - 7200


def _age(path: Path) -> None:
    os.utime(path, (OLD, OLD))


def test_temp_sweep_removes_old_files_and_work_folders(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    temp = storage.temp_path("").parent
    old_file, new_file, work = temp / "a.part", temp / "b.part", temp / "work"
    old_file.write_bytes(b"x")
    new_file.write_bytes(b"y")
    work.mkdir()
    (work / "source").write_bytes(b"z")
    for path in (old_file, work):
        _age(path)
    assert sweep_temp(temp, 3600) == 2
    assert sorted(p.name for p in temp.iterdir()) == ["b.part"]


def test_staging_sweep_keeps_what_a_record_names_and_what_is_recent(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for name in ("named", "litter", "fresh"):
        local = storage.temp_path("")
        local.write_bytes(name.encode())
        storage.publish(local, f"staging/{name}")
    for name in ("named", "litter"):
        _age(storage.path(f"staging/{name}"))
    assert sweep_staging(storage, 3600, {"staging/named"}) == 1
    assert sorted(o.key for o in storage.keys("staging")) == ["staging/fresh", "staging/named"]


async def test_removing_a_staged_upload_never_leaves_its_areas(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for key in ("assets/c/i/data.tif", "staging/one", f"tus/{'a' * 32}/00000000000000000000.n"):
        local = storage.temp_path("")
        local.write_bytes(b"x")
        storage.publish(local, key)
    await remove_staged(storage, "assets/c/i/data.tif")  # whatever a record says: not staged
    await remove_staged(storage, "tus/not-an-upload-id")
    await remove_staged(storage, "staging/one")
    await remove_staged(storage, f"tus/{'a' * 32}")
    assert [o.key for o in storage.keys("assets")] == ["assets/c/i/data.tif"]
    assert list(storage.keys("staging")) == list(storage.keys("tus")) == []
