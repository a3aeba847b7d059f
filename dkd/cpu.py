"""The CPUs this process runs on: how many it may use, torch's thread count for a run or a measurement, and whether
they compute bf16 natively."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


def native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX, as oneDNN sees them): without them bf16 matmuls
    are emulated, slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # another torch build: the kernel's own flags
        try:
            flags = open("/proc/cpuinfo").read()
        except OSError:
            return False
        return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


# the environment variables that hold torch's, MKL's and oneDNN's kernels below the machine's instruction set
KERNEL_PINS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")


def kernels() -> dict:
    """The instruction set torch's CPU kernels use in this process (``AVX2``, ``AVX512``…) and the variables of
    :data:`KERNEL_PINS` that are set. A model trained with other kernels differs in its last bits (docs/reproduction.md,
    batch 23: AVX2 and AVX-512 fine-tune two different teachers from one recipe and seed)."""
    return {"aten": torch.backends.cpu.get_cpu_capability(),
            **{name: os.environ[name] for name in KERNEL_PINS if name in os.environ}}


def available_cpus() -> int:
    """CPUs this process may run on (a SLURM job's allocation, not the node's cores)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def cpu_threads(threads: int | None):
    """``threads=N``: torch's CPU threads in this process and, through ``OMP_NUM_THREADS``, in the processes a DDP
    launcher starts (Lightning sets its own count, CPUs ÷ processes, only where that variable is unset). Both are
    restored afterwards. ``None``: torch's and Lightning's defaults."""
    if not threads:
        yield
        return
    before, variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    log.info("threads=%d: torch's CPU threads in each process of this run", threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if variable is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = variable
