//! Shape inference (filled in by the shape-inference work).
