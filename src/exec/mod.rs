//! The CPU executor. For now its op kernels only, which the constant folder and shape inference
//! already use; the graph runner, convolution and the OCR ops come on top of them.

pub mod ops;
