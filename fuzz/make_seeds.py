#!/usr/bin/env python3
"""Writes the seed corpus of the `load` fuzz target into fuzz/corpus/load/ (deterministic).

Tiny hand-built ONNX models that together reach every part of the loader: a Conv/Relu/Reshape/Softmax
chain, external data (`weights.bin`, which the fuzz target and tests/fuzz_corpus.rs create in their data
folder: 4096 bytes, byte i = i % 251), a Constant node, an If with two subgraphs, typed-field initializers,
out-of-order nodes, IR 3 style initializers-as-inputs, plus the first 20 KB of a real fixture.

Run from the repository root: python3 fuzz/make_seeds.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "load")
rng = np.random.default_rng(0)


def write(name, model):
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")


def vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def conv_chain():
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    shape = numpy_helper.from_array(np.array([1, 8, -1], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["f"], name="reshape"),
        helper.make_node("Softmax", ["f"], ["y"], name="softmax", axis=-1),
    ]
    g = helper.make_graph(nodes, "conv_chain", [vi("x", ["N", 3, 8, 8])], [vi("y", ["N", 8, 64])],
                          [w, b, shape], value_info=[vi("c", ["N", 8, 8, 8])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="fuzz-seed")
    helper.set_model_props(m, {"purpose": "seed"})
    return m


def ext_tensor(name, elem, dims):
    t = TensorProto()
    t.name, t.data_type = name, elem
    t.dims.extend(dims)
    return t


def external():
    w = ext_tensor("w", TensorProto.FLOAT, [2, 4])
    w.data_location = TensorProto.EXTERNAL
    for k, v in [("location", "weights.bin"), ("offset", "64"), ("length", "32")]:
        e = w.external_data.add()
        e.key, e.value = k, v
    b = ext_tensor("b", TensorProto.UINT8, [16])
    b.data_location = TensorProto.EXTERNAL
    for k, v in [("location", "weights.bin"), ("offset", "4080")]:  # no length: to the end of the file
        e = b.external_data.add()
        e.key, e.value = k, v
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Cast", ["b"], ["bf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Identity", ["m"], ["y"], name="id"),
    ]
    g = helper.make_graph(nodes, "external", [vi("x", [1, 2])], [vi("y", [1, 4]), vi("bf", [16])], [w, b])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def constant():
    nodes = [
        helper.make_node("Constant", [], ["k"], name="const",
                         value=numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))),
        helper.make_node("Constant", [], ["axes"], name="axes", value_ints=[0]),
        helper.make_node("Add", ["x", "k"], ["s"], name="add"),
        helper.make_node("ReduceSum", ["s", "axes"], ["y"], name="sum", keepdims=0),
        helper.make_node("Neg", ["x"], ["dead"], name="dead_neg"),
    ]
    g = helper.make_graph(nodes, "constant", [vi("x", [2, 3])], [vi("y", [3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def if_subgraph():
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="then_relu")], "then", [],
                               [vi("t", [2])])
    else_g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["e"], name="else_mul")], "else", [], [vi("e", [2])],
        [numpy_helper.from_array(np.array([2, 2], dtype=np.float32), "two")])
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["mx"], name="max", keepdims=0),
        helper.make_node("Greater", ["mx", "zero"], ["cond"], name="gt"),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g),
    ]
    g = helper.make_graph(nodes, "if_graph", [vi("x", [2])], [vi("y", [2])],
                          [numpy_helper.from_array(np.array(0, dtype=np.float32), "zero")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 16)])


def typed_fields():
    """Initializers in the typed repeated fields of every kind Tensor::from_proto decodes, nodes stored out
    of topological order, IR 3 with the initializers listed as graph inputs too, and a custom domain."""
    inits = [
        helper.make_tensor("f32", TensorProto.FLOAT, [2], [1.5, -2.0]),
        helper.make_tensor("f64", TensorProto.DOUBLE, [1], [3.0]),
        helper.make_tensor("i64", TensorProto.INT64, [3], [1, -1, 7]),
        helper.make_tensor("i32", TensorProto.INT32, [1], [5]),
        helper.make_tensor("i8", TensorProto.INT8, [2], [-3, 4]),
        helper.make_tensor("u16", TensorProto.UINT16, [1], [65535]),
        helper.make_tensor("u32", TensorProto.UINT32, [1], [7]),
        helper.make_tensor("u64", TensorProto.UINT64, [1], [9]),
        helper.make_tensor("b", TensorProto.BOOL, [2], [True, False]),
        helper.make_tensor("h", TensorProto.FLOAT16, [1], np.array([1.0], dtype=np.float16).view(np.uint16)),
        helper.make_tensor("s", TensorProto.STRING, [1], [b"str"]),
        helper.make_tensor("empty", TensorProto.FLOAT, [0, 4], []),
    ]
    nodes = [
        helper.make_node("Add", ["a", "f32"], ["y"], name="second"),
        helper.make_node("Custom", ["x", "i64"], ["a"], name="first", domain="com.example", alpha=0.5,
                         names=["p", "q"]),
    ]
    inputs = [vi("x", [2])] + [vi(t.name, list(t.dims), t.data_type) for t in inits]
    g = helper.make_graph(nodes, "typed", inputs, [vi("y", [2])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9), helper.make_opsetid("com.example", 1)])
    m.ir_version = 3
    return m


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write("conv_relu_reshape_softmax.onnx", conv_chain())
    write("external_data.onnx", external())
    write("constant_node.onnx", constant())
    write("if_subgraphs.onnx", if_subgraph())
    write("typed_fields_ir3_unsorted.onnx", typed_fields())
    fixture = os.path.join(os.path.dirname(OUT), "..", "..", "models", "fixtures", "legacy_static_opset13",
                           "model.onnx")
    with open(fixture, "rb") as f:
        write("legacy_static_opset13_first_20k.onnx", f.read(20 * 1024))
