"""The feature cache contract (features/store.py), its writer (features/writer.py) and
folder locks (locks.py)."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline import __version__
from mouse_pipeline.errors import CacheError, InputError, LockError
from mouse_pipeline.features import store, writer
from mouse_pipeline.features.store import (
    PROVENANCE_KEYS,
    cache_path,
    expected_attrs,
    is_fresh,
    list_cache,
    read_attrs,
    read_embeddings,
    sanitize_id,
)
from mouse_pipeline.features.writer import CacheWriter, remove_stale_temps
from mouse_pipeline.fileio import host_name
from mouse_pipeline.locks import HELD, PathRegistry, acquire_lock
from mouse_pipeline.video import video_fingerprint


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "videos" / "m1.avi"
    path.parent.mkdir()
    path.write_bytes(b"not really a video, but a file with a fingerprint")
    return path


def attrs_for(video, **changes):
    base = dict(backbone="resnet50v2", weights="random", input_size=32, crop={"mode": "none"},
                dtype="float32", precision="float32", video_path=video,
                fingerprint=video_fingerprint(video), fps=10.0)
    base.update(changes)
    return expected_attrs(**base)


def write_file(path, emb, attrs, dtype="float32", batch=3):
    with CacheWriter(path, len(emb), emb.shape[1], dtype, attrs) as w:
        for i in range(0, len(emb), batch):
            w.write(emb[i:i + batch])


def temps(folder):
    return sorted(p.name for p in folder.rglob("*.tmp-*"))


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- ids and paths


@pytest.mark.parametrize("stem, expected", [("m1_day 2", "m1_day_2"), ("../../x", ".._.._x"),
                                            ("a/b\\c", "a_b_c"), ("rat.v2-a", "rat.v2-a")])
def test_sanitize_id_keeps_ids_inside_the_cache(tmp_path, stem, expected):
    assert sanitize_id(stem) == expected
    path = cache_path(tmp_path / "cache", "resnet50v2", stem)
    assert path.parent == tmp_path / "cache" / "resnet50v2"
    assert path.resolve().is_relative_to((tmp_path / "cache" / "resnet50v2").resolve())


@pytest.mark.parametrize("stem", ["", ".", ".."])
def test_sanitize_id_refuses_folder_names(stem):
    with pytest.raises(InputError, match="cannot be a video id"):
        sanitize_id(stem)


# --------------------------------------------------------------------------- writer


def test_writer_writes_rows_in_order_with_attributes(tmp_path, video):
    emb = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    write_file(path, emb, attrs_for(video))
    np.testing.assert_array_equal(read_embeddings(path, expected_dim=4, expected_backbone="resnet50v2"), emb)
    attrs = read_attrs(path)
    assert attrs["n_frames"] == 10 and attrs["dim"] == 4 and attrs["dtype"] == "float32"
    assert attrs["package_version"] == __version__ and attrs["created"].startswith("20")
    assert attrs["video_path"] == str(video) and attrs["fps"] == 10.0
    assert json.loads(attrs["crop"]) == {"mode": "none"}
    assert set(PROVENANCE_KEYS) <= set(attrs)
    with h5py.File(path, "r") as f:
        assert f["embeddings"].chunks == (10, 4)
    assert temps(tmp_path) == []


def test_writer_float16_storage(tmp_path, video):
    emb = np.linspace(-1, 1, 6 * 3, dtype=np.float32).reshape(6, 3)
    path = tmp_path / "c" / "b" / "v.h5"
    write_file(path, emb, attrs_for(video, dtype="float16"), dtype="float16")
    out = read_embeddings(path)
    assert out.dtype == np.float16
    np.testing.assert_allclose(out, emb, atol=1e-3)


def test_exception_inside_writer_leaves_no_file(tmp_path, video):
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    with pytest.raises(RuntimeError, match="boom"):
        with CacheWriter(path, 6, 2, "float32", attrs_for(video)) as w:
            w.write(np.zeros((3, 2), np.float32))
            assert temps(tmp_path) != []  # written under a temporary name meanwhile
            assert not path.exists()
            raise RuntimeError("boom")
    assert not path.exists()
    assert temps(tmp_path) == []


def test_wrong_row_count_is_refused(tmp_path, video):
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    with pytest.raises(CacheError, match="5 of 6 frames"):
        with CacheWriter(path, 6, 2, "float32", attrs_for(video)) as w:
            w.write(np.zeros((5, 2), np.float32))
    with pytest.raises(CacheError, match="more than the 6 frames"):
        with CacheWriter(path, 6, 2, "float32", attrs_for(video)) as w:
            w.write(np.zeros((7, 2), np.float32))
    assert not path.exists() and temps(tmp_path) == []


def test_writer_never_replaces_a_good_file_with_a_failed_one(tmp_path, video):
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    emb = np.ones((4, 2), np.float32)
    write_file(path, emb, attrs_for(video))
    with pytest.raises(CacheError):
        with CacheWriter(path, 4, 2, "float32", attrs_for(video)) as w:
            w.write(np.zeros((2, 2), np.float32))
    np.testing.assert_array_equal(read_embeddings(path), emb)


def test_writer_requires_provenance(tmp_path):
    with pytest.raises(ValueError, match="video_sha256"):
        CacheWriter(tmp_path / "x.h5", 3, 2, "float32", {"backbone": "resnet50v2"})


# --------------------------------------------------------------------------- freshness


def test_is_fresh_reasons(tmp_path, video):
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    assert is_fresh(path, attrs_for(video)) == (False, "not cached")
    write_file(path, np.zeros((4, 2), np.float32), attrs_for(video))
    assert is_fresh(path, attrs_for(video)) == (True, "up to date")

    fresh, reason = is_fresh(path, attrs_for(video, backbone="inception_resnet_v2"))
    assert not fresh and reason.startswith("backbone changed")
    fresh, reason = is_fresh(path, attrs_for(video, input_size=64))
    assert not fresh and reason == "input_size changed (32 -> 64)"
    fresh, reason = is_fresh(path, attrs_for(video, crop={"mode": "box", "box": [0, 0, 8, 8]}))
    assert not fresh and reason.startswith("crop changed")
    assert not is_fresh(path, attrs_for(video, weights="imagenet"))[0]
    assert not is_fresh(path, attrs_for(video, dtype="float16"))[0]
    assert not is_fresh(path, attrs_for(video, precision="bfloat16"))[0]

    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched
    fresh, reason = is_fresh(path, attrs_for(video))
    assert not fresh and reason.startswith("video changed (mtime_ns")


def test_corrupt_file_is_stale_and_unreadable(tmp_path, video):
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage, not HDF5")
    fresh, reason = is_fresh(path, attrs_for(video))
    assert not fresh and reason.startswith("unreadable")
    with pytest.raises(CacheError, match=r"m1\.h5: unreadable cache file .*--overwrite"):
        read_embeddings(path)
    with pytest.raises(CacheError, match="unreadable"):
        read_attrs(path)


def test_read_embeddings_errors(tmp_path, video):
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    with pytest.raises(CacheError, match="no such cache file; run `mouse-pipeline extract`"):
        read_embeddings(path)
    write_file(path, np.zeros((4, 2), np.float32), attrs_for(video))
    with pytest.raises(CacheError, match=r"2 dimensions where 2048 were expected; re-run extract with --overwrite"):
        read_embeddings(path, expected_dim=2048)
    with pytest.raises(CacheError, match="holds 'resnet50v2' embeddings where 'resnet50' was expected"):
        read_embeddings(path, expected_backbone="resnet50")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(CacheError, match="no 'embeddings' dataset"):
        read_embeddings(other)
    with h5py.File(path, "a") as f:  # damaged by hand: fewer rows than recorded
        del f["embeddings"]
        f["embeddings"] = np.zeros((3, 2), np.float32)
    with pytest.raises(CacheError, match="n_frames 4; the file is damaged"):
        read_embeddings(path)
    assert is_fresh(path, attrs_for(video))[1].startswith("incomplete")


# --------------------------------------------------------------------------- listing and temps


def test_list_cache(tmp_path, video):
    root = tmp_path / "cache"
    write_file(cache_path(root, "resnet50v2", "m2"), np.zeros((5, 3), np.float32), attrs_for(video))
    write_file(cache_path(root, "mobilenet_v3_small", "m1"), np.zeros((4, 2), np.float32),
               attrs_for(video, backbone="mobilenet_v3_small", dtype="float16"), dtype="float16")
    (root / "resnet50v2" / "m1.h5").write_bytes(b"broken")
    (root / "resnet50v2" / f"m3.h5.tmp-{socket.gethostname()}-1-abcd").write_bytes(b"partial")
    entries = list_cache(root)
    assert [(e.backbone, e.video_id) for e in entries] == [
        ("mobilenet_v3_small", "m1"), ("resnet50v2", "m1"), ("resnet50v2", "m2")]
    small, broken, m2 = entries
    assert (small.n_frames, small.dim, small.dtype, small.error) == (4, 2, "float16", None)
    assert small.bytes == small.path.stat().st_size > 0 and small.attrs["backbone"] == "mobilenet_v3_small"
    assert broken.error is not None and broken.attrs == {}
    assert (m2.n_frames, m2.dim, m2.dtype) == (5, 3, "float32")


def test_remove_stale_temps_only_of_dead_writers(tmp_path):
    folder = tmp_path / "cache" / "resnet50v2"
    folder.mkdir(parents=True)
    host = socket.gethostname()
    dead = folder / f"m1.h5.tmp-{host}-{dead_pid()}-aaaa"
    alive = folder / f"m2.h5.tmp-{host}-{os.getppid()}-bbbb"
    remote = folder / f"m3.h5.tmp-some-other-host-{os.getppid()}-cccc"
    for p in (dead, alive, remote):
        p.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path / "cache") == [dead]
    assert alive.exists() and remote.exists()
    assert remove_stale_temps(folder, any_host=True) == [remote]
    assert alive.exists()


def test_remove_stale_temps_of_older_writers_names_without_a_host(tmp_path):
    folder = tmp_path / "cache" / "resnet50v2"
    folder.mkdir(parents=True)
    dead = folder / f"m1.h5.tmp-{dead_pid()}-aaaa"  # <id>.h5.tmp-<pid>-<token>: this host's
    alive = folder / f"m2.h5.tmp-{os.getppid()}-bbbb"
    for p in (dead, alive):
        p.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path / "cache") == [dead]
    assert alive.exists()


def test_writer_temp_name_is_the_project_scheme_and_never_a_cache_file(tmp_path, video):
    from mouse_pipeline.fileio import temp_owner

    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    with CacheWriter(path, 2, 2, "float32", attrs_for(video)) as w:
        (name,) = temps(tmp_path)
        assert name == w.tmp.name and not name.endswith(".h5")
        prefix = f"m1.h5.tmp-{host_name()}-{os.getpid()}-"
        assert name.startswith(prefix) and len(name) == len(prefix) + 8
        int(name[len(prefix):], 16)  # the token is hex
        assert temp_owner(name) == (host_name(), os.getpid())
        assert w.tmp in writer.WRITING
        assert list_cache(tmp_path / "cache") == []  # a partial file is never listed
        w.write(np.zeros((2, 2), np.float32))
    assert w.tmp not in writer.WRITING and temps(tmp_path) == []
    assert [e.video_id for e in list_cache(tmp_path / "cache")] == ["m1"]


def test_writer_names_are_still_importable_from_store():
    assert store.CacheWriter is CacheWriter and store.remove_stale_temps is remove_stale_temps
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        store.nothing_here  # noqa: B018


def test_path_registry():
    reg = PathRegistry()
    reg.add(Path("/a/b"))
    assert "/a/b" in reg and Path("/a/b") in reg and "/a" not in reg
    reg.discard("/a/b")
    reg.discard("/a/b")  # twice: nothing to forget
    assert Path("/a/b") not in reg


def test_remove_stale_temps_spares_a_file_being_written(tmp_path, video):
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    with CacheWriter(path, 2, 2, "float32", attrs_for(video)) as w:
        assert remove_stale_temps(tmp_path / "cache", any_host=True) == []
        w.write(np.zeros((2, 2), np.float32))
    assert path.exists()


# --------------------------------------------------------------------------- locks


def test_second_lock_names_the_holder(tmp_path):
    folder = tmp_path / "cache" / "resnet50v2"
    with acquire_lock(folder) as lock:
        assert lock in HELD
        holder = json.loads(lock.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(LockError, match=rf"resnet50v2 is locked by pid {os.getpid()} \(started .*\); "
                                            "wait for it or stop it"):
            with acquire_lock(folder):
                pass
    assert not (folder / ".lock").exists() and folder / ".lock" not in HELD
    with acquire_lock(folder):  # free again
        pass


def test_lock_held_by_another_live_process(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    other = os.getppid()
    (folder / ".lock").write_text(json.dumps({"pid": other, "host": socket.gethostname(),
                                              "started": "2024-01-01T00:00:00"}))
    t0 = time.monotonic()
    with pytest.raises(LockError, match=f"locked by pid {other}"):
        with acquire_lock(folder, wait=0.5):
            pass
    assert 0.4 < time.monotonic() - t0 < 5
    assert (folder / ".lock").exists()  # never removed by the loser


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    folder = tmp_path / "cache"
    folder.mkdir()
    pid = dead_pid()
    (folder / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(),
                                              "started": "2024-01-01T00:00:00"}))
    with caplog.at_level("WARNING", logger="mouse_pipeline.locks"):
        with acquire_lock(folder) as lock:
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert f"stale lock of pid {pid}" in caplog.text
    assert not (folder / ".lock").exists()
    assert not list(folder.glob(".lock.break"))
