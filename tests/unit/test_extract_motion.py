"""The motion stream in the stage 1 engine: two cache files per video from one decoding,
freshness of each stream on its own, nothing half written after a failure.

Uses test_extract's tiny videos and its module backbone (resnet50v2, random weights, 32 px).
"""

import json

import numpy as np
import pytest

from mouse_pipeline import video as video_module
from mouse_pipeline.errors import InputError
from mouse_pipeline.features import extract as ex
from mouse_pipeline.features import streaming
from mouse_pipeline.features.motion import MotionSettings, motion_image, still_image
from mouse_pipeline.features.store import cache_path, read_attrs, read_embeddings
from tests.unit.test_extract import (
    FRAMES,
    SIZE,
    config,
    decode,
    decoder_threads,
    leftovers,
    mtimes,
    one_by_one,
    write_video,
)

BOTH = "extract.backbones=[resnet50v2, resnet50v2+motion]"
MOTION = "resnet50v2+motion"


@pytest.fixture(scope="module")
def backbone():
    import tensorflow as tf

    from mouse_pipeline import backbones

    built = backbones.build_backbone("resnet50v2", "random", SIZE)
    built.single = tf.function(lambda x: built.model(x, training=False),  # as test_extract's
                               input_signature=[tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32)])
    return built


@pytest.fixture
def built(monkeypatch, backbone):
    """Extract's backbone build replaced by the module's backbone; the list records every build."""
    from mouse_pipeline import backbones

    calls = []

    def fake_build(name, weights, input_size=None, precision="float32", jit_compile=False):
        calls.append((name, weights, input_size, precision))
        return backbone

    monkeypatch.setattr(backbones, "build_backbone", fake_build)
    return calls


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for seed, (name, n) in enumerate(FRAMES.items()):
        write_video(folder / f"{name}.avi", n, seed)
    return folder


@pytest.fixture
def opened(monkeypatch):
    """Every time a video file is opened for decoding, its stem (probing counts too)."""
    stems = []
    real = video_module._open

    def counting(path):
        stems.append(path.stem)
        return real(path)

    monkeypatch.setattr(video_module, "_open", counting)
    return stems


@pytest.fixture
def motion_calls(monkeypatch):
    """The ``rgb`` flag of every motion decoding (streaming's iter_motion_batches)."""
    calls = []
    real = streaming.iter_motion_batches

    def spy(path, batch_size, crop, out_size, motion, rgb=True, threads=1):
        calls.append((path.stem, rgb))
        return real(path, batch_size, crop, out_size, motion, rgb=rgb, threads=threads)

    monkeypatch.setattr(streaming, "iter_motion_batches", spy)
    return calls


def reference_motion(path, settings):
    """Motion images as specified: frame 0 still, then each frame after the one before."""
    frames = decode(path)
    out = [still_image(frames.shape[1:3], settings)]
    out += [motion_image(np.ascontiguousarray(frames[t - 1]), np.ascontiguousarray(frames[t]), settings)
            for t in range(1, len(frames))]
    return np.stack(out)


def files(cache, stream):
    return {vid: read_embeddings(cache_path(cache, stream, vid)) for vid in FRAMES}


def test_rgb_and_motion_come_from_one_decoding_into_two_files_per_video(tmp_path, videos, backbone, built,
                                                                       opened, motion_calls):
    summary = ex.extract(config(tmp_path, videos, BOTH), progress=False)
    assert [(r.backbone, r.video_id, r.status) for r in summary.results] == [
        (stream, vid, "extracted") for vid in FRAMES for stream in ("resnet50v2", MOTION)]
    assert len(built) == 1 and built[0][0] == "resnet50v2"  # one backbone for both streams
    assert sorted(opened) == sorted(list(FRAMES) * 2)  # per video: probed once, decoded once
    assert motion_calls == [(vid, True) for vid in FRAMES]
    settings = MotionSettings()  # the config's defaults: dis, fast
    for vid, n in FRAMES.items():
        path = cache_path(tmp_path / "cache", MOTION, vid)
        assert path.parent.name == MOTION
        emb = read_embeddings(path, expected_dim=2048, expected_backbone=MOTION)
        assert emb.shape == (n, 2048)
        if vid == "m1":  # the model on the specified motion images, one frame at a time
            ref = one_by_one(backbone, reference_motion(videos / f"{vid}.avi", settings))
            np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
            assert np.abs(ref[1:] - ref[:-1]).max(axis=1).min() > 1e-2 * np.abs(ref).max()  # no shift passes
        attrs = read_attrs(path)
        assert json.loads(attrs["motion"]) == {"method": "dis", "preset": "fast", "flow_scale": 8.0}
        assert (attrs["backbone"], attrs["weights"], attrs["input_size"], attrs["n_frames"]) == (
            MOTION, "random", SIZE, n)
        assert json.loads(attrs["crop"]) == {"mode": "none"}
        assert "motion" not in read_attrs(cache_path(tmp_path / "cache", "resnet50v2", vid))
    # the RGB files are those of an RGB-only extraction, bit for bit
    alone = tmp_path / "alone"
    ex.extract(config(tmp_path, videos, f"extract.cache={alone}"), progress=False)
    for vid, emb in files(tmp_path / "cache", "resnet50v2").items():
        np.testing.assert_array_equal(emb, read_embeddings(cache_path(alone, "resnet50v2", vid)))
    rows = ex.cache_table(tmp_path / "cache", config(tmp_path, videos, BOTH))
    assert [(r["backbone"], r["video"], r["status"]) for r in rows] == [
        (stream, vid, "fresh") for stream in ("resnet50v2", MOTION) for vid in FRAMES]
    assert leftovers(tmp_path / "cache") == [] and decoder_threads() == []


def test_a_motion_change_makes_only_motion_files_stale_and_decodes_for_motion_only(
        tmp_path, videos, built, opened, motion_calls):
    ex.extract(config(tmp_path, videos, BOTH), progress=False)
    before = mtimes(tmp_path / "cache")
    rgb_before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "resnet50v2").glob("*.h5")}
    opened.clear()
    motion_calls.clear()

    diff = config(tmp_path, videos, BOTH, "extract.motion.method=diff")
    summary = ex.extract(diff, progress=False)
    status = {(r.backbone, r.video_id): (r.status, r.reason) for r in summary.results}
    for vid in FRAMES:
        assert status[("resnet50v2", vid)] == ("up_to_date", "")
        assert status[(MOTION, vid)][0] == "extracted"
        assert status[(MOTION, vid)][1].startswith("motion changed (")
    assert motion_calls == [(vid, False) for vid in FRAMES]  # motion only: no RGB batches made
    assert sorted(opened) == sorted(list(FRAMES) * 2)  # probed and decoded once each
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache" / "resnet50v2").glob("*.h5")} == rgb_before
    assert mtimes(tmp_path / "cache") != before
    assert json.loads(read_attrs(cache_path(tmp_path / "cache", MOTION, "m1"))["motion"]) == {
        "method": "diff", "gain": 4.0}

    # a parameter the method does not use changes nothing: no build, no decoding
    n_built = len(built)
    opened.clear()
    summary = ex.extract(config(tmp_path, videos, BOTH, "extract.motion.method=diff",
                                "extract.motion.dis_preset=medium"), progress=False)
    assert summary.counts == {"extracted": 0, "up_to_date": 6, "failed": 0}
    assert len(built) == n_built and opened == []
    rows = ex.cache_table(tmp_path / "cache", config(tmp_path, videos, BOTH))  # judged against dis again
    assert {(r["backbone"], r["status"]) for r in rows} == {("resnet50v2", "fresh"), (MOTION, "stale")}
    assert all(r["reason"].startswith("motion changed") for r in rows if r["backbone"] == MOTION)


def failing_motion(bad):
    real = streaming.iter_motion_batches

    def batches(path, batch_size, crop, out_size, motion, rgb=True, threads=1):
        for i, pair in enumerate(real(path, batch_size, crop, out_size, motion, rgb=rgb, threads=threads)):
            if path.stem == bad and i == 1:
                raise InputError(f"{path}: decoding failed at frame {i * batch_size}; re-encode or re-copy it")
            yield pair

    return batches


def test_a_failure_mid_video_leaves_neither_file_and_a_rerun_equals_an_uninterrupted_run(
        tmp_path, videos, built, monkeypatch):
    whole = tmp_path / "whole"
    ex.extract(config(tmp_path, videos, BOTH, f"extract.cache={whole}"), progress=False)
    monkeypatch.setattr(streaming, "iter_motion_batches", failing_motion("m2"))
    cfg = config(tmp_path, videos, BOTH)
    with pytest.raises(InputError, match=r"m2\.avi: decoding failed at frame 8"):
        ex.extract(cfg, progress=False)
    cache = tmp_path / "cache"
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.h5")) == [
        "resnet50v2+motion/m1.h5", "resnet50v2/m1.h5"]  # m1 whole; m2 neither stream
    assert leftovers(cache) == [] and decoder_threads() == []

    summary = ex.extract(cfg, progress=False, keep_going=True)
    assert {(r.backbone, r.video_id): r.status for r in summary.results if r.video_id == "m2"} == {
        ("resnet50v2", "m2"): "failed", (MOTION, "m2"): "failed"}
    monkeypatch.undo()
    summary = ex.extract(cfg, progress=False)
    assert {r.video_id: r.status for r in summary.results if r.backbone == MOTION} == {
        "m1": "up_to_date", "m2": "extracted", "m3": "up_to_date"}  # m3: by the keep-going run
    for stream in ("resnet50v2", MOTION):
        for vid, emb in files(cache, stream).items():
            np.testing.assert_array_equal(emb, read_embeddings(cache_path(whole, stream, vid)))


def test_motion_streams_under_ray_are_one_line_before_anything_is_done(tmp_path, videos, built):
    from mouse_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=r"resnet50v2\+motion: motion streams are extracted locally only"):
        ex.extract(config(tmp_path, videos, BOTH, "cluster.ray.enabled=true"), progress=False)
    assert built == [] and not (tmp_path / "cache").exists()
