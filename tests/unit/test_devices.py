"""Device discovery: said in one phrase, without TensorFlow's no-driver noise."""

import logging
import os
import sys
from pathlib import Path

import pytest

from mouse_pipeline import devices


def test_stderr_without_drops_only_the_named_lines_written_by_any_code(capfd):
    with devices.stderr_without(("failed call to cuInit",)):
        # os.write reaches file descriptor 2 the way TensorFlow's C++ logging does
        os.write(2, b"E0000 cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error (303)\n")
        os.write(2, b"W0000 something else worth seeing\n")
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    assert "cuInit" not in err
    assert err.splitlines() == ["W0000 something else worth seeing", "after"]


def test_stderr_is_restored_when_the_body_raises(capfd):
    with pytest.raises(RuntimeError), devices.stderr_without(("x",)):
        os.write(2, b"kept line\n")
        raise RuntimeError("boom")
    os.write(2, b"still stderr\n")
    assert capfd.readouterr().err.splitlines() == ["kept line", "still stderr"]


def test_driver_detection_follows_proc_driver_nvidia(monkeypatch, tmp_path):
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.setattr(devices, "_DRIVER", tmp_path / "absent")
    assert not devices.nvidia_driver_present()
    monkeypatch.setattr(devices, "_DRIVER", tmp_path)
    assert devices.nvidia_driver_present()
    # elsewhere it cannot be told, so nothing is filtered
    monkeypatch.setattr(devices.sys, "platform", "darwin")
    monkeypatch.setattr(devices, "_DRIVER", tmp_path / "absent")
    assert devices.nvidia_driver_present()


def test_describe_says_cpu_and_warns_when_a_driver_is_there_but_no_gpu(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(devices, "gpus", lambda: ())
    monkeypatch.setattr(devices, "_DRIVER", tmp_path / "absent")
    with caplog.at_level(logging.WARNING, logger="mouse_pipeline.devices"):
        assert devices.describe().startswith("on the CPU (no GPU visible to ")
    assert not caplog.records  # no driver: the CPU is expected
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.setattr(devices, "_DRIVER", tmp_path)
    devices._warn_no_gpu.cache_clear()
    with caplog.at_level(logging.WARNING, logger="mouse_pipeline.devices"):
        devices.describe()
    assert "NVIDIA driver is installed" in caplog.text
    devices._warn_no_gpu.cache_clear()
    monkeypatch.setattr(devices, "gpus", lambda: ("NVIDIA H100 80GB HBM3",))
    assert devices.describe() == "on GPU (NVIDIA H100 80GB HBM3)"


def driver_gpus():
    """GPUs the NVIDIA kernel driver lists on this machine (Linux), without asking any backend."""
    folder = Path("/proc/driver/nvidia/gpus")
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_gpus_agree_with_this_machines_driver_and_backend():
    import keras

    found = devices.gpus()
    assert isinstance(found, tuple) and all(isinstance(n, str) and n for n in found)
    if sys.platform.startswith("linux"):
        # no GPU without a driver; never more GPUs than the driver has (fewer: a CPU-only
        # build, or CUDA_VISIBLE_DEVICES)
        assert len(found) <= len(driver_gpus())
        if not devices.nvidia_driver_present():
            assert found == ()
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        assert len(found) == len(tf.config.list_physical_devices("GPU"))


def test_a_process_without_stderr_is_left_alone():
    import subprocess

    code = ("import os; os.close(2)\n"
            "from mouse_pipeline import devices\n"
            "with devices.stderr_without(('x',)):\n"
            "    pass\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(("bf16_cpu", "driver", "auto"), [(True, False, "bfloat16"), (False, False, "float32"),
                                                          (True, True, "float32"), (False, True, "float32")])
def test_precision_auto_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch, tmp_path, caplog,
                                                                   bf16_cpu, driver, auto):
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: bf16_cpu)
    monkeypatch.setattr(devices, "_DRIVER", tmp_path if driver else tmp_path / "absent")
    monkeypatch.setattr(devices.sys, "platform", "linux")
    assert devices.resolve_precision("auto") == auto
    for explicit in ("float32", "float16", "bfloat16"):
        assert devices.resolve_precision(explicit, warn=True) == explicit  # the user's choice stays
    slow = not bf16_cpu and not driver
    assert ("emulated, about 3x slower than float32" in caplog.text) == slow
    caplog.clear()
    devices.resolve_precision("bfloat16")  # planning asks without warning, once per video
    assert caplog.text == ""


def test_cpu_bf16_flags_come_from_cpuinfo():
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    assert devices.cpu_has_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
