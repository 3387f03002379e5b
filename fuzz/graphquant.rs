// QuantizeLinear and DequantizeLinear for the graph generator, as the INT8 graphs `compile` writes use them:
// per tensor or per axis (opset 13 on), int8 or uint8 (the zero point's type, uint8 when there is none).
// A DequantizeLinear reads one of the last quantized values, most often the QuantizeLinear just before it,
// which is the pair the executor's plan fuses into one pass. `include!`d at the end of fuzz/graphgen.rs.
// (Plain comments: this file is included.)

// An earlier int8 or uint8 value, preferring recent ones.
fn gen_quantized(g: &mut GenBytes, gg: &GenGraph) -> Option<usize> {
    let fits: Vec<usize> = (0..gg.values.len())
        .filter(|&i| {
            matches!(
                gg.values[i].1.data,
                ocrnet_edge::tensor::Data::I8(_) | ocrnet_edge::tensor::Data::U8(_)
            )
        })
        .collect();
    if fits.is_empty() {
        return None;
    }
    let back = if g.coin() {
        0
    } else {
        g.below(fits.len().min(3))
    };
    Some(fits[fits.len() - 1 - back])
}

// Inputs and attributes of a QuantizeLinear or DequantizeLinear: the data, a scale (a scalar, or one per
// element along `axis`), and most of the time a zero point of the quantized type.
fn gen_quant(
    g: &mut GenBytes,
    gg: &mut GenGraph,
    op: &str,
    inputs: &mut Vec<String>,
    attrs: &mut Vec<ocrnet_edge::onnx::proto::AttributeProto>,
) -> Option<()> {
    use ocrnet_edge::tensor::{Data, Tensor};
    let quantize = op == "QuantizeLinear";
    let x = if quantize {
        gg.value(g, false)?
    } else {
        gen_quantized(g, gg)?
    };
    let s = gg.shape(x);
    let signed = if quantize {
        g.coin()
    } else {
        matches!(gg.values[x].1.data, Data::I8(_))
    };
    inputs.push(gg.values[x].0.clone());
    let scale_shape = match gen_axis_of(g, &s) {
        Some((axis, d)) if gg.opset >= 13 && g.coin() => {
            if axis != 1 || g.coin() {
                attrs.push(gen_attr_int("axis", axis));
            }
            vec![d]
        }
        _ => vec![],
    };
    let n = scale_shape.iter().product();
    // Powers of two from 1/32 to 2 most of the time (exact in f32; calibrated scales are not), and now and
    // then 0.3, which is not.
    let scales = (0..n)
        .map(|_| match g.below(8) {
            0 => 0.3,
            k => (1u32 << k) as f32 / 64.0,
        })
        .collect();
    inputs.push(gg.constant(
        g,
        Tensor::new(scale_shape.clone(), Data::F32(scales)).expect("sized"),
    ));
    // No zero point means uint8 0, so a signed value needs one.
    if signed || g.below(3) != 0 {
        let zp = if signed {
            Data::I8((0..n).map(|_| g.below(17) as i8 - 8).collect())
        } else {
            Data::U8((0..n).map(|_| 120 + g.below(17) as u8).collect())
        };
        inputs.push(gg.constant(g, Tensor::new(scale_shape, zp).expect("sized")));
    }
    Some(())
}
