"""Measuring a training step fairly: one process per measurement, peak memory from a reset
high-water mark, CUDA work synchronized before reading a clock. Shared by every benchmark."""

from __future__ import annotations

import multiprocessing
import platform
import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


@dataclass
class Timing:
    step_s: float
    samples_per_s: float
    peak_mib: float
    warmup_s: float = 0.0
    """The untimed first pass (where compilation and the feature cache's filling happen)."""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timing_of(times: list[float], samples: int, device: torch.device) -> Timing:
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mib()
    return Timing(statistics.median(times), samples / sum(times), peak)


def reset_peak_memory(device: torch.device) -> None:
    """Start the high-water mark here (Linux: writing 5 to clear_refs resets VmHWM)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then VmHWM counts from process start, which includes the batches built before


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(work: Callable[[], T], threads: int = 0, device: torch.device | None = None) -> T | str:
    """Run `work` in a child process; its result, or the last line of its error.

    On a CPU the child is forked: nothing to pickle, and it starts at once. For CUDA it is started
    fresh ("spawn"), since torch refuses CUDA in a child forked from a process that has initialized
    it ("Cannot re-initialize CUDA in forked subprocess"), and asking for the device's name for the
    table's header initializes it; `work` must then pickle (a `functools.partial` of module-level
    functions, not a lambda), and so must its result.

    `threads` (0: torch's default) is set in the child, never in the parent: once a process has set
    it, torch's thread pool is invalid in its forked children, and any new thread there that sets
    it again (a compiled training step does) aborts the child.
    """
    context = multiprocessing.get_context("spawn" if device is not None and device.type == "cuda" else "fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_run_and_send, args=(work, threads, send))
    process.start()
    send.close()  # the child's copy stays open: if the child dies, recv() sees the end instead of waiting
    try:
        result: Any = receive.recv()
    except EOFError:
        process.join()
        return f"the measuring process died (exit code {process.exitcode})"
    process.join()
    return result


def _run_and_send(work: Callable[[], Any], threads: int, send: Connection) -> None:
    """The child's side of `in_child` (module level, so that a spawned child can find it)."""
    try:
        if threads:
            torch.set_num_threads(threads)
        send.send(work())
    except Exception:  # reported in the table instead of stopping the other rows
        send.send(traceback.format_exc().strip().splitlines()[-1])


def describe_machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    return f"CPU {model}, {multiprocessing.cpu_count()} cores"
