"""Synthetic dataset: files agree on frame counts, behaviour is plausible and deterministic."""

import numpy as np
import pytest

from mouse_pipeline.pose import read_dlc
from mouse_pipeline.synthetic import _BOUT_S, BEHAVIORS, _Planner, _Scene, generate_dataset
from mouse_pipeline.video import iter_batches, probe_video

SIZE, FRAMES, VIDEOS = 64, 600, 6


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    ids = generate_dataset(root, n_videos=VIDEOS, n_frames=FRAMES, size=SIZE, fps=10.0, seed=5)
    labels = {v: np.loadtxt(root / "labels" / f"{v}.csv", delimiter=",", skiprows=1, dtype=int)
              for v in ids}
    return root, ids, labels


def bouts(column):
    edges = np.diff(np.r_[0, column, 0])
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def frames_of(path):
    return np.concatenate(list(iter_batches(path, 64)))


def test_ids_files_and_label_format(dataset):
    root, ids, labels = dataset
    assert ids == [f"mouse_{i:03d}" for i in range(VIDEOS)]
    assert BEHAVIORS == ("grooming", "mid_rearing", "wall_rearing")
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == sorted(
        f"{v}.{ext}" for v in ids for ext in ("mp4", "csv", "csv"))  # no temporary files left
    for v in ids:
        text = (root / "labels" / f"{v}.csv").read_bytes().decode("ascii")
        assert "\r" not in text and text.endswith("\n")
        lines = text.splitlines()
        assert lines[0] == "grooming,mid_rearing,wall_rearing"
        assert len(lines) == FRAMES + 1
        assert set(np.unique(labels[v])) <= {0, 1}
        assert labels[v].sum(axis=1).max() == 1  # one behaviour at a time


def test_labels_frames_and_pose_rows_agree(dataset):
    root, ids, labels = dataset
    for v in ids:
        info = probe_video(root / "videos" / f"{v}.mp4")
        assert (info.n_frames, info.width, info.height, info.fps) == (FRAMES, SIZE, SIZE, 10.0)
        assert len(labels[v]) == FRAMES
        assert read_dlc(root / "pose" / f"{v}.csv", "midbody").shape == (FRAMES, 2)
        head = (root / "pose" / f"{v}.csv").read_text().splitlines()[1]
        assert head.split(",")[1::3] == ["snout", "midbody", "tailbase", "left_ear", "right_ear",
                                         "left_forepaw", "right_forepaw"]


def test_prevalence_and_bout_lengths_are_plausible(dataset):
    _, ids, labels = dataset
    first3 = np.concatenate([labels[v] for v in ids[:3]])
    share = first3.mean(axis=0)
    assert np.all(share > 0.03) and np.all(share < 0.35), share
    every = np.concatenate([labels[v] for v in ids])
    assert np.all(every.sum(axis=0) > 0)
    walk_or_rest = (every.sum(axis=1) == 0).mean()
    assert 0.4 < walk_or_rest < 0.8
    groom = np.concatenate([bouts(labels[v][:, 0]) for v in ids])
    wall = np.concatenate([bouts(labels[v][:, 2]) for v in ids])
    assert len(wall) > len(groom)  # many short wall rears, few long grooming bouts
    assert np.mean(groom) > 2 * np.mean(wall)
    assert 8 <= np.median(wall) <= 45 and np.median(groom) >= 25


def test_rearing_happens_at_the_right_place(dataset):
    root, ids, labels = dataset
    edge_dist = []
    for v in ids:
        xy = read_dlc(root / "pose" / f"{v}.csv", "midbody")
        edge_dist.append(np.minimum(xy, SIZE - 1 - xy).min(axis=1))
    edge_dist = np.concatenate(edge_dist)
    every = np.concatenate([labels[v] for v in ids])
    at_wall = edge_dist[every[:, 2] == 1]
    in_open = edge_dist[every[:, 1] == 1]
    assert np.mean(at_wall < 0.25 * SIZE) > 0.95
    assert np.mean(in_open > 0.25 * SIZE) > 0.95


def test_rearing_changes_the_pixels_near_the_animal(dataset):
    root, ids, labels = dataset
    v = next(v for v in ids if labels[v][:, 1].sum() >= 10)
    frames = frames_of(root / "videos" / f"{v}.mp4").astype(float)
    xy = read_dlc(root / "pose" / f"{v}.csv", "midbody")
    h = SIZE // 8

    def patch_mean(i):
        x, y = np.round(xy[i]).astype(int)
        return frames[i, max(y - h, 0):y + h, max(x - h, 0):x + h].mean()

    rear = [patch_mean(i) for i in np.flatnonzero(labels[v][:, 1])]
    quiet = [patch_mean(i) for i in np.flatnonzero(labels[v].sum(axis=1) == 0)]
    # a rearing animal covers less floor (foreshortened), so its surroundings are brighter
    assert np.mean(rear) > np.mean(quiet)


def test_grooming_shows_forepaws_and_moves_unlike_rest(dataset):
    root, ids, labels = dataset
    h = SIZE // 8
    pink, motion = {"groom": [], "rest": []}, {"groom": [], "rest": []}
    for v in ids:
        frames = frames_of(root / "videos" / f"{v}.mp4").astype(float)
        snout = read_dlc(root / "pose" / f"{v}.csv", "snout")
        mid = read_dlc(root / "pose" / f"{v}.csv", "midbody")
        still = np.r_[False, np.hypot(*np.diff(mid, axis=0).T) < 0.5]
        groom, unlabelled = labels[v][:, 0] == 1, labels[v].sum(axis=1) == 0
        for i in range(1, FRAMES):
            if groom[i] and groom[i - 1]:
                kind = "groom"
            elif unlabelled[i] and unlabelled[i - 1] and still[i]:
                kind = "rest"  # walking moves the midbody by 1-3 px a frame
            else:
                continue
            x, y = np.round(snout[i]).astype(int)
            box = (slice(max(y - h, 0), y + h), slice(max(x - h, 0), x + h))
            red_over_green = frames[i][box][..., 0] - frames[i][box][..., 1]
            pink[kind].append(red_over_green.max())  # RGB frames
            motion[kind].append(np.abs(frames[i][box] - frames[i - 1][box]).mean())
    assert len(pink["groom"]) > 50 and len(pink["rest"]) > 50
    groom_pink, rest_pink = np.array(pink["groom"]), np.array(pink["rest"])
    # forepaws at the face: pink beside the snout while grooming (red above green by
    # 13-40 grey levels after mp4v at 64 px), not at rest (0-10)
    assert np.median(groom_pink) > 3 * max(np.median(rest_pink), 1.0)
    assert np.mean(groom_pink > 12) > 0.8 and np.mean(rest_pink > 12) < 0.1
    # strokes: the head region changes from frame to frame far more than at rest
    assert np.median(motion["groom"]) > 2 * np.median(motion["rest"])


def test_grooming_details_do_not_change_the_plan():
    scene = _Scene(128, 12.0, 116.0, 21.0, 42.0, np.full(3, 50.0))
    plans = [_Planner(np.random.default_rng(7), scene, 10.0, 3000, np.random.default_rng(d)).run()
             for d in (1, 2)]
    assert plans[0][0] == plans[1][0] and "groom" in plans[0][0]
    groom = np.array(plans[0][0]) == "groom"
    assert not np.array_equal(plans[0][1][groom], plans[1][1][groom])  # the details differ
    np.testing.assert_array_equal(plans[0][1][~groom][:, :3], plans[1][1][~groom][:, :3])


def test_same_seed_same_data_and_videos_independent_of_count(tmp_path):
    a = generate_dataset(tmp_path / "a", n_videos=2, n_frames=40, size=SIZE, seed=3)
    generate_dataset(tmp_path / "b", n_videos=2, n_frames=40, size=SIZE, seed=3)
    generate_dataset(tmp_path / "c", n_videos=1, n_frames=40, size=SIZE, seed=3, prefix="other")
    generate_dataset(tmp_path / "d", n_videos=1, n_frames=40, size=SIZE, seed=4)
    for v in a:
        for sub in ("labels", "pose"):
            assert (tmp_path / "a" / sub / f"{v}.csv").read_bytes() == \
                (tmp_path / "b" / sub / f"{v}.csv").read_bytes()
        np.testing.assert_array_equal(frames_of(tmp_path / "a" / "videos" / f"{v}.mp4"),
                                      frames_of(tmp_path / "b" / "videos" / f"{v}.mp4"))
    assert (tmp_path / "c" / "pose" / "other_000.csv").read_bytes() == \
        (tmp_path / "a" / "pose" / "mouse_000.csv").read_bytes()
    assert (tmp_path / "d" / "pose" / "mouse_000.csv").read_bytes() != \
        (tmp_path / "a" / "pose" / "mouse_000.csv").read_bytes()


def test_pose_has_a_few_unreliable_points(dataset):
    root, ids, _ = dataset
    text = (root / "pose" / f"{ids[0]}.csv").read_text().splitlines()[3:]
    like = np.array([float(r.split(",")[6]) for r in text])
    assert np.median(like) > 0.9
    assert 1 <= (like < 0.5).sum() <= 0.06 * FRAMES


def test_odd_size_short_video_and_bad_arguments(tmp_path):
    generate_dataset(tmp_path, n_videos=1, n_frames=8, size=33, seed=0)
    info = probe_video(tmp_path / "videos" / "mouse_000.mp4")
    assert (info.n_frames, info.width, info.height) == (8, 32, 32)
    assert len((tmp_path / "labels" / "mouse_000.csv").read_text().splitlines()) == 9
    with pytest.raises(ValueError, match="size >= 32"):
        generate_dataset(tmp_path, size=16)


def test_bout_lengths_are_set_in_seconds_whatever_the_fps():
    def mean_bout_seconds(fps):
        scene = _Scene(128, 12.0, 116.0, 21.0, 42.0, np.full(3, 50.0))
        states, _ = _Planner(np.random.default_rng(0), scene, fps, int(3600 * fps),
                             np.random.default_rng(1)).run()
        states = np.array(states)
        return {k: bouts(states == k).mean() / fps for k in _BOUT_S}

    slow, fast = mean_bout_seconds(5.0), mean_bout_seconds(20.0)
    for k in _BOUT_S:
        assert fast[k] == pytest.approx(slow[k], rel=0.25), k
