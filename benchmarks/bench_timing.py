"""Timing that the benchmark scripts share: seconds per call, the GPU's
queued work waited for on both sides of the timed calls."""
import time
from typing import Callable

import torch


def synchronize() -> None:
    """Wait for the GPU's queued work (times would measure launches)."""
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], calls: int = 1) -> float:
    """Seconds per call of ``fn``, over ``calls`` calls in a row."""
    synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    synchronize()
    return (time.perf_counter() - start) / calls
