"""`mouse-pipeline bench` end to end on a tiny backbone: every figure measured and printed."""

import json
import math
import tempfile

import numpy as np
import pytest

pytestmark = pytest.mark.slow


STARTUP = ["python -c pass", "mouse-pipeline --help", "cache ls --config", "no-op re-extract", "config error"]


def test_bench_prints_and_writes_every_figure_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from stages.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--backbone", "mobilenet_v3_small", "--input-size", "32",
                                       "--batch-size", "16", "--frames", "64", "--parallel-videos", "2",
                                       "--startup-repeats", "3", "--no-memory", "--no-stage2", "--no-cluster",
                                       "--quiet",
                                       "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    rates = ["decode_frames_per_s", "model_frames_per_s", "extract_frames_per_s",
             "extract_end_to_end_frames_per_s", "extract_parallel_frames_per_s",
             "per_frame_predict_frames_per_s", "pose_features_frames_per_s", "pose_compute_frames_per_s"]
    for key in rates:
        assert math.isfinite(res[key]) and res[key] > 0, key
    # the ratios printed are the quotients of the figures measured in this run (how the
    # figures compare is the bench's to print, not a test's to assert: on a shared machine
    # any ordering of two timings can flip)
    assert res["extract_vs_model"] == pytest.approx(res["extract_frames_per_s"] / res["model_frames_per_s"])
    assert res["extract_parallel_vs_model"] == pytest.approx(
        res["extract_parallel_frames_per_s"] / res["model_frames_per_s"])
    assert res["extract_vs_per_frame"] == pytest.approx(
        res["extract_frames_per_s"] / res["per_frame_predict_frames_per_s"])
    assert res["settings"]["video_frames"] == 64 and res["settings"]["video"] == "synthetic, seed 0"
    assert (res["pose_frames"], res["pose_bodyparts"]) == (18_000, 7)
    for row in ("decode only", "model only", "full extract / model only", "full extract / per-frame",
                "2 videos decoding at once", "start-up, median of 3 runs", "target <= 1.5 s over bare Python",
                "pose features, 18000 frames x 7 parts", "pose features, compute only"):
        assert row in result.output
    assert not list((tmp_path / "tmp").glob("mp-bench-*"))  # synthetic video and caches deleted
    check_startup(res["startup"])
    check_motion(res["motion"], result.output)


def check_motion(m, output):
    rates = ("rgb_frames_per_s", "motion_frames_per_s", "both_frames_per_s", "decode_frames_per_s",
             "decode_motion_frames_per_s")
    assert all(math.isfinite(m[k]) and m[k] > 0 for k in rates)
    assert m["method"] == {"method": "dis", "preset": "fast", "flow_scale": 8.0}  # the default
    assert {k: len(v) for k, v in m["runs"].items()} == {"rgb": 2, "motion": 2, "both": 2}
    assert all(m[f"{k}_frames_per_s"] == max(m["runs"][k]) for k in ("rgb", "motion", "both"))
    assert m["both_vs_rgb"] == pytest.approx(m["rgb_frames_per_s"] / m["both_frames_per_s"])
    cpu = m["cpu_ms_per_frame"]
    assert all(math.isfinite(cpu[k]) and cpu[k] > 0 for k in ("rgb", "motion", "both"))
    assert m["both_vs_rgb_cpu"] == pytest.approx(cpu["both"] / cpu["rgb"])
    assert m["target_both_vs_rgb"] == 2.2
    for row in ("extract RGB + motion, one decoding", "time of RGB + motion / RGB only", "target <= 2.2",
                "CPU time of RGB + motion / RGB only",
                "decode + motion images, no model"):
        assert row in output


def test_motion_memory_figures_run_extract_of_both_streams_in_children(tmp_path):
    from mouse_pipeline.bench import peak_rss_mb
    from mouse_pipeline.bench_motion import format_motion, motion_memory_figures

    res = motion_memory_figures(tmp_path, peak_rss_mb, frames=(60, 120), backbone=("mobilenet_v3_small", 32))
    assert res["memory_motion_frames"] == {"short": 60, "long": 120}
    assert all(100 < res[k] < 8000 for k in ("peak_rss_mb_motion_short", "peak_rss_mb_motion_long"))
    assert res["peak_rss_growth_mb_motion"] == res["peak_rss_mb_motion_long"] - res["peak_rss_mb_motion_short"]
    for stream in ("mobilenet_v3_small", "mobilenet_v3_small+motion"):  # the children extracted both
        assert (tmp_path / "motion_mem_cache_long" / stream / "long_000.h5").is_file()
    lines = format_motion(res, lambda name, value, target="": f"{name} {value} {target}")
    assert any("peak RSS extract RGB + motion, 120 frames" in line for line in lines)


def check_startup(startup):
    seconds, over = startup["seconds"], startup["over_bare_s"]
    assert list(seconds) == STARTUP and list(over) == STARTUP
    assert startup["repeats"] == 3 and startup["target_over_bare_s"] == 1.5
    assert all(math.isfinite(t) and 0 < t < 60 for t in seconds.values())
    bare = seconds["python -c pass"]
    assert over["python -c pass"] == 0
    for name in STARTUP[1:]:  # each imports at least click and the config schema: slower than pass
        assert seconds[name] > bare and over[name] > 0


def test_stage2_figures_compare_loader_and_in_memory_fit(tmp_path):
    from mouse_pipeline.bench_stage2 import stage2_figures

    res = stage2_figures(dim=8, frames_per_video=200, videos=2, epochs=1, work=tmp_path)
    for kind in ("lstm", "tcn"):
        v = res[kind]
        assert all(math.isfinite(x) and x > 0 for x in v.values())
        # both fits train the same model on the same windows: a loader that did much more
        # (or less) work per frame than the in-memory fit would fall outside this band
        assert 0.1 < v["loader_vs_in_memory"] < 10
        assert 0.05 < v["streamed_vs_in_memory"] < 10  # reading every window from files


def test_stage2_memory_figures_run_train_and_predict_in_children(tmp_path):
    from mouse_pipeline.bench import peak_rss_mb
    from mouse_pipeline.bench_stage2 import format_stage2, memory_figures

    res = memory_figures(tmp_path, peak_rss_mb, frames=(150, 300), backbone=("mobilenet_v3_small", 32))
    assert res["memory_stage2_frames"] == {"short": 150, "long": 300}
    peaks = [k for k in res if k.startswith("peak_rss_mb_")]
    assert len(peaks) == 6 and all(100 < res[k] < 8000 for k in peaks)  # TensorFlow processes
    assert res["peak_rss_growth_mb_predict"] == res["peak_rss_mb_predict_long"] - res["peak_rss_mb_predict_short"]
    # predict wrote what a user gets, for the long video too
    assert (tmp_path / "pred_long" / "new_long_000_predictions.csv").is_file()
    lines = format_stage2(res, lambda name, value, target="": f"{name} {value} {target}")
    assert any("peak RSS predict, 300 frames" in line for line in lines)


def test_peak_rss_is_measured_in_the_child_not_this_process():
    import numpy as np

    from mouse_pipeline.bench import peak_rss_mb

    ballast = np.ones(300 * 2**20 // 8)  # this process holds 300 MB more than the child needs
    child = peak_rss_mb(["--help"])
    assert 5 < child < 250 and ballast.sum() > 0


class FakeBackbone:
    """Records what model_fps feeds it; each batch takes ``seconds`` (the first pass longer)."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def warm_up(self, batch_size):
        self.calls.append(("warm_up", batch_size))

    def embed(self, batch):
        import time

        self.calls.append(("embed", batch.dtype, batch.shape, batch.flags.c_contiguous, batch.flags.owndata))
        time.sleep(self.seconds * (3 if len(self.calls) < 5 else 1))
        return np.zeros((len(batch), 4), np.float32)


def test_model_fps_feeds_the_extract_path_and_times_steady_state():
    from mouse_pipeline.bench import model_fps

    frames = np.zeros((70, 8, 8, 3), np.uint8)  # 4 full batches of 16, 6 frames left over
    fake = FakeBackbone(0.01)
    fps = model_fps(fake, frames, 16, repeats=3, min_seconds=0)
    assert fake.calls[0] == ("warm_up", 16)
    # full uint8 batches, each its own C-contiguous array, as iter_batches hands them over
    assert set(fake.calls[1:]) == {("embed", np.dtype(np.uint8), (16, 8, 8, 3), True, True)}
    assert len(fake.calls) == 1 + 4 * (1 + 3)  # an untimed pass, then 3 timed ones
    assert 16 / 0.01 / 1.5 < fps <= 16 / 0.01  # steady state: the slow first calls are not timed
    with pytest.raises(ValueError, match="frames must be uint8 as decoded, got float32"):
        model_fps(fake, frames.astype(np.float32), 16)
    with pytest.raises(ValueError, match="need at least 16 frames, got 10"):
        model_fps(fake, frames[:10], 16)


def test_cluster_figures_on_a_local_ray(tmp_path):
    """The cluster section's extraction figures once, on a tiny video (the bench test above
    skips the section; its training part costs six training runs, minutes here, and is not
    timed in the tests: tests/integration/test_ray.py trains on Ray)."""
    pytest.importorskip("ray", reason="Ray is the cluster extra; make setup installs it")
    from mouse_pipeline.bench_cluster import cluster_figures, format_cluster
    from mouse_pipeline.synthetic import generate_dataset

    generate_dataset(tmp_path / "v", n_videos=1, n_frames=64, size=64, fps=10, seed=0, prefix="b")
    res = cluster_figures(tmp_path / "work", tmp_path / "v" / "videos" / "b_000.mp4", "mobilenet_v3_small",
                          32, 16, n=2, parts=("extract",))
    assert res["workers"] == 2 and res["extract"]["videos"] == 4 and "train" not in res
    v = res["extract"]
    rates = [v[f"{k}_frames_per_s"] for k in ("local", "ray_1", "ray_n")]
    assert all(math.isfinite(r) and r > 0 for r in rates), v
    assert v["ray_n_vs_ray_1"] == rates[2] / rates[1] and v["ray_n_vs_local"] == rates[2] / rates[0]
    lines = format_cluster({"cluster": res}, lambda name, value, target="": f"{name} {value} {target}")
    assert any(line.startswith("extract on Ray, 2 workers (frames/s)") for line in lines)
    assert len(list((tmp_path / "work" / "extract" / "cache" / "mobilenet_v3_small").glob("*.h5"))) == 4


def test_cluster_section_says_it_was_skipped_without_ray(tmp_path, monkeypatch):
    import sys

    from mouse_pipeline.bench_cluster import cluster_figures, format_cluster

    monkeypatch.setitem(sys.modules, "ray", None)
    res = cluster_figures(tmp_path, tmp_path / "unused.mp4", "mobilenet_v3_small", 32, 16)
    assert res == {"skipped": res["skipped"]} and "Ray is not installed" in res["skipped"]
    lines = format_cluster({"cluster": res}, lambda *a: "")
    assert lines[-1].startswith("cluster (Ray): skipped: Ray is not installed")
