#!/usr/bin/env python3
"""The Python PyTorch equivalent of `train_step`: the same networks (MLP: 784-2048c-2048c-2048c-10;
VGG: 2x128c conv, MP, 2x256c, MP, 2x512c, MP, FC 1024, 1024, 10; AlexNet and MobileNetV2 as
src/topology/; BN after every layer, ternary weights and activations where QuantLab's are), the ANA
operator as the original QuantLab writes it (an autograd Function over a [thresholds x elements]
broadcast, uniform noise; its spreads held as Python numbers, so it never waits for the GPU), Adam,
squared hinge loss (MLP, VGG) or cross-entropy (AlexNet, MobileNetV2).

    train_step.py [--net mlp|vgg|alexnet|mobilenetv2] [--capacity 1] [--batch 256] [--steps 20]
                  [--warmup 3] [--threads N] [--baseline] [--device cpu|cuda] [--amp]
                  [--channels_last] [--input CxHxW] [--compile] [--fused_adam] [--phases]

--amp: convolutions and matrix products on bfloat16 operands with float32 results, batch norm, ANA
and the loss in float32 (what quantlab --amp does). On CUDA: cuDNN benchmark mode on, and the mean
step time of the timed steps queued back to back (parts not separable).
Prints one JSON line: step time (and its parts on the CPU), images/s, and peak memory.
--phases (CPU): then as many steps again under PyTorch's profiler, counted by kind of operation as
bench/op_times.h counts QuantLab's (the outermost matrix product or convolution, forward or
backward; the ANA operator; batch norm): the mean seconds per step of each, the optimizer and the
rest. Compiled, ANA and batch norm are inside the compiled kernels and only the products separate.
"""
import argparse
import contextlib
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


AMP = False  # --amp
NAMED = False  # --phases without --compile: the ANA operator names itself to the profiler


def named(name):
    return torch.autograd.profiler.record_function(name) if NAMED else contextlib.nullcontext()


def conv(x, w, b=None, **kw):
    if AMP:
        return F.conv2d(x.bfloat16(), w.bfloat16(), None if b is None else b.bfloat16(), **kw).float()
    return F.conv2d(x, w, b, **kw)


def linear(x, w, b=None):
    if AMP:
        return F.linear(x.bfloat16(), w.bfloat16(), None if b is None else b.bfloat16()).float()
    return F.linear(x, w, b)


class FConv2d(nn.Conv2d):  # a float convolution that follows --amp
    def forward(self, x):
        return conv(x, self.weight, self.bias, stride=self.stride, padding=self.padding, groups=self.groups)


class FLinear(nn.Linear):  # a float linear layer that follows --amp
    def forward(self, x):
        return linear(x, self.weight, self.bias)


def relu6():
    return nn.Hardtanh(0.0, 6.0)  # QuantLab's float activation


class UniformAna(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t, q, s, training):
        with named("quantlab::ana"):
            ctx.save_for_backward(x, t, q)
            ctx.s = s
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
        with named("quantlab::ana_backward"):
            x, t, q = ctx.saved_tensors
            s = ctx.s
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
        self.s = (0.5, 0.5)

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
        return linear(x, self.ana(self.weight))


def make_mlp(capacity, baseline):
    nh = int(2048 * capacity)
    dims = [(784, nh), (nh, nh), (nh, nh), (nh, 10)]
    layers = []
    for k, (ni, no) in enumerate(dims):
        last = k == 3  # the baseline's last layer: a bias and no batch norm (src/topology/mlp.cpp)
        layers.append(FLinear(ni, no, bias=last) if baseline else AnaLinear(ni, no))
        if not (last and baseline):
            layers.append(nn.BatchNorm1d(no))
        if k < 3:
            layers.append(relu6() if baseline else AnaActivation())
    return nn.Sequential(nn.Flatten(), *layers)


class AnaConv2d(AnaSite):
    def __init__(self, ni, no, k=3, stride=1, padding=1, groups=1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(no, ni // groups, k, k))
        self.stride, self.padding, self.groups = stride, padding, groups
        stdv = 1.0 / (ni * k * k) ** 0.5
        with torch.no_grad():
            idx = torch.randint(0, 2, self.weight.shape)
            self.weight.copy_(self.t[idx] + torch.empty_like(self.weight).uniform_(-stdv, stdv))

    def forward(self, x):
        return conv(x, self.ana(self.weight), stride=self.stride, padding=self.padding, groups=self.groups)


def make_vgg(capacity, baseline, in_channels=3):
    c = [in_channels, int(128 * capacity), int(128 * capacity), int(256 * capacity), int(256 * capacity),
         int(512 * capacity), int(512 * capacity)]
    layers = []
    for k in range(6):
        layers.append(FConv2d(c[k], c[k + 1], 3, padding=1, bias=False) if baseline else AnaConv2d(c[k], c[k + 1]))
        if k % 2 == 1:
            layers.append(nn.MaxPool2d(2, 2))
        layers += [nn.BatchNorm2d(c[k + 1]), relu6() if baseline else AnaActivation()]
    layers.append(nn.Flatten())
    dims = [c[6] * 16, 1024, 1024, 10]
    for k in range(3):
        last = k == 2  # as the MLP's
        layers.append(FLinear(dims[k], dims[k + 1], bias=last) if baseline else AnaLinear(dims[k], dims[k + 1]))
        if not (last and baseline):
            layers.append(nn.BatchNorm1d(dims[k + 1]))
        if k < 2:
            layers.append(relu6() if baseline else AnaActivation())
    return nn.Sequential(*layers)


def make_alexnet(capacity, baseline, classes=1000):
    """src/topology/alexnet.cpp: 5 convs (max-pool after 1, 2, 5), 3 FCs, BN after each."""
    c = [3, int(64 * capacity), int(192 * capacity), int(384 * capacity), int(256 * capacity), 256]
    kernel, stride, pad = [11, 5, 3, 3, 3], [4, 1, 1, 1, 1], [2, 2, 1, 1, 1]
    layers = []
    for k in range(5):
        if baseline:
            layers.append(FConv2d(c[k], c[k + 1], kernel[k], stride[k], pad[k], bias=False))
        else:
            layers.append(AnaConv2d(c[k], c[k + 1], kernel[k], stride[k], pad[k]))
        if k in (0, 1, 4):
            layers.append(nn.MaxPool2d(3, 2))
        layers += [nn.BatchNorm2d(c[k + 1]), relu6() if baseline else AnaActivation()]
    layers.append(nn.Flatten())
    dims = [256 * 36, 4096, 4096, classes]
    for k in range(3):
        last = k == 2
        if baseline:
            layers.append(FLinear(dims[k], dims[k + 1], bias=last))
        else:
            layers.append(AnaLinear(dims[k], dims[k + 1]))
        if not (last and baseline):
            layers.append(nn.BatchNorm1d(dims[k + 1]))
        if not last:
            layers.append(relu6() if baseline else AnaActivation())
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, *layers):
        super().__init__()
        self.branch = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.branch(x)


def make_mobilenetv2(capacity, baseline, classes=1000, expansion=6):
    """src/topology/mobilenetv2.cpp: float stem, expanding blocks and classifier; the residual
    blocks' layers (and each branch's input activation) ternary unless baseline."""

    def unit(ni, no, k, stride, groups, act, quantized):
        if quantized:
            layers = [AnaConv2d(ni, no, k, stride, k // 2, groups), nn.BatchNorm2d(no)]
        else:
            layers = [FConv2d(ni, no, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(no)]
        if act:
            layers.append(AnaActivation() if quantized else relu6())
        return layers

    def inverted(ni, hidden, no, stride, quantized):
        return (unit(ni, hidden, 1, 1, 1, True, quantized) + unit(hidden, hidden, 3, stride, hidden, True, quantized)
                + unit(hidden, no, 1, 1, 1, False, quantized))

    c = lambda n: int(n * capacity)
    t0, c1 = c(32), c(16)
    layers = unit(3, t0, 3, 2, 1, True, False) + unit(t0, t0, 3, 1, t0, True, False) + unit(t0, c1, 1, 1, 1, False, False)
    stages = [(c(16), c(24), 2, 1), (c(24), c(32), 2, 2), (c(32), c(64), 2, 3), (c(64), c(96), 1, 2),
              (c(96), c(160), 2, 2), (c(160), c(320), 1, 0)]
    for ni, no, stride, residuals in stages:
        layers += inverted(ni, ni * expansion, no, stride, False)
        for _ in range(residuals):
            branch = ([] if baseline else [AnaActivation()]) + inverted(no, no * expansion, no, 1, not baseline)
            layers.append(Residual(*branch))
    c8 = max(int(1280 * capacity), 1280)
    layers += unit(stages[-1][1], c8, 1, 1, 1, True, False)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), FLinear(c8, classes, bias=True)]
    return nn.Sequential(*layers)


def op_kind(name):
    """The kind of an operation by its profiler name, as bench/op_times.h's op_kind_of; None for others.
    tests/test_profiling.cpp runs this function alone against the C++ side's table: keep it self-contained."""
    if name.startswith("quantlab::bn_ana") or "batch_norm" in name:
        return "batch_norm"
    if name.startswith("quantlab::ana"):
        return "ana"
    if name.startswith("aten::") and (name.endswith("mm") or "conv" in name or name in ("aten::linear", "aten::matmul")):
        return "products"
    return None


def seconds_by_kind(events):
    """Seconds in the outermost counted operation (an aten::addmm inside aten::linear counts once; an
    operation of one kind inside one of another counts as the outer one's), as bench/op_times.h."""
    totals = {"products": 0.0, "ana": 0.0, "batch_norm": 0.0}
    for e in events:
        kind = op_kind(e.name)
        if kind is None:
            continue
        parent = e.cpu_parent
        while parent is not None and op_kind(parent.name) is None:
            parent = parent.cpu_parent
        if parent is None:
            totals[kind] += e.cpu_time_total / 1e6
    return totals


def channels_last(x):
    """x with channels-last strides, as QuantLab's topology::conv_layout gives a batch of one channel:
    there x.contiguous(memory_format=torch.channels_last) keeps the channels-first strides (the shape
    alone allows both), and every convolution, batch norm and pooling after it would compute
    channels-first."""
    y = x.contiguous(memory_format=torch.channels_last)
    return y if y.stride(1) == 1 else torch.empty_like(y, memory_format=torch.channels_last).copy_(y)


def hinge_loss(scores, labels, margin=1.0, p=2.0):
    target = torch.full_like(scores, -1.0).scatter_(1, labels.unsqueeze(1), 1.0)
    return torch.clamp(margin - scores * target, min=0.0).pow(p).mean()


def main():
    global AMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", choices=["mlp", "vgg", "alexnet", "mobilenetv2"], default="mlp")
    ap.add_argument("--capacity", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--channels_last", action="store_true")
    ap.add_argument("--input", default="")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network (PyTorch 2.x)")
    ap.add_argument("--fused_adam", action="store_true", help="Adam(fused=True) (PyTorch 2.4 and later)")
    ap.add_argument("--phases", action="store_true", help="then count the step's time by kind of operation (CPU)")
    a = ap.parse_args()
    global NAMED
    AMP = a.amp
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    shapes = {"mlp": "1x28x28", "vgg": "3x32x32", "alexnet": "3x224x224", "mobilenetv2": "3x224x224"}
    shape = [a.batch] + [int(d) for d in (a.input or shapes[a.net]).split("x")]
    classes = 10 if a.net in ("mlp", "vgg") else 1000
    net = {"mlp": make_mlp, "vgg": make_vgg, "alexnet": make_alexnet, "mobilenetv2": make_mobilenetv2}[a.net](
        a.capacity, a.baseline)
    net = net.to(dev)
    x = torch.rand(*shape, device=dev)
    if a.channels_last and x.dim() == 4:
        net = net.to(memory_format=torch.channels_last)
        x = channels_last(x)
    net.train()
    params = sum(p.numel() for p in net.parameters())
    # --fused_adam: PyTorch's one-kernel Adam (fused=True, on the CPU since 2.4), as QuantLab's.
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, **({"fused": True} if a.fused_adam else {}))
    # Gradients cleared, not zeroed, as QuantLab's trainer does (2.x's default; 1.13 zeroes them).
    clear = lambda: opt.zero_grad(set_to_none=True)
    if a.compile:
        net = torch.compile(net)  # the warm-up steps include the compilation
    y = torch.randint(classes, (a.batch,), device=dev)
    loss_fn = hinge_loss if classes == 10 else F.cross_entropy
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        for _ in range(a.warmup):
            clear()
            loss_fn(net(x), y).backward()
            opt.step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            clear()
            loss_fn(net(x), y).backward()
            opt.step()
        torch.cuda.synchronize()
        step = (time.perf_counter() - t0) / a.steps
        print(json.dumps({"impl": "python", "device": "cuda", "torch": torch.__version__, "amp": a.amp,
                          "channels_last": a.channels_last, "parameters": params, "batch": a.batch, "step_s": step,
                          "images_per_s": a.batch / step,
                          "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2 ** 20}))
        return
    fwd, bwd, stp, tot = [], [], [], []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        clear()
        loss = loss_fn(net(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= a.warmup:
            fwd.append(t1 - t0); bwd.append(t2 - t1); stp.append(t3 - t2); tot.append(t3 - t0)
    med = lambda v: sorted(v)[len(v) // 2]
    result = {"impl": "python", "device": "cpu", "torch": torch.__version__, "compile": a.compile,
              "fused_adam": a.fused_adam, "amp": a.amp, "threads": torch.get_num_threads(),
              "parameters": params, "batch": a.batch, "step_s": med(tot), "images_per_s": a.batch / med(tot),
              "forward_s": med(fwd), "backward_s": med(bwd), "optimizer_s": med(stp),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if a.phases:
        # The same steps again under the profiler (the times above are without it).
        NAMED = not a.compile
        step_total = opt_total = 0.0
        with torch.autograd.profiler.profile() as prof:
            for _ in range(a.steps):
                t0 = time.perf_counter()
                clear()
                loss_fn(net(x), y).backward()
                t1 = time.perf_counter()
                opt.step()
                t2 = time.perf_counter()
                step_total += t2 - t0
                opt_total += t2 - t1
        kinds = seconds_by_kind(prof.function_events)
        if a.compile:  # ANA and batch norm are inside the compiled kernels: in the rest
            kinds = {"products": kinds["products"], "ana": None, "batch_norm": None}
        for k, v in kinds.items():
            result[k + "_s"] = None if v is None else v / a.steps
        counted = sum(v for v in kinds.values() if v is not None)
        result.update({"phases_step_s": step_total / a.steps, "phases_optimizer_s": opt_total / a.steps,
                       "other_s": (step_total - opt_total - counted) / a.steps})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
