"""Which devices Keras's backend computes on, found once per process and said plainly.

TensorFlow looks for CUDA the first time a device is needed. On a machine without an
NVIDIA driver that look fails, and TensorFlow's C++ logging prints
``E ... failed call to cuInit: INTERNAL: CUDA error ... (303)`` to stderr, an alarming
line that only means "no GPU here": every command would start with it (and every training
worker). :func:`gpus` makes that first look itself, with the C++ side's stderr caught, and
passes on every caught line except that one, and only when no NVIDIA driver is installed
(``/proc/driver/nvidia`` is absent). Where a driver is installed, a failed CUDA start is a
real problem: the line is kept and :func:`describe` adds a warning that the work runs on
the CPU.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: C++ log lines that mean "no GPU" on a machine without an NVIDIA driver.
NO_DRIVER_NOISE = ("failed call to cuInit",)
_DRIVER = Path("/proc/driver/nvidia")


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA kernel driver is loaded (Linux); True where that cannot be told."""
    if not sys.platform.startswith("linux"):
        return True
    return _DRIVER.exists()


def cpu_has_bf16() -> bool:
    """Whether the CPU advertises native bfloat16 instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, warn: bool = False) -> str:
    """The compute precision ``extract.precision`` means on this machine.

    ``auto`` is ``bfloat16`` on a CPU with native bfloat16 and no NVIDIA driver (about
    1.4x faster there), ``float32`` elsewhere (on a GPU, choose ``float16`` or ``bfloat16``
    explicitly). An explicit ``bfloat16`` on a CPU without native bfloat16 and no GPU
    driver is kept, and with ``warn`` said to be slow: it ran 3.2x *slower* than float32
    on such a CPU.
    Nothing here imports TensorFlow, so a re-extract with every file fresh stays fast.
    """
    gpu_machine = sys.platform.startswith("linux") and _DRIVER.exists()
    if requested == "auto":
        return "bfloat16" if cpu_has_bf16() and not gpu_machine else "float32"
    if warn and requested == "bfloat16" and not cpu_has_bf16() and not gpu_machine:
        log.warning("extract.precision: bfloat16 on a CPU without native bfloat16 (no AVX512-BF16 "
                    "or AMX) and no GPU: it is emulated, about 3x slower than float32 here; use "
                    "extract.precision: auto or float32")
    return requested


@contextlib.contextmanager
def stderr_without(drop: tuple[str, ...]) -> Iterator[None]:
    """Catch everything written to file descriptor 2 (C and C++ code included) meanwhile,
    then write it to stderr again without the lines that contain any of ``drop``."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (a daemon): nothing to filter
        saved = -1
    if saved < 0:
        yield
        return
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                caught.seek(0)
                text = caught.read().decode("utf-8", errors="replace")
                kept = [line for line in text.splitlines(keepends=True)
                        if not any(d in line for d in drop)]
                if kept:
                    sys.stderr.write("".join(kept))
                    sys.stderr.flush()
    finally:
        os.close(saved)


@functools.cache
def gpus() -> tuple[str, ...]:
    """Names of the GPUs Keras's backend sees (empty: it computes on the CPU)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        drop = () if nvidia_driver_present() else NO_DRIVER_NOISE
        with stderr_without(drop):
            found = tf.config.list_physical_devices("GPU")
        names = []
        for d in found:
            try:
                names.append(tf.config.experimental.get_device_details(d).get("device_name", d.name))
            except (RuntimeError, ValueError):
                names.append(d.name)
        return tuple(names)
    if backend == "jax":
        import jax

        return tuple(d.device_kind for d in jax.devices() if d.platform == "gpu")
    if backend == "torch":
        import torch

        return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return ()


def describe() -> str:
    """One phrase for logs: ``on GPU (NVIDIA H100 80GB HBM3)`` or ``on the CPU (no GPU
    visible to tensorflow)``. Warns once when a driver is installed but no GPU is seen."""
    import keras

    found = gpus()
    if found:
        return f"on GPU ({', '.join(found)})"
    backend = keras.backend.backend()
    if nvidia_driver_present() and sys.platform.startswith("linux"):
        _warn_no_gpu(backend)
    return f"on the CPU (no GPU visible to {backend})"


@functools.cache
def _warn_no_gpu(backend: str) -> None:
    log.warning("an NVIDIA driver is installed but %s sees no GPU, so this runs on the CPU; "
                "install the GPU build (pip install -e '.[gpu]') and check CUDA_VISIBLE_DEVICES",
                backend)


def gpu_memory_growth() -> None:
    """Let several processes share a GPU (TensorFlow takes all its memory by default): the
    set-up of every worker process (``train.workers``, Ray's) before its first op."""
    if not gpus():  # also the first look for CUDA, without its no-driver noise
        return
    import tensorflow as tf

    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # the GPU was initialised already: nothing left to set
        pass
