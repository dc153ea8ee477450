#!/usr/bin/env python3
"""Baseline for `dreamsr-bench ncnn-zoo`: times the PyPI `ncnn` wheel (CPU, fp32) on one model of the zoo.

Prints one JSON line: {"ncnn_version", "threads", "size", "fp32_s", "fp32_cpu_s"} (best wall / CPU seconds of
--runs after one warm-up). The input is the graph input the Swift bench feeds (the same deterministic pattern,
--size plus the model's padding on each side). Needs numpy + ncnn.
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


def make_input(h, w):
    i = np.arange(3 * h * w, dtype=np.int64).reshape(3, h, w)
    return np.ascontiguousarray(((i * 7919) % 1000).astype(np.float32) / 1000.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--param", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--height", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    x = make_input(a.height, a.width)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = a.threads
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_fp16_packed = False
    net.opt.use_bf16_storage = False
    net.load_param(a.param)
    net.load_model(a.bin)
    inn, outn = net.input_names()[0], net.output_names()[0]
    best = best_cpu = None
    for i in range(a.runs + 1):  # the first run is a warm-up
        t, c = time.perf_counter(), time.process_time()
        ex = net.create_extractor()
        mat = ncnn.Mat(x)  # x stays referenced: ncnn.Mat does not copy
        ex.input(inn, mat)
        ret, o = ex.extract(outn)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if ret != 0:
            sys.exit(f"ncnn extract failed ({ret})")
        if i > 0:
            best = dt if best is None else min(best, dt)
            best_cpu = dc if best_cpu is None else min(best_cpu, dc)
    print(json.dumps({"ncnn_version": getattr(ncnn, "__version__", "?"), "threads": a.threads,
                      "size": [a.height, a.width], "fp32_s": best, "fp32_cpu_s": best_cpu}))


if __name__ == "__main__":
    main()
