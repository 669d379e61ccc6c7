"""`mouse-pipeline bench` end to end on a tiny backbone: every figure measured and printed."""

import json
import math
import tempfile

import pytest

pytestmark = pytest.mark.slow


def test_bench_prints_and_writes_every_figure_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from stages.cli import main

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "--backbone", "mobilenet_v3_small", "--input-size", "32",
                                       "--batch-size", "16", "--frames", "64", "--parallel-videos", "2",
                                       "--no-memory", "--no-stage2", "--quiet", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    res = json.loads(out.read_text())
    rates = ["decode_frames_per_s", "model_frames_per_s", "extract_frames_per_s",
             "extract_end_to_end_frames_per_s", "extract_parallel_frames_per_s",
             "per_frame_predict_frames_per_s"]
    for key in rates:
        assert math.isfinite(res[key]) and res[key] > 0, key
    assert res["extract_vs_model"] == pytest.approx(res["extract_frames_per_s"] / res["model_frames_per_s"])
    assert res["extract_vs_per_frame"] == pytest.approx(
        res["extract_frames_per_s"] / res["per_frame_predict_frames_per_s"])
    assert res["settings"]["video_frames"] == 64 and res["settings"]["video"] == "synthetic, seed 0"
    for row in ("decode only", "model only", "full extract / model only", "full extract / per-frame",
                "2 videos decoding at once"):
        assert row in result.output
    assert not list((tmp_path / "tmp").glob("mp-bench-*"))  # synthetic video and caches deleted


def test_stage2_figures_compare_loader_and_in_memory_fit():
    from mouse_pipeline.bench import stage2_figures

    res = stage2_figures(dim=8, frames_per_video=200, videos=2, epochs=1)
    for kind in ("lstm", "tcn"):
        v = res[kind]
        assert v["loader_vs_in_memory"] == pytest.approx(
            v["train_loader_frames_per_s"] / v["train_in_memory_frames_per_s"])
        assert all(math.isfinite(x) and x > 0 for x in v.values())


def test_peak_rss_is_measured_in_the_child_not_this_process():
    import numpy as np

    from mouse_pipeline.bench import peak_rss_mb

    ballast = np.ones(300 * 2**20 // 8)  # this process holds 300 MB more than the child needs
    child = peak_rss_mb(["--help"])
    assert 5 < child < 250 and ballast.sum() > 0
