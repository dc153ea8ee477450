#!/usr/bin/env python3
"""Baseline for `dreamsr-bench realesrgan`: times the PyPI `ncnn` wheel (CPU) on Real-ESRGAN x4plus.

Prints one JSON line: {"ncnn_version", "threads", "size", "fp32_s", "fp32_cpu_s", "fp16_s", "fp16_cpu_s"}: best wall / CPU seconds.
The input is the same deterministic pattern the Swift bench uses. Needs numpy + ncnn (python3 -m pip install ncnn).
"""
import argparse
import json
import sys
import time

import numpy as np

try:
    import ncnn
except ImportError:
    sys.exit("the `ncnn` Python package is missing: python3 -m pip install ncnn numpy")


def make_input(size):
    i = np.arange(3 * size * size, dtype=np.int64).reshape(3, size, size)
    return np.ascontiguousarray(((i * 7919) % 1000).astype(np.float32) / 1000.0)


def time_net(param, binf, x, threads, runs, fp16):
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if not fp16:
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_arithmetic = False
        net.opt.use_fp16_packed = False
        net.opt.use_bf16_storage = False
    net.load_param(param)
    net.load_model(binf)
    best = None
    best_cpu = None
    out = None
    for i in range(runs + 1):  # first run is warm-up (ncnn transforms weights lazily)
        t = time.perf_counter()
        c = time.process_time()
        ex = net.create_extractor()
        mat = ncnn.Mat(x)  # x stays referenced: ncnn.Mat does not copy
        ex.input("data", mat)
        ret, o = ex.extract("output")
        dt = time.perf_counter() - t
        dc = time.process_time() - c
        if ret != 0:
            sys.exit(f"ncnn extract failed ({ret})")
        out = np.array(o)
        if i > 0:
            best = dt if best is None else min(best, dt)
            best_cpu = dc if best_cpu is None else min(best_cpu, dc)
    return best, best_cpu, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--param", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-fp16", action="store_true")
    ap.add_argument("--save-output", help="write the fp32 output as raw float32 CHW here")
    a = ap.parse_args()
    x = make_input(a.size)
    fp32, fp32_cpu, out = time_net(a.param, a.bin, x, a.threads, a.runs, fp16=False)
    if a.save_output:
        out.astype("<f4").tofile(a.save_output)
    fp16, fp16_cpu = (None, None) if a.no_fp16 else time_net(a.param, a.bin, x, a.threads, a.runs, fp16=True)[:2]
    print(json.dumps({"ncnn_version": getattr(ncnn, "__version__", "?"), "threads": a.threads, "size": a.size,
                      "fp32_s": fp32, "fp32_cpu_s": fp32_cpu, "fp16_s": fp16, "fp16_cpu_s": fp16_cpu}))


if __name__ == "__main__":
    main()
