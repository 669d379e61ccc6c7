"""A disk that fills up during extraction (simulated): one line, exit 2, nothing partial kept.

The simulated disk is the file system, not the writer: :class:`SmallDisk` replaces
``os.pwrite``, through which the cache writer's temporary file receives every byte HDF5
writes (store._TempFile), by one that writes what still fits into a fixed capacity for the
whole cache folder (counting the blocks its files really occupy) and then fails with
``ENOSPC``, as a full file system does. So the failure arrives wherever HDF5 happens to
write: in the middle of a batch, when the file is flushed at the end, or in the last bytes.

Before store.py wrote through its own file object, a real full tmpfs made extract print
"unexpected error (RuntimeError): Disable slist on flush dest failure failed (...)" over two
lines and then crash with a segmentation fault at exit (HDF5 cannot close a file whose
flush failed). The CLI test therefore runs the failing extraction in a subprocess and
checks its exit status.
"""

import errno
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.errors import CacheError, LockError
from mouse_pipeline.features.store import CacheWriter, cache_path, expected_attrs, read_embeddings
from mouse_pipeline.locks import acquire_lock
from mouse_pipeline.synthetic import generate_dataset
from mouse_pipeline.video import video_fingerprint
from tests.integration import random_extract_args

REPO = Path(__file__).resolve().parents[2]
_real_pwrite = os.pwrite


class SmallDisk:
    """A file system holding at most ``capacity`` bytes (allocated blocks) under ``folder``."""

    def __init__(self, folder: Path, capacity: int):
        self.folder, self.capacity = Path(folder), int(capacity)
        self.refusals = 0

    def used(self) -> int:
        return sum(p.stat().st_blocks * 512 for p in self.folder.rglob("*") if p.is_file())

    def pwrite(self, fd, data, offset):
        room = self.capacity - self.used()
        if room <= 0:
            self.refusals += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _real_pwrite(fd, memoryview(data)[:room], offset)  # a short write, like a real disk


def main_on_small_disk(folder: str, capacity: str, cli_args: list[str]) -> None:
    """Entry point of the subprocess: ``mouse-pipeline`` with the cache on a small disk."""
    os.pwrite = SmallDisk(Path(folder), int(capacity)).pwrite
    from stages.cli import main

    main(args=cli_args, prog_name="mouse-pipeline")


def cli_on_small_disk(folder: Path, capacity: int, *args) -> subprocess.CompletedProcess:
    code = ("import sys; from tests.integration.test_disk_full import main_on_small_disk; "
            "main_on_small_disk(sys.argv[1], sys.argv[2], sys.argv[3:])")
    return subprocess.run([sys.executable, "-c", code, str(folder), str(capacity), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def leftovers(cache: Path) -> list[str]:
    """Temporary files and locks (none may remain once a command has ended)."""
    return sorted(p.name for p in cache.rglob("*") if ".tmp-" in p.name or ".lock" in p.name)


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


# --------------------------------------------------------------------------- the writer


@pytest.fixture
def video(tmp_path):
    path = tmp_path / "videos" / "m1.avi"
    path.parent.mkdir()
    path.write_bytes(b"stands in for a video: only its fingerprint is recorded")
    return path


def attrs_for(video):
    return expected_attrs(backbone="resnet50v2", weights="random", input_size=32, crop={"mode": "none"},
                          dtype="float32", precision="float32", video_path=video,
                          fingerprint=video_fingerprint(video), fps=10.0)


def write_all(path, emb, attrs, batch=32, accepted=None) -> None:
    """Write ``emb`` in batches; ``accepted`` collects the batches ``write`` returned from."""
    with CacheWriter(path, len(emb), emb.shape[1], "float32", attrs) as w:
        for i in range(0, len(emb), batch):
            w.write(emb[i:i + batch])
            if accepted is not None:
                accepted.append(i)


@pytest.mark.parametrize("rows, dim, fails_in", [
    # 2 MiB chunks (256 rows x 2048, as ResNet50V2's on a long video): HDF5 keeps 8 MiB of them
    # in its chunk cache and writes the oldest while later batches arrive
    (1600, 2048, "write"),
    # 51 kB of chunks stay in the cache until the end: the disk fills when the file is flushed
    (200, 64, "end"),
])
def test_full_disk_while_writing_raises_one_line_and_keeps_the_old_file(tmp_path, video, monkeypatch,
                                                                        rows, dim, fails_in):
    rng = np.random.default_rng(0)
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    old = rng.standard_normal((rows, dim)).astype(np.float32)
    write_all(path, old, attrs_for(video))  # a complete file from an earlier run
    new = rng.standard_normal((rows, dim)).astype(np.float32)
    disk = SmallDisk(tmp_path / "cache", allocated(path) + new.nbytes // 3)
    monkeypatch.setattr(os, "pwrite", disk.pwrite)

    accepted = []
    with pytest.raises(CacheError) as info:
        write_all(path, new, attrs_for(video), accepted=accepted)
    message = str(info.value)
    assert disk.refusals >= 1
    # where the failure arrived: inside a write() call, or once every batch was accepted (flush)
    n_batches = -(-rows // 32)
    if fails_in == "write":
        assert 0 < len(accepted) < n_batches
    else:
        assert len(accepted) == n_batches
    assert "\n" not in message
    assert message.startswith(f"{path}: the disk is full (No space left on device); the unfinished "
                              "file was deleted. Free at least ")
    assert f"MB in {path.parent} and run extract again: videos already finished are kept" in message
    assert leftovers(tmp_path) == []
    np.testing.assert_array_equal(read_embeddings(path), old)  # never replaced by a partial file

    monkeypatch.setattr(os, "pwrite", _real_pwrite)  # space freed: the same process writes it whole
    write_all(path, new, attrs_for(video))
    np.testing.assert_array_equal(read_embeddings(path), new)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EDQUOT, "Disk quota exceeded")])
def test_full_disk_reported_by_fsync(tmp_path, video, monkeypatch, code, reason):
    """Network and delayed-allocation file systems may report the full disk only at fsync."""
    def full_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full_fsync)
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    with pytest.raises(CacheError, match=rf"^{path}: the disk is full \({reason}\); the unfinished file was "
                                         r"deleted\. Free at least 0\.0 MB in "):
        write_all(path, np.ones((5, 3), np.float32), attrs_for(video))
    assert not path.exists() and leftovers(tmp_path) == []


def test_other_write_errors_name_the_file_and_the_reason(tmp_path, video, monkeypatch):
    def broken(fd, data, offset):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "pwrite", broken)
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    with pytest.raises(CacheError, match=rf"^{path}: cannot write this cache file \(Input/output error\); "
                                         "the unfinished file was deleted"):
        write_all(path, np.ones((5, 3), np.float32), attrs_for(video))
    assert not path.exists() and leftovers(tmp_path) == []


def test_full_disk_when_taking_the_lock(tmp_path, monkeypatch):
    def full_fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_fsync)
    folder = tmp_path / "cache" / "resnet50v2"
    with pytest.raises(LockError) as info:
        with acquire_lock(folder):
            pass
    assert str(info.value) == (f"{folder / '.lock'}: cannot write the lock file (No space left on device); "
                               f"the disk is full: free space in {folder} and run again")
    assert not (folder / ".lock").exists()  # no empty lock left for the next run to puzzle over


# --------------------------------------------------------------------------- extract, end to end


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("diskfull")
    generate_dataset(root, n_videos=3, n_frames=48, size=64, fps=5, seed=3)
    return root


def extract_args(root: Path, cache: Path) -> list[str]:
    return random_extract_args(root, cache, "resnet50v2", 32, "--set", "extract.batch_size=8")


def embeddings(cache: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted((cache / "resnet50v2").glob("*.h5")):
        with h5py.File(path, "r") as f:
            assert f["embeddings"].shape[0] == f.attrs["n_frames"]
            out[path.stem] = f["embeddings"][()]
    return out


@pytest.mark.slow
def test_extract_on_a_full_disk_exits_2_keeps_finished_videos_and_resumes(data, tmp_path, run_cli):
    reference = tmp_path / "reference"
    result = run_cli(*extract_args(data, reference))
    assert result.exit_code == 0, result.output
    ref = embeddings(reference)
    assert list(ref) == ["mouse_000", "mouse_001", "mouse_002"]
    assert all(ref[v].std(axis=0).max() > 0 for v in ref)  # varying rows: the comparison means something
    sizes = [allocated(p) for p in sorted((reference / "resnet50v2").glob("*.h5"))]
    # room for the first two files, the lock, and half of the third
    capacity = sizes[0] + sizes[1] + 4096 + sizes[2] // 2

    cache = tmp_path / "cache"
    target = cache / "resnet50v2" / "mouse_002.h5"
    expected = (f"error: {target}: the disk is full (No space left on device); the unfinished file was "
                f"deleted. Free at least {48 * 2048 * 4 / 1e6:.1f} MB in {target.parent} and run extract "
                "again: videos already finished are kept and will not be extracted again")
    kept = {}
    for attempt in range(2):  # the second run, disk still full, keeps what the first finished
        proc = cli_on_small_disk(cache, capacity, *extract_args(data, cache))
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
        assert proc.returncode == 2, proc.stderr[-3000:]  # not 1 (a bug) and not -11 (a crash)
        assert errors == [expected], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        got = embeddings(cache)
        assert list(got) == ["mouse_000", "mouse_001"] and not target.exists()
        for vid, emb in got.items():
            np.testing.assert_array_equal(emb, ref[vid])
        assert leftovers(cache) == []
        mtimes = {p.name: p.stat().st_mtime_ns for p in (cache / "resnet50v2").glob("*.h5")}
        if attempt == 1:
            assert mtimes == kept  # finished videos were neither rewritten nor touched
        kept = mtimes

    # space freed: the next run does only the missing video and equals an uninterrupted run
    result = run_cli(*extract_args(data, cache))
    assert result.exit_code == 0, result.output
    assert "3 video x backbone: 1 extracted, 2 up to date, 0 failed" in result.output
    got = embeddings(cache)
    assert got.keys() == ref.keys()
    for vid in ref:
        np.testing.assert_array_equal(got[vid], ref[vid])
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "resnet50v2").glob("*.h5")
            if p.name != target.name} == kept
    assert leftovers(cache) == []
