//! The graph IR: producer/consumer lookup, patches (including re-routing a graph output), topological
//! order and dead-code removal, on hand-built graphs where every answer is known.

mod common;

use common::*;
use ocrnet_edge::onnx::{Graph, Patch};

/// x → a(Relu) → b(Identity) → c(Sigmoid) → y, plus a dead branch a → d(Neg) → unused.
fn chain() -> Graph {
    let mut g = tiny_model(4).graph.unwrap();
    g.node = vec![
        node("a", "Relu", &["x"], &["a_out"]),
        node("b", "Identity", &["a_out"], &["b_out"]),
        node("c", "Sigmoid", &["b_out"], &["y"]),
        node("d", "Neg", &["a_out"], &["unused"]),
    ];
    g.initializer.clear();
    Graph::from_proto(g).unwrap()
}

fn names(g: &Graph) -> Vec<&str> {
    g.nodes.iter().map(|n| n.name()).collect()
}

#[test]
fn index_finds_producers_and_consumers() {
    let g = chain();
    let idx = g.index();
    assert_eq!(idx.producer("b_out").map(|i| idx.node(i).name()), Some("b"));
    let consumers: Vec<&str> = idx
        .consumers("a_out")
        .iter()
        .map(|&i| idx.node(i).name())
        .collect();
    assert_eq!(consumers, ["b", "d"]);
    assert!(
        idx.producer("x").is_none(),
        "graph inputs have no producer node"
    );
    assert!(idx.is_graph_output("y") && !idx.is_graph_output("b_out"));
}

#[test]
fn shunt_bypasses_a_node() {
    let mut g = chain();
    let mut p = Patch::new("drop-identity");
    p.remove_node(1).shunt("b_out", "a_out");
    g.apply(p).unwrap();
    assert_eq!(names(&g), ["a", "c", "d"]);
    assert_eq!(g.nodes[1].input, ["a_out"]);
}

#[test]
fn shunting_a_graph_output_keeps_its_name() {
    let mut g = chain();
    // Remove the Sigmoid producing the output y: b_out must take the name y.
    let mut p = Patch::new("drop-last");
    p.remove_node(2).shunt("y", "b_out");
    g.apply(p).unwrap();
    assert_eq!(g.outputs[0].name(), "y");
    assert_eq!(
        g.nodes.iter().find(|n| n.name() == "b").unwrap().output,
        ["y"]
    );
    // When the new value is a graph input, an Identity has to carry the output name.
    let mut g = chain();
    let mut p = Patch::new("to-input");
    p.remove_node(2).shunt("y", "x");
    g.apply(p).unwrap();
    let keep = g
        .nodes
        .iter()
        .find(|n| n.op_type() == "Identity" && n.output == ["y"])
        .unwrap();
    assert_eq!(keep.input, ["x"]);
    assert!(keep.name().starts_with("to-input/"));
}

#[test]
fn added_nodes_are_put_in_order_and_failed_patches_change_nothing() {
    let mut g = chain();
    let mut p = Patch::new("insert");
    // Added nodes are appended, then sorted: e reads a_out and feeds c.
    p.add_node(node("e", "Tanh", &["a_out"], &["e_out"]))
        .shunt("b_out", "e_out");
    g.apply(p).unwrap();
    let pos = |n: &str| names(&g).iter().position(|x| *x == n).unwrap();
    assert!(pos("a") < pos("e") && pos("e") < pos("c"));

    let before = g.clone();
    let mut bad = Patch::new("bad");
    bad.add_node(node("f", "Relu", &["nowhere"], &["f_out"]));
    let err = g.apply(bad).unwrap_err().to_string();
    assert!(
        err.contains("'f'") && err.contains("nowhere") && err.contains("patch 'bad'"),
        "{err}"
    );
    assert_eq!(g, before);
}

#[test]
fn out_of_order_nodes_are_sorted_stably() {
    let mut raw = tiny_model(4).graph.unwrap();
    raw.node.reverse(); // relu before add
    let g = Graph::from_proto(raw).unwrap();
    assert_eq!(names(&g), ["add", "relu"]);
}

#[test]
fn remove_dead_drops_unreachable_nodes_initializers_and_value_info() {
    let mut g = chain();
    g.initializers.push(f32_tensor("orphan", &[1], &[1.0]));
    g.value_info.push(value("unused", &[4]));
    g.value_info.push(value("a_out", &[4]));
    assert_eq!(g.remove_dead(), 1);
    assert_eq!(names(&g), ["a", "b", "c"]);
    assert!(g.initializers.is_empty());
    let vi: Vec<&str> = g.value_info.iter().map(|v| v.name()).collect();
    assert_eq!(vi, ["a_out"]);
}

#[test]
fn duplicate_producers_are_refused() {
    let mut raw = tiny_model(4).graph.unwrap();
    raw.node.push(node("again", "Relu", &["x"], &["y"]));
    let err = Graph::from_proto(raw).unwrap_err().to_string();
    assert!(
        err.contains("'y' is produced twice") && err.contains("again"),
        "{err}"
    );
}
