// ONNX Runtime (npm onnxruntime-node, its bundled CPU library) runs an exported model on the
// images that onnx_reference wrote and compares the logits with LibTorch's.
// Usage: node onnx_runtime_check.js ORT_NODE_MODULES MODEL.onnx REF_DIR TOLERANCE
// Passes when every logit satisfies |ort - torch| <= TOLERANCE * max(1, |torch|) (absolute for
// logits within +-1, relative beyond). Prints the largest absolute and relative differences.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [modules, model, ref, tolText] = process.argv.slice(2);
  if (!modules || !model || !ref || !tolText) {
    console.error('usage: node onnx_runtime_check.js ORT_NODE_MODULES MODEL.onnx REF_DIR TOLERANCE');
    process.exit(2);
  }
  const ort = require(path.join(modules, 'onnxruntime-node'));
  const tol = Number(tolText);
  const meta = JSON.parse(fs.readFileSync(path.join(ref, 'meta.json'), 'utf8'));
  const readF32 = (f) => {
    const b = fs.readFileSync(path.join(ref, f));
    return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
  };
  const input = readF32('input.f32');
  const want = readF32('logits.f32');
  const session = await ort.InferenceSession.create(model, {executionProviders: ['cpu'],
                                                            graphOptimizationLevel: 'all'});
  if (session.inputNames.join() !== 'input' || session.outputNames.join() !== 'logits') {
    throw new Error(`names: inputs ${session.inputNames}, outputs ${session.outputNames}`);
  }
  const feeds = {input: new ort.Tensor('float32', input, meta.input_shape)};
  const out = await session.run(feeds);
  const got = out.logits;
  if (got.dims.join() !== meta.logits_shape.join()) {
    throw new Error(`logits shape ${got.dims} but LibTorch gave ${meta.logits_shape}`);
  }
  let maxAbs = 0, maxRel = 0, worst = 0, agree = 0;
  const classes = meta.logits_shape[1];
  for (let i = 0; i < want.length; ++i) {
    const d = Math.abs(got.data[i] - want[i]);
    maxAbs = Math.max(maxAbs, d);
    maxRel = Math.max(maxRel, d / Math.max(Math.abs(want[i]), 1e-12));
    worst = Math.max(worst, d / Math.max(1, Math.abs(want[i])));
  }
  for (let n = 0; n < meta.logits_shape[0]; ++n) {
    let a = 0, b = 0;
    for (let c = 1; c < classes; ++c) {
      if (got.data[n * classes + c] > got.data[n * classes + a]) a = c;
      if (want[n * classes + c] > want[n * classes + b]) b = c;
    }
    agree += a === b;
  }
  const ok = worst <= tol && Number.isFinite(worst);
  console.log(`${path.basename(model)}: onnxruntime-node ${ort.env.versions.node}, ` +
              `${meta.logits_shape[0]} images: max |diff| ${maxAbs.toExponential(3)}, ` +
              `max relative ${maxRel.toExponential(3)}, max |diff|/max(1,|ref|) ` +
              `${worst.toExponential(3)} (tolerance ${tol}), same argmax ${agree}/${meta.logits_shape[0]}`);
  process.exit(ok ? 0 : 1);
}

main().catch((e) => {
  console.error(`onnx_runtime_check: ${e.message || e}`);
  process.exit(1);
});
