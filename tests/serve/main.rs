//! The daemon as a client meets it: routes, formats, limits, errors, the queue, metrics and shutdown.
//! Fake backends (fixed stripes, a gate, a panic) make the queue and timing cases deterministic; the
//! fixture model on the CPU backend proves the daemon answers what `ocrnet-edge run` writes.
//!
//! `support` holds the fakes and the HTTP helpers; the tests are grouped by how they reach the daemon.

mod binary;
#[path = "../common/mod.rs"]
mod common;
mod router;
mod socket;
mod support;
