// The checks every graph of fuzz/graphgen.rs must pass, each against the generator's own record of what
// every value holds (see the top of graphgen.rs). `include!`d after graphgen.rs by
// fuzz/fuzz_targets/graphs.rs and tests/fuzz_corpus.rs. Needs the crates `ocrnet_edge`, `bytes` and `prost`.
// (Plain comments: this file is included.)

/// The graph as a few lines of text, for a failed check's message.
fn gen_text(m: &ocrnet_edge::onnx::Model) -> String {
    let mut out = format!("opset {:?}, input {:?}\n", m.opset(), m.graph.inputs);
    for t in &m.graph.initializers {
        out += &format!("  init {} {:?} type {}\n", t.name(), t.dims, t.data_type());
    }
    for n in &m.graph.nodes {
        let attrs: Vec<String> = n
            .attribute
            .iter()
            .map(|a| format!("{}={:?}{:?}{:?}", a.name(), a.i, a.ints, a.s))
            .collect();
        out += &format!(
            "  {}({}) -> {} {}\n",
            n.op_type(),
            n.input.join(", "),
            n.output.join(", "),
            attrs.join(" ")
        );
    }
    out
}

/// A tensor as comparable text: shape and values, NaN equal to NaN.
fn gen_bits(t: &ocrnet_edge::tensor::Tensor) -> String {
    format!("{:?} {:?}", t.shape, t.data)
}

/// Generates a graph from `data` and checks it (see the top of graphgen.rs). Returns how many nodes the
/// graph had, 0 when none could be generated; any failed check panics with the graph's text.
pub fn check_generated(data: &[u8]) -> usize {
    use ocrnet_edge::exec::{ExecOptions, Executor};
    use ocrnet_edge::onnx;
    use ocrnet_edge::onnx::proto::tensor_shape_proto::dimension::Value;
    use ocrnet_edge::onnx::proto::type_proto;
    use ocrnet_edge::passes::{self, SimplifyOptions};

    let Some(gen) = generate_graph(data) else {
        return 0;
    };
    let label = std::path::Path::new("generated.onnx");
    let bytes = prost::Message::encode_to_vec(&gen.model);
    let (model, _) = onnx::load_bytes(bytes::Bytes::from(bytes), label, None)
        .unwrap_or_else(|e| panic!("a generated model does not load: {e}\n{:#?}", gen.model));
    let text = || gen_text(&model);
    let names: Vec<String> = model
        .graph
        .outputs
        .iter()
        .map(|v| v.name().to_string())
        .collect();
    let options = ExecOptions {
        threads: 1,
        ..Default::default()
    };
    let run = |m: &onnx::Model| {
        let exec = Executor::new(m, options).unwrap_or_else(|e| panic!("no plan: {e}\n{}", text()));
        let feed = std::collections::HashMap::from([gen.input.clone()]);
        exec.run(feed, &[], None)
            .unwrap_or_else(|e| panic!("the run failed: {e}\n{}", text()))
    };

    // Every output of `m`'s run, bit for bit what the ops gave one by one.
    let same_bits = |m: &onnx::Model, what: &str| {
        let got = run(m);
        for name in &names {
            assert_eq!(
                gen_bits(&got[name]),
                gen_bits(&gen.values[name]),
                "{what} vs ops, output '{name}'\n{}",
                text()
            );
        }
    };

    // The plan against the ops one by one.
    same_bits(&model, "plan");

    // Simplification keeps every bit, and what shape inference states is so.
    let mut simplified = model.clone();
    let opts = SimplifyOptions {
        write_value_info: true,
        ..Default::default()
    };
    passes::simplify(&mut simplified, &opts)
        .unwrap_or_else(|e| panic!("simplify failed: {e}\n{}", text()));
    same_bits(&simplified, "simplified");
    for v in simplified
        .graph
        .value_info
        .iter()
        .chain(&simplified.graph.outputs)
    {
        let Some(real) = gen.values.get(v.name()) else {
            continue;
        };
        let Some(type_proto::Value::TensorType(tt)) =
            v.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            continue;
        };
        if let Some(e) = tt.elem_type {
            assert_eq!(
                e,
                real.dtype() as i32,
                "inferred element type of '{}'\n{}",
                v.name(),
                text()
            );
        }
        let Some(shape) = &tt.shape else { continue };
        assert_eq!(
            shape.dim.len(),
            real.shape.len(),
            "inferred rank of '{}'\n{}",
            v.name(),
            text()
        );
        for (d, &r) in shape.dim.iter().zip(&real.shape) {
            if let Some(Value::DimValue(n)) = d.value {
                assert_eq!(
                    n,
                    r as i64,
                    "inferred shape of '{}': {:?} vs {:?}\n{}",
                    v.name(),
                    shape,
                    real.shape,
                    text()
                );
            }
        }
    }
    model.graph.nodes.len()
}
