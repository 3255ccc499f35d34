#!/usr/bin/env python3
"""The Python peer of bench/ana_op: the ANA operator's forward + backward on N weights (uniform
noise, ternary stair, spreads 0.5), written as the original QuantLab writes it (train_step.py's
UniformAna), eager or torch.compile'd (PyTorch 2.x; the compiled graph fuses its elementwise
operations into one loop). As in a training step, the weight is a parameter whose gradient is
accumulated anew each time.

    ana_op.py [--n 10000000] [--threads 2] [--reps 20] [--compile]

Prints one JSON line with the median and the fastest forward + backward in milliseconds.
"""
import argparse
import json
import time

import torch

import train_step


class Weights(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.site = train_step.AnaSite()
        self.w = torch.nn.Parameter(torch.randn(n))

    def forward(self):
        return self.site.ana(self.w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--compile", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = Weights(a.n)
    fn = torch.compile(m) if a.compile else m
    g = torch.randn(a.n)

    def once():
        m.w.grad = None
        fn().backward(g)

    for _ in range(5):  # includes the compilation
        once()
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({"impl": "python", "torch": torch.__version__, "compile": a.compile, "n": a.n,
                      "threads": torch.get_num_threads(), "fwd_bwd_ms": times[len(times) // 2] * 1e3,
                      "fastest_ms": times[0] * 1e3}))


if __name__ == "__main__":
    main()
