// Runs an exported ONNX model (quantlab export --format=onnx) with ONNX Runtime (the npm package
// onnxruntime-node) on a problem's IDX test files, and compares its labels with a file of labels
// (quantlab infer --labels=FILE): node run_onnx.js MODEL DATA_DIR LABELS_FILE
// Prints one JSON line: images, agree, accuracy of ONNX Runtime, the first disagreements.
const fs = require('fs');
const zlib = require('zlib');
const path = require('path');
const ort = require('onnxruntime-node');

function readIdx(dir, name) {
  for (const f of [path.join(dir, name), path.join(dir, name + '.gz')]) {
    if (!fs.existsSync(f)) continue;
    let b = fs.readFileSync(f);
    if (f.endsWith('.gz')) b = zlib.gunzipSync(b);
    const ndim = b[3];
    const dims = [];
    for (let d = 0; d < ndim; ++d) dims.push(b.readUInt32BE(4 + 4 * d));
    return { dims, data: b.subarray(4 + 4 * ndim) };
  }
  throw new Error(`${dir}/${name}[.gz]: no such file`);
}

async function main() {
  const [model, dir, labelsFile] = process.argv.slice(2);
  const images = readIdx(dir, 't10k-images-idx3-ubyte');
  const truth = readIdx(dir, 't10k-labels-idx1-ubyte').data;
  const theirs = fs.readFileSync(labelsFile, 'utf8').trim().split('\n').map(Number);
  const [n, h, w] = images.dims;
  const session = await ort.InferenceSession.create(model);
  const batch = 500;
  let agree = 0, correct = 0;
  const differ = [];
  for (let first = 0; first < n; first += batch) {
    const count = Math.min(batch, n - first);
    const input = new ort.Tensor('uint8', images.data.subarray(first * h * w, (first + count) * h * w), [count, 1, h, w]);
    const out = await session.run({ image: input });
    const labels = out.label.data;
    for (let i = 0; i < count; ++i) {
      const l = Number(labels[i]);
      if (l === theirs[first + i]) agree++; else if (differ.length < 10) differ.push({ image: first + i, onnx: l, runtime: theirs[first + i] });
      if (l === truth[first + i]) correct++;
    }
  }
  console.log(JSON.stringify({ model, images: n, agree, accuracy: 100 * correct / n, differ }));
}

main().catch((e) => { console.error(e.message); process.exit(1); });
