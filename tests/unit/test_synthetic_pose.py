"""Synthetic body parts: the default output is main's, the parts follow the posture, the
motion-only grooming mode has no static cue."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

import mouse_pipeline.synthetic as synthetic
from mouse_pipeline.pose import read_track
from mouse_pipeline.synthetic import _Planner, _Scene, generate_dataset
from mouse_pipeline.synthetic_draw import BODY_PARTS

# Computed once with main's generator (commit 3ba987d, before body parts beyond the first
# three existed) by this very procedure: generate_dataset(n_videos=2, n_frames=150,
# size=48, fps=10, seed=3), the raw frames handed to the video writer, the label files, and
# the snout, midbody and tailbase columns (with the frame index) of the pose files.
MAIN_FRAMES = "b53f6f178f5c2c8dde895be944737dee1bd10fbe8c16025776377feb25253496"
MAIN_LABELS = "57270da47d3024f03c17db5fe09617ce807b10d2a14a19027ab93f8be75e888d"
MAIN_POSE = "48060b73e040eb0b9c5d04dc87dba47d0b6934886c4568af50152352619cf514"
FIRST_THREE = ("snout", "midbody", "tailbase")


def digests(tmp_path, monkeypatch, **kwargs):
    """sha256 of the raw frames written, of the label files and of the first three parts."""
    frames = hashlib.sha256()

    class Capture:  # stands in for cv2.VideoWriter: the frames before any codec
        def __init__(self, path, *args):
            Path(path).touch()

        def isOpened(self):
            return True

        def write(self, frame):
            frames.update(np.ascontiguousarray(frame).tobytes())

        def release(self):
            pass

    monkeypatch.setattr(synthetic.cv2, "VideoWriter", Capture)
    ids = generate_dataset(tmp_path, n_videos=2, n_frames=150, size=48, fps=10.0, seed=3, **kwargs)
    labels = b"".join((tmp_path / "labels" / f"{v}.csv").read_bytes() for v in ids)
    pose = hashlib.sha256()
    for v in ids:
        rows = (tmp_path / "pose" / f"{v}.csv").read_text().splitlines()
        keep = [0] + [j for j, p in enumerate(rows[1].split(",")) if p in FIRST_THREE]
        for r in rows:
            cells = r.split(",")
            pose.update((",".join(cells[j] for j in keep) + "\n").encode())
    return frames.hexdigest(), hashlib.sha256(labels).hexdigest(), pose.hexdigest(), labels


def test_default_frames_labels_and_first_three_parts_are_mains(tmp_path, monkeypatch):
    got_frames, got_labels, got_pose, labels = digests(tmp_path, monkeypatch)
    assert b"\n1,0,0" in labels  # grooming is in it, so its drawing is pinned too
    assert (got_frames, got_labels, got_pose) == (MAIN_FRAMES, MAIN_LABELS, MAIN_POSE)


def test_motion_cue_keeps_the_labels_and_changes_the_frames(tmp_path, monkeypatch):
    got_frames, got_labels, _, _ = digests(tmp_path, monkeypatch, grooming_cue="motion")
    assert got_labels == MAIN_LABELS and got_frames != MAIN_FRAMES
    with pytest.raises(ValueError, match="grooming_cue"):
        generate_dataset(tmp_path / "x", grooming_cue="sound")


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    ids = generate_dataset(root, n_videos=2, n_frames=400, size=64, fps=10.0, seed=11)
    out = []
    for v in ids:
        labels = np.loadtxt(root / "labels" / f"{v}.csv", delimiter=",", skiprows=1, dtype=int)
        tracks = {p: read_track(root / "pose" / f"{v}.csv", p) for p in BODY_PARTS}
        out.append((labels, tracks))
    return out


def test_every_part_is_written_with_noise_dropouts_and_likelihoods(parts):
    for _, tracks in parts:
        assert list(tracks) == list(BODY_PARTS)
        for name, t in tracks.items():
            like = t.likelihood[np.isfinite(t.likelihood)]
            assert ((like >= 0) & (like <= 1)).all() and np.median(like) > 0.55, name
            assert (like < 0.5).mean() > 0.005, name  # wrong detections, low likelihood
    later = np.concatenate([np.isnan(t.xy[:, 0]) for _, tr in parts for p, t in tr.items()
                            if p not in FIRST_THREE])
    assert 0.002 < later.mean() < 0.05  # gaps with no point at all


def good(t, L):
    """Points with likelihood >= 0.6 (NaN elsewhere)."""
    xy = t.xy.copy()
    xy[~(t.likelihood >= 0.6)] = np.nan
    return xy


def test_parts_follow_the_posture(parts):
    walk_len, rear_len, groom_paw, other_paw, ears = [], [], [], [], []
    for labels, tr in parts:
        L = 64 / 6
        snout, tail = good(tr["snout"], L), good(tr["tailbase"], L)
        length = np.hypot(*(snout - tail).T) / L
        quiet, groom = labels.sum(axis=1) == 0, labels[:, 0] == 1
        rear = (labels[:, 1] == 1) | (labels[:, 2] == 1)
        walk_len.append(length[quiet])
        rear_len.append(length[rear])
        paws = [np.hypot(*(good(tr[p], L) - snout).T) / L for p in ("left_forepaw", "right_forepaw")]
        groom_paw += [d[groom] for d in paws]
        other_paw += [d[quiet] for d in paws]
        ears.append(np.hypot(*(good(tr["left_ear"], L) - good(tr["right_ear"], L)).T) / L)
    med = lambda a: float(np.nanmedian(np.concatenate(a)))  # noqa: E731
    assert 0.8 < med(walk_len) < 1.15  # nose to tail base: about one body length (size / 6)
    assert med(rear_len) < 0.8 * med(walk_len)  # rearing: foreshortened
    assert med(groom_paw) < 0.3 < med(other_paw)  # grooming: forepaws at the snout
    assert 0.12 < med(ears) < 0.35


def test_motion_only_grooming_has_rests_posture_and_only_moves():
    scene = _Scene(128, 12.0, 116.0, 21.0, 42.0, np.full(3, 50.0))
    runs = {cue: _Planner(np.random.default_rng(7), scene, 10.0, 3000, np.random.default_rng(1),
                          cue).run() for cue in ("static", "motion")}
    assert runs["static"][0] == runs["motion"][0]  # the same plan, so the same labels
    states, rows = np.array(runs["motion"][0]), runs["motion"][1]
    groom = states == "groom"
    settled = groom & np.r_[np.zeros(5, bool), groom[:-5]]  # posture has reached its target
    rest = states == "rest"
    assert (rows[groom, 9] == 0).all()  # no forepaws drawn
    assert (rows[groom, 10] != 0).all()  # ...but their points are at the face
    lo, hi = rows[rest, 3].min(), rows[rest, 3].max()
    assert lo - 0.02 <= rows[settled, 3].min() and rows[settled, 3].max() <= hi + 0.02  # rest's hunch
    assert np.abs(rows[groom, 5]).max() <= 0.12 + 1e-9 and np.abs(rows[groom, 6]).max() <= 0.5 + 1e-9
    head_motion = lambda m: np.abs(np.diff(rows[:, 5]))[m[1:] & m[:-1]].mean()  # noqa: E731
    assert head_motion(rest) == 0 and head_motion(groom) > 0.01  # only the rhythm tells
    static = runs["static"][1]
    assert static[settled, 3].max() < lo  # (the static cue: grooming sits lower than rest)


def test_motion_only_grooming_shows_no_forepaws_in_the_frames_but_moves(tmp_path):
    from mouse_pipeline.pose import read_dlc
    from mouse_pipeline.video import iter_batches

    ids = generate_dataset(tmp_path, n_videos=2, n_frames=400, size=64, fps=10.0, seed=11,
                           grooming_cue="motion")
    h = 64 // 8
    pink, motion = {"groom": [], "rest": []}, {"groom": [], "rest": []}
    for v in ids:
        frames = np.concatenate(list(iter_batches(tmp_path / "videos" / f"{v}.mp4", 64))).astype(float)
        labels = np.loadtxt(tmp_path / "labels" / f"{v}.csv", delimiter=",", skiprows=1, dtype=int)
        snout = read_dlc(tmp_path / "pose" / f"{v}.csv", "snout")
        mid = read_dlc(tmp_path / "pose" / f"{v}.csv", "midbody")
        still = np.r_[False, np.hypot(*np.diff(mid, axis=0).T) < 0.5]
        groom, quiet = labels[:, 0] == 1, labels.sum(axis=1) == 0
        for i in range(1, len(frames)):
            kind = ("groom" if groom[i] and groom[i - 1] else
                    "rest" if quiet[i] and quiet[i - 1] and still[i] else None)
            if kind is None:
                continue
            x, y = np.round(snout[i]).astype(int)
            box = (slice(max(y - h, 0), y + h), slice(max(x - h, 0), x + h))
            pink[kind].append((frames[i][box][..., 0] - frames[i][box][..., 1]).max())
            motion[kind].append(np.abs(frames[i][box] - frames[i - 1][box]).mean())
    assert len(pink["groom"]) > 30 and len(pink["rest"]) > 30
    # no pink forepaws at the face (the static cue of the default mode: > 12 in 80 % of frames)
    assert np.mean(np.array(pink["groom"]) > 12) < 0.1
    assert np.median(motion["groom"]) > 1.5 * np.median(motion["rest"])  # only the rhythm
