"""Debian's python3-onnx reads an exported model: the full checker (with shape inference), then
what the export promises: opset, names, operators, metadata, the input's normalisation.

Usage: onnx_check.py MODEL.onnx [--folded] [--ref REF_DIR]
With --ref, the model's metadata mean/std applied to REF_DIR/pixels.u8 give REF_DIR/input.f32
(the normalisation a deployment must do, as the search did it)."""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import checker, shape_inference


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--folded", action="store_true")
    p.add_argument("--ref")
    a = p.parse_args()
    m = onnx.load(a.model)
    checker.check_model(m, full_check=True)
    inferred = shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    out_dims = [d.dim_value or d.dim_param
                for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    ops = sorted({n.op_type for n in m.graph.node})
    meta = {e.key: e.value for e in m.metadata_props}
    problems = []
    if [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] != [13]:
        problems.append(f"opset {m.opset_import}")
    if [i.name for i in m.graph.input] != ["input"] or [o.name for o in m.graph.output] != ["logits"]:
        problems.append("input/output names")
    if m.producer_name != "proxyless-nas-service" or not m.producer_version:
        problems.append(f"producer {m.producer_name!r} {m.producer_version!r}")
    want_ops = {"Conv", "Clip", "GlobalAveragePool", "Flatten", "Gemm"}
    if not want_ops <= set(ops):
        problems.append(f"operators {ops}")
    if a.folded == ("BatchNormalization" in ops):
        problems.append(f"fold_bn: operators {ops}")
    if meta.get("fold_bn") != ("true" if a.folded else "false"):
        problems.append(f"metadata fold_bn {meta.get('fold_bn')}")
    for n in m.graph.node:
        if n.op_type == "Clip" and len(n.input) != 3:
            problems.append("Clip without min/max inputs")
    for key in ("space", "architecture", "network_config"):
        if not meta.get(key):
            problems.append(f"metadata {key} missing")
    if "space" not in m.doc_string and meta.get("space", "?") not in m.doc_string:
        problems.append("doc_string")
    if a.ref:
        if "input_mean" not in meta:
            problems.append("metadata input_mean missing")
        else:
            ref = json.load(open(os.path.join(a.ref, "meta.json")))
            shape = ref["input_shape"]
            pixels = np.fromfile(os.path.join(a.ref, "pixels.u8"), dtype=np.uint8).reshape(shape)
            want = np.fromfile(os.path.join(a.ref, "input.f32"), dtype=np.float32).reshape(shape)
            mean = np.array([float(v) for v in meta["input_mean"].split(",")], np.float32)
            std = np.array([float(v) for v in meta["input_std"].split(",")], np.float32)
            x = (pixels.astype(np.float32) / 255 - mean[None, :, None, None]) / std[None, :, None, None]
            err = float(np.abs(x - want).max())
            if err > 1e-5:
                problems.append(f"metadata normalisation differs from the search's by {err}")
    print(f"{os.path.basename(a.model)}: onnx {onnx.__version__} check_model(full_check) ok, "
          f"ir {m.ir_version}, {len(m.graph.node)} nodes, ops {ops}, logits {out_dims}"
          + (f"; problems: {problems}" if problems else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
