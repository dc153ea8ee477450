"""Timing shared by the PyTorch baseline scripts of `dreamsr-bench` (imported from the script's own folder)."""
import statistics
import time


def timed(fn, repeats):
    """Median wall time of `repeats` calls of `fn` after one warm-up call."""
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)
