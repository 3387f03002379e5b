//! The CPU reference executor: the numerics oracle that proves graph rewrites keep the numbers, the engine
//! that collects calibration statistics, and the CPU backend of the runtime and the daemon.

pub mod engine;
pub mod flops;
pub mod ops;
mod plan;
pub mod profile;
pub mod recycle;
pub mod verify;

pub use engine::{ExecError, ExecOptions, Executor, Hook, NodeTime, Numerics, OpProfile, RunStats};
