//! The cxx bridge to `cpp/trt` (feature `tensorrt`). Kept apart so the generated glue is all this file holds.

#[cxx::bridge(namespace = "ocrnet::trt")]
pub(crate) mod bridge {
    /// One engine build.
    struct BuildRequest {
        onnx_path: String,
        input_name: String,
        min: Vec<i64>,
        opt: Vec<i64>,
        max: Vec<i64>,
        workspace_bytes: u64,
        optimization_level: i32,
        /// Weakly typed network with builder flags (TensorRT 10.x).
        legacy: bool,
        legacy_fp16: bool,
        legacy_int8: bool,
        /// Earlier builds' timing cache (empty: none).
        timing_cache: Vec<u8>,
        /// The legacy calibration cache the INT8 calibrator serves.
        calibration_cache: Vec<u8>,
    }

    struct BuildOutput {
        ok: bool,
        plan: Vec<u8>,
        timing_cache: Vec<u8>,
        /// TensorRT's error messages when `ok` is false.
        errors: Vec<String>,
    }

    struct DeviceInfo {
        name: String,
        major: i32,
        minor: i32,
        total_bytes: u64,
    }

    struct IoTensor {
        name: String,
        is_input: bool,
        /// "fp32", "fp16", ...
        dtype: String,
        /// -1 for dynamic dimensions.
        shape: Vec<i64>,
        /// Inputs: the profile's opt shape.
        opt: Vec<i64>,
    }

    struct Timing {
        latency_ms: Vec<f64>,
        gpu_compute_ms: Vec<f64>,
        wall_s: f64,
        cuda_graph: bool,
    }

    extern "Rust" {
        /// TensorRT's log messages, with ILogger::Severity as an integer.
        fn trt_log(severity: i32, message: &str);
    }

    unsafe extern "C++" {
        include!("ocrnet-edge/cpp/trt/trtBridge.h");

        type EngineRunner;

        fn header_version() -> i32;
        fn library_version() -> i32;
        fn legacy_available() -> bool;
        fn device_info() -> Result<DeviceInfo>;
        fn build_engine(req: &BuildRequest) -> Result<BuildOutput>;
        fn load_engine(plan: &[u8], cuda_graph: bool) -> Result<UniquePtr<EngineRunner>>;

        fn io_tensors(self: &EngineRunner) -> Vec<IoTensor>;
        fn infer(
            self: Pin<&mut EngineRunner>,
            shape: &[i64],
            input: &[u8],
            output_name: &str,
            output: &mut Vec<u8>,
            output_shape: &mut Vec<i64>,
        ) -> Result<()>;
        fn benchmark(
            self: Pin<&mut EngineRunner>,
            shape: &[i64],
            input: &[u8],
            output_name: &str,
            runs: u32,
            warmup: u32,
        ) -> Result<Timing>;
    }
}

// SAFETY: an EngineRunner owns its TensorRT objects, device buffers and stream and has no thread affinity;
// the Rust side only reaches it through a Mutex, so it is used by one thread at a time.
unsafe impl Send for bridge::EngineRunner {}

fn trt_log(severity: i32, message: &str) {
    let level = match severity {
        0 | 1 => log::Level::Error,
        2 => log::Level::Warn,
        // TensorRT's INFO is chatty (one line per layer in a build): debug here.
        3 => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(target: "tensorrt", level, "{message}");
}
