# Runs an exported ONNX model (quantlab export --format=onnx) with ONNX Runtime (PyPI's onnxruntime)
# on a problem's IDX test files, and compares its labels with a file of labels (quantlab infer
# --labels=FILE):  python run_onnx.py MODEL DATA_DIR LABELS_FILE
# Prints one JSON line: images, agree, accuracy of ONNX Runtime, the first disagreements.
import gzip
import json
import os
import sys

import numpy as np
import onnxruntime as ort


def read_idx(folder, name):
    for f in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
        if os.path.exists(f):
            data = (gzip.open if f.endswith(".gz") else open)(f, "rb").read()
            ndim = data[3]
            dims = [int.from_bytes(data[4 + 4 * d:8 + 4 * d], "big") for d in range(ndim)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise SystemExit(f"{folder}/{name}[.gz]: no such file")


def main(model, folder, labels_file):
    images = read_idx(folder, "t10k-images-idx3-ubyte")
    truth = read_idx(folder, "t10k-labels-idx1-ubyte")
    theirs = [int(x) for x in open(labels_file).read().split()]
    n, h, w = images.shape
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    labels = np.concatenate([session.run(["label"], {"image": images[i:i + 500].reshape(-1, 1, h, w)})[0]
                             for i in range(0, n, 500)]).astype(np.int64).reshape(-1)
    agree = int((labels == np.array(theirs)).sum())
    differ = [{"image": int(i), "onnx": int(labels[i]), "runtime": theirs[i]}
              for i in np.nonzero(labels != np.array(theirs))[0][:10]]
    print(json.dumps({"model": model, "images": int(n), "agree": agree,
                      "accuracy": 100.0 * float((labels == truth).mean()), "differ": differ,
                      "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
