#!/usr/bin/env python3
"""The Python PyTorch equivalent of `train_step`: the same networks (MLP: 784-2048c-2048c-2048c-10;
VGG: 2x128c conv, MP, 2x256c, MP, 2x512c, MP, FC 1024, 1024, 10; BN after every layer, ternary
weights and activations), the ANA operator as the original QuantLab writes it (an autograd
Function over a [thresholds x elements] broadcast, uniform noise), Adam, squared hinge loss.

    train_step.py [--net mlp|vgg] [--capacity 1] [--batch 256] [--steps 20] [--warmup 3]
                  [--threads N] [--baseline]

Prints one JSON line: median step time and its parts, and peak resident memory.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class UniformAna(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t, q, s, training):
        ctx.save_for_backward(x, t, q, s)
        shape = [*t.size()] + [1] * x.dim()
        x_minus_t = x - t.reshape(shape)
        if training and s[0] != 0.0:
            cdf = torch.clamp((0.5 * x_minus_t) * (1 / s[0]) + 0.5, 0.0, 1.0)
        else:
            cdf = (x_minus_t >= 0.0).float()
        d = q[1:] - q[:-1]
        return q[0] + torch.sum(d.reshape(shape) * cdf, 0)

    @staticmethod
    def backward(ctx, grad):
        x, t, q, s = ctx.saved_tensors
        shape = [*t.size()] + [1] * x.dim()
        x_minus_t = x - t.reshape(shape)
        if s[1] != 0.0:
            pdf = (torch.abs_(x_minus_t) <= s[1]).float() * (0.5 / s[1])
        else:
            pdf = torch.zeros_like(grad)
        d = q[1:] - q[:-1]
        return grad * torch.sum(d.reshape(shape) * pdf, 0), None, None, None, None


class AnaSite(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("t", torch.tensor([-0.5, 0.5]))
        self.register_buffer("q", torch.tensor([-1.0, 0.0, 1.0]))
        self.register_buffer("s", torch.tensor([0.5, 0.5]))

    def ana(self, x):
        return UniformAna.apply(x, self.t, self.q, self.s, self.training)


class AnaActivation(AnaSite):
    def forward(self, x):
        return self.ana(x)


class AnaLinear(AnaSite):
    def __init__(self, ni, no):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(no, ni))
        stdv = 1.0 / ni ** 0.5
        with torch.no_grad():
            idx = torch.randint(0, 2, self.weight.shape)
            self.weight.copy_(self.t[idx] + torch.empty_like(self.weight).uniform_(-stdv, stdv))

    def forward(self, x):
        return F.linear(x, self.ana(self.weight))


def make_mlp(capacity, baseline):
    nh = int(2048 * capacity)
    dims = [(784, nh), (nh, nh), (nh, nh), (nh, 10)]
    layers = []
    for k, (ni, no) in enumerate(dims):
        layers.append(nn.Linear(ni, no, bias=False) if baseline else AnaLinear(ni, no))
        layers.append(nn.BatchNorm1d(no))
        if k < 3:
            layers.append(nn.ReLU() if baseline else AnaActivation())
    return nn.Sequential(nn.Flatten(), *layers)


class AnaConv2d(AnaSite):
    def __init__(self, ni, no):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(no, ni, 3, 3))
        stdv = 1.0 / (ni * 9) ** 0.5
        with torch.no_grad():
            idx = torch.randint(0, 2, self.weight.shape)
            self.weight.copy_(self.t[idx] + torch.empty_like(self.weight).uniform_(-stdv, stdv))

    def forward(self, x):
        return F.conv2d(x, self.ana(self.weight), padding=1)


def make_vgg(capacity, baseline):
    c = [3, int(128 * capacity), int(128 * capacity), int(256 * capacity), int(256 * capacity),
         int(512 * capacity), int(512 * capacity)]
    layers = []
    for k in range(6):
        layers.append(nn.Conv2d(c[k], c[k + 1], 3, padding=1, bias=False) if baseline else AnaConv2d(c[k], c[k + 1]))
        if k % 2 == 1:
            layers.append(nn.MaxPool2d(2, 2))
        layers += [nn.BatchNorm2d(c[k + 1]), nn.ReLU() if baseline else AnaActivation()]
    layers.append(nn.Flatten())
    dims = [c[6] * 16, 1024, 1024, 10]
    for k in range(3):
        layers.append(nn.Linear(dims[k], dims[k + 1], bias=False) if baseline else AnaLinear(dims[k], dims[k + 1]))
        layers.append(nn.BatchNorm1d(dims[k + 1]))
        if k < 2:
            layers.append(nn.ReLU() if baseline else AnaActivation())
    return nn.Sequential(*layers)


def hinge_loss(scores, labels, margin=1.0, p=2.0):
    target = torch.full_like(scores, -1.0).scatter_(1, labels.unsqueeze(1), 1.0)
    return torch.clamp(margin - scores * target, min=0.0).pow(p).mean()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["mlp", "vgg"], default="mlp")
    ap.add_argument("--capacity", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--baseline", action="store_true")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.net == "mlp":
        net, x = make_mlp(a.capacity, a.baseline), torch.rand(a.batch, 1, 28, 28)
    else:
        net, x = make_vgg(a.capacity, a.baseline), torch.rand(a.batch, 3, 32, 32)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    y = torch.randint(10, (a.batch,))
    fwd, bwd, stp, tot = [], [], [], []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = hinge_loss(net(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= a.warmup:
            fwd.append(t1 - t0); bwd.append(t2 - t1); stp.append(t3 - t2); tot.append(t3 - t0)
    med = lambda v: sorted(v)[len(v) // 2]
    print(json.dumps({"impl": "python", "threads": torch.get_num_threads(), "batch": a.batch,
                      "step_s": med(tot), "forward_s": med(fwd), "backward_s": med(bwd),
                      "optimizer_s": med(stp),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


if __name__ == "__main__":
    main()
