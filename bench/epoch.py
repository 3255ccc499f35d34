#!/usr/bin/env python3
"""Whole epochs of a ternary network on Fashion-MNIST as the original QuantLab runs them, in Python
on PyTorch: the config's thermostat sets each ANA site's spreads at the start of every epoch, then a
training pass (shuffled, Adam, squared hinge), a validation pass (hard stair), the checkpoints
(last, and best when the validation metric improved, with torch.save), and at the end the test with
the best weights loaded. The networks and the ANA operator are bench/train_step.py's (the
original's [thresholds x elements] formulation); the data is read once into tensors, inputs in
[0, 1] and padded as the config says, the validation split the original's (seed 1234).

    epoch.py CONFIG --data DIR [--epochs 1] [--threads N] [--channels_last] [--out DIR]

Prints one JSON line: seconds of start-up (from the interpreter's start of this script: imports,
data, network), training, validation, checkpoints and test, and the accuracies.
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as ts  # noqa: E402


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)


def images(path, pad):
    x = read_idx(path).float().div_(255.0).unsqueeze(1)
    return F.pad(x, (pad, pad, pad, pad)) if pad else x


def timer(spec):
    """The factor a timer gives at epoch index t: src/train/timer.cpp's registry, in Python."""
    p = spec.get("params", {})
    clamp = lambda v, lo, hi: min(max(v, lo), hi)
    linear = lambda t: 1.0 - clamp((t - p["t_start"]) / p["t_decay"], 0.0, 1.0)

    def unbounded(t):
        f = (1.0 / (max(t - p["t_start"], 0.0) + 1.0)) ** p.get("alpha", 1.0)
        return 0.0 if f < p.get("eps", 0.0) else f

    timers = {
        "Constant": lambda t: 1.0,
        "Linear": linear,
        "Quadratic": lambda t: linear(t) ** 2,
        "BoundedWindow": lambda t: ((p["t_end"] - clamp(t, p["t_start"], p["t_end"]))
                                    / (p["t_end"] - p["t_start"])) ** p.get("alpha", 1.0),
        "UnboundedWindow": unbounded,
    }
    timers["bws"], timers["uws"] = timers["BoundedWindow"], timers["UnboundedWindow"]
    if spec["class"] not in timers:
        raise SystemExit(f"epoch.py: unknown timer {spec['class']}; expected one of {', '.join(timers)}")
    return timers[spec["class"]]


def thermostat(cfg, sites):
    """The spreads of every named site at epoch index t, as the config's bindings set them."""
    th = cfg["treat"]["thermostat"]["params"]
    schemes = th["noise_schemes"]
    bindings = []
    for b in th["bindings"]:
        fwd, bwd = timer(b["forward"]), timer(b["backward"])
        names = [n for n in schemes if any(n.startswith(m + "_") for m in b["maps"])]
        bindings.append((names, fwd, bwd))

    def step(t):
        for names, fwd, bwd in bindings:
            for n in names:
                s0 = schemes[n]["stddev_start"]
                sites[n].s = (s0[0] * fwd(t), s0[1] * bwd(t))

    return step


def evaluate(net, x, y, batch, channels_last):
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(y), batch):
            xb = x[b:b + batch]
            if channels_last:
                xb = ts.channels_last(xb)
            out = net(xb)
            loss_sum += ts.hinge_loss(out, y[b:b + batch]).item() * len(xb)
            correct += (out.argmax(1) == y[b:b + batch]).sum().item()
    return loss_sum / len(y), 100.0 * correct / len(y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--channels_last", action="store_true")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    net_cfg, data_cfg = cfg["indiv"]["net"], cfg["treat"]["data"]
    if net_cfg["class"] != "VGG":
        raise SystemExit("epoch.py: only the ternary VGG is implemented here")
    pad = data_cfg.get("pad", 0)
    xtr = images(os.path.join(a.data, "train-images-idx3-ubyte.gz"), pad)
    ytr = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz")).long()
    xte = images(os.path.join(a.data, "t10k-images-idx3-ubyte.gz"), pad)
    yte = read_idx(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")).long()
    torch.manual_seed(1234)  # the original's validation split
    perm = torch.randperm(len(ytr))
    n_train = int(len(ytr) * (1 - data_cfg["valid_fraction"]))
    tr, va = perm[:n_train], perm[n_train:]
    xva, yva = xtr[va], ytr[va]
    xtr, ytr = xtr[tr], ytr[tr]

    torch.manual_seed(0)
    p = net_cfg["params"]
    net = ts.make_vgg(p.get("capacity", 1.0), False, p.get("in_channels", 3))
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    sites = [m for m in net.modules() if isinstance(m, ts.AnaSite)]
    names = list(p["quant_schemes"])
    if len(names) != len(sites):
        raise SystemExit(f"epoch.py: the config names {len(names)} sites, the network has {len(sites)}")
    set_spreads = thermostat(cfg, dict(zip(names, sites)))
    opt_cfg = cfg["treat"]["optimizer"]
    opt = getattr(torch.optim, opt_cfg["class"])(net.parameters(), **opt_cfg.get("params", {}))
    out_dir = a.out or tempfile.mkdtemp(prefix="ql_epoch_py_")
    os.makedirs(out_dir, exist_ok=True)
    start_up = time.perf_counter() - T_START

    bs, bs_valid = data_cfg["bs_train"], data_cfg["bs_valid"]
    t_train = t_valid = t_ckpt = 0.0
    best, best_epoch = float("inf"), 0
    for e in range(1, a.epochs + 1):
        set_spreads(e - 1)
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(ytr))
        for b in range(0, len(ytr), bs):
            idx = order[b:b + bs]
            xb, yb = xtr[idx], ytr[idx]
            if a.channels_last:
                xb = ts.channels_last(xb)
            opt.zero_grad(set_to_none=True)  # as QuantLab's trainer (2.x's default)
            loss = ts.hinge_loss(net(xb), yb)
            loss.backward()
            opt.step()
        t1 = time.perf_counter()
        valid_loss, valid_acc = evaluate(net, xva, yva, bs_valid, a.channels_last)
        t2 = time.perf_counter()
        state = {"epoch": e, "net": net.state_dict(), "optimizer": opt.state_dict(), "valid_acc": valid_acc}
        torch.save(state, os.path.join(out_dir, "last.ckpt"))
        if 100.0 - valid_acc < best:
            best, best_epoch = 100.0 - valid_acc, e
            torch.save(state, os.path.join(out_dir, "best.ckpt"))
        t3 = time.perf_counter()
        t_train += t1 - t0
        t_valid += t2 - t1
        t_ckpt += t3 - t2
    t0 = time.perf_counter()
    net.load_state_dict(torch.load(os.path.join(out_dir, "best.ckpt"))["net"])
    test_loss, test_acc = evaluate(net, xte, yte, bs_valid, a.channels_last)
    t_test = time.perf_counter() - t0
    print(json.dumps({"impl": "python", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "channels_last": a.channels_last, "epochs": a.epochs, "start_up_s": start_up,
                      "train_s": t_train, "validation_s": t_valid, "checkpoints_s": t_ckpt, "test_s": t_test,
                      "valid_acc": 100.0 - best, "best_epoch": best_epoch, "test_acc": test_acc}))


if __name__ == "__main__":
    main()
