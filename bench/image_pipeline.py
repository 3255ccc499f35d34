"""The same ImageNet input pipeline in Python: torchvision's ImageFolder and DataLoader with the
original QuantLab's training transforms (RandomResizedCrop(224), RandomHorizontalFlip, ToTensor,
brightness/contrast/saturation jitter in random order, PCA lighting, Normalize).
    python3 bench/image_pipeline.py DIR [--workers W] [--batch B] [--batches K] [--augment original|torchvision|none]
Prints images per second (after one warm-up batch) as JSON on the last line."""
import argparse, json, resource, time

import torch
import torchvision
from torchvision import transforms as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


def gray(img):
    g = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    return g.expand_as(img)


class Jitter:
    """Brightness, contrast, saturation: each lerps towards its target by U(0, 0.4), random order."""

    def __call__(self, img):
        for op in torch.randperm(3).tolist():
            a = 0.4 * torch.rand(1).item()
            if op == 0:
                target = torch.zeros_like(img)
            elif op == 1:
                target = torch.full_like(img, gray(img).mean().item())
            else:
                target = gray(img)
            img = torch.lerp(img, target, a)
        return img


class Lighting:
    def __call__(self, img):
        alpha = torch.empty(3).normal_(0, 0.1)
        return img + (EIGVEC * (alpha * EIGVAL).view(1, 3)).sum(1).view(3, 1, 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--augment", default="original", choices=["original", "torchvision", "none"])
    a = p.parse_args()
    if a.augment == "none":
        t = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD)])
    else:
        steps = [T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor()]
        if a.augment == "original":
            steps += [Jitter(), Lighting()]
        t = T.Compose(steps + [T.Normalize(MEAN, STD)])
    ds = torchvision.datasets.ImageFolder(a.dir + "/train", t)
    g = torch.Generator().manual_seed(0)
    n = min(len(ds), a.batch * (a.batches + 1))
    subset = torch.utils.data.Subset(ds, torch.randperm(len(ds), generator=g)[:n].tolist())
    loader = torch.utils.data.DataLoader(subset, batch_size=a.batch, num_workers=a.workers,
                                         prefetch_factor=2, persistent_workers=False)
    it = iter(loader)
    next(it)  # warm-up
    t0, images = time.perf_counter(), 0
    for x, y in it:
        images += y.numel()
    s = time.perf_counter() - t0
    print(json.dumps({"impl": "python", "workers": a.workers, "augment": a.augment, "images": images,
                      "images_per_s": images / s, "per_worker": images / s / a.workers,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
