#!/usr/bin/env python3
"""AlexNet's matrix products alone (batch 32, 227x227, channels-last), timed with the PyTorch that
runs this script: which library is faster, where QuantLab's two builds differ. The five
convolutions forward and forward + backward (oneDNN under both PyTorch 1.13 and 2.x), and the three
fully connected layers' forward, input-gradient and weight-gradient products (OpenBLAS under
Debian's 1.13, MKL under PyPI's 2.x), written into preallocated outputs as a training step's
recycled memory lets them. Prints the fastest of --repeats runs of each, in ms, and the sums.

    OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/alexnet_products.py
    OMP_WAIT_POLICY=PASSIVE build-pip/venv/bin/python bench/alexnet_products.py
"""
import argparse
import time

import torch
import torch.nn.functional as F

# (in channels, out channels, kernel, stride, padding, input size): QuantLab's AlexNet, capacity 1.
CONVS = [(3, 64, 11, 4, 2, 227), (64, 192, 5, 1, 2, 27), (192, 384, 3, 1, 1, 13), (384, 256, 3, 1, 1, 13),
         (256, 256, 3, 1, 1, 13)]
LINEARS = [(9216, 4096), (4096, 4096), (4096, 1000)]


def fastest(fn, repeats):
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cl = torch.channels_last
    sums = {}

    def report(name, what, t):
        sums[what] = sums.get(what, 0.0) + t
        print(f"{name:28s} {what:16s} {t * 1e3:8.2f} ms")

    for ci, co, k, s, p, hw in CONVS:
        x = torch.randn(a.batch, ci, hw, hw).contiguous(memory_format=cl).requires_grad_(ci != 3)
        w = torch.randn(co, ci, k, k).contiguous(memory_format=cl).requires_grad_()
        g = torch.randn_like(F.conv2d(x, w, None, s, p))

        def forward():
            with torch.no_grad():
                F.conv2d(x, w, None, s, p)

        def both():
            x.grad = w.grad = None
            F.conv2d(x, w, None, s, p).backward(g)

        name = f"conv {ci}->{co} {k}x{k}"
        report(name, "conv forward", fastest(forward, a.repeats))
        report(name, "conv fwd+bwd", fastest(both, a.repeats))
    for n_in, n_out in LINEARS:
        x, w, g = torch.randn(a.batch, n_in), torch.randn(n_out, n_in), torch.randn(a.batch, n_out)
        y, gx, gw = torch.empty(a.batch, n_out), torch.empty(a.batch, n_in), torch.empty(n_out, n_in)
        name = f"linear {n_in}->{n_out}"
        report(name, "fc forward", fastest(lambda: torch.mm(x, w.t(), out=y), a.repeats))
        report(name, "fc input grad", fastest(lambda: torch.mm(g, w, out=gx), a.repeats))
        report(name, "fc weight grad", fastest(lambda: torch.mm(g.t(), x, out=gw), a.repeats))
    print(f"PyTorch {torch.__version__}, {a.threads} threads, batch {a.batch}; sums in ms:",
          ", ".join(f"{k} {v * 1e3:.1f}" for k, v in sums.items()))


if __name__ == "__main__":
    main()
