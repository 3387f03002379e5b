"""The peer of `ocrnet-edge bench fuse`: the same OCR fusion done the way NVIDIA recommends, with
onnx-graphsurgeon (load, fold constants, match the gather and the attention, replace each with a plugin
node, clean up, save). It handles the spelling of the official HRNet-OCR export (scale as a Mul after the
similarity MatMul), which is what the benchmark model is.

usage: python3 fuse_graphsurgeon.py IN.onnx OUT.onnx
Prints one JSON line: the number of nodes fused per op and the node counts.
"""

import json
import sys

import onnx
import onnx_graphsurgeon as gs


def producer(t, op):
    if len(t.inputs) == 1 and t.inputs[0].op == op:
        return t.inputs[0]
    return None


def sole_consumer(t, op):
    if len(t.outputs) == 1 and t.outputs[0].op == op:
        return t.outputs[0]
    return None


def scalar(t):
    if isinstance(t, gs.Constant) and t.values.size == 1:
        return float(t.values.reshape(-1)[0])
    return None


def plugin(graph, op, name, inputs, output, scale):
    node = gs.Node(op=op, name=name, domain="ocrnet",
                   attrs={"plugin_version": "1", "plugin_namespace": "ocrnet", "scale": float(scale)},
                   inputs=inputs, outputs=[output])
    graph.nodes.append(node)


def detach(nodes):
    for n in nodes:
        n.outputs.clear()


def fuse_gather(graph, sm):
    reshape_p = producer(sm.inputs[0], "Reshape")
    mm = sole_consumer(sm.outputs[0], "MatMul")
    if reshape_p is None or mm is None:
        return False
    tr_f = producer(mm.inputs[1], "Transpose")
    if tr_f is None or list(tr_f.attrs.get("perm", [])) != [0, 2, 1]:
        return False
    reshape_f = producer(tr_f.inputs[0], "Reshape")
    tr_o = sole_consumer(mm.outputs[0], "Transpose")
    if reshape_f is None or tr_o is None:
        return False
    unsq = sole_consumer(tr_o.outputs[0], "Unsqueeze")
    if unsq is None:
        return False
    out = unsq.outputs[0]
    nodes = [reshape_p, sm, reshape_f, tr_f, mm, tr_o, unsq]
    detach(nodes)
    plugin(graph, "OcrSpatialGather", sm.name + "/OcrSpatialGather",
           [reshape_p.inputs[0], reshape_f.inputs[0]], out, 1.0)
    return True


def fuse_attention(graph, sm):
    mul = producer(sm.inputs[0], "Mul")
    if mul is None:
        return False
    s = scalar(mul.inputs[0]) or scalar(mul.inputs[1])
    sim = producer(mul.inputs[1], "MatMul") or producer(mul.inputs[0], "MatMul")
    if s is None or sim is None:
        return False
    tr_q = producer(sim.inputs[0], "Transpose")
    reshape_k = producer(sim.inputs[1], "Reshape")
    if tr_q is None or reshape_k is None:
        return False
    reshape_q = producer(tr_q.inputs[0], "Reshape")
    mm = sole_consumer(sm.outputs[0], "MatMul")
    if reshape_q is None or mm is None:
        return False
    tr_v = producer(mm.inputs[1], "Transpose")
    reshape_v = producer(tr_v.inputs[0], "Reshape") if tr_v else None
    tr_o = sole_consumer(mm.outputs[0], "Transpose")
    if reshape_v is None or tr_o is None:
        return False
    reshape_o = sole_consumer(tr_o.outputs[0], "Reshape")
    if reshape_o is None:
        return False
    out = reshape_o.outputs[0]
    nodes = [reshape_q, tr_q, reshape_k, sim, mul, sm, reshape_v, tr_v, mm, tr_o, reshape_o]
    detach(nodes)
    plugin(graph, "OcrObjectAttention", sm.name + "/OcrObjectAttention",
           [reshape_q.inputs[0], reshape_k.inputs[0], reshape_v.inputs[0]], out, s)
    return True


def main():
    src, dst = sys.argv[1], sys.argv[2]
    graph = gs.import_onnx(onnx.load(src))
    before = len(graph.nodes)
    graph.fold_constants().cleanup()
    counts = {"OcrSpatialGather": 0, "OcrObjectAttention": 0}
    for sm in [n for n in graph.nodes if n.op == "Softmax"]:
        if fuse_gather(graph, sm):
            counts["OcrSpatialGather"] += 1
        elif fuse_attention(graph, sm):
            counts["OcrObjectAttention"] += 1
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model.opset_import.append(onnx.helper.make_opsetid("ocrnet", 1))
    onnx.save(model, dst)
    print(json.dumps({"fused": counts, "nodes_before": before, "nodes_after": len(graph.nodes)}))


if __name__ == "__main__":
    main()
