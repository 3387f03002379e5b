//! The fixture model on the CPU backend, and the binary itself.

use crate::common;
use crate::support::*;
use ocrnet_edge::runtime::{self, Backend, BackendKind};
use ocrnet_edge::serve::Options;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture() -> std::path::PathBuf {
    common::fixture("legacy_static_opset11")
}

fn cpu_backend() -> Arc<dyn Backend> {
    Arc::from(runtime::open(BackendKind::Cpu, &fixture(), Default::default()).unwrap())
}

/// The class map the daemon returns is the one `ocrnet-edge run` writes for the same image, and the
/// JSON counts agree with it.
#[test]
fn the_daemon_answers_what_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let img_path = dir.path().join("in.png");
    let map_path = dir.path().join("map.png");
    let img = gradient();
    img.save(&img_path).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ocrnet-edge"))
        .args(["run", fixture().to_str().unwrap(), "--input"])
        .arg(&img_path)
        .arg("--output")
        .arg(&map_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rw, rh, want, want_palette) = indexed_png(&std::fs::read(&map_path).unwrap());

    let (_service, handle) = start(cpu_backend(), Options::default());
    let addr = handle.local_addr();
    let r = post(
        addr,
        "/v1/segment",
        Some("image/png"),
        &std::fs::read(&img_path).unwrap(),
    );
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    let (w, h, got, palette) = indexed_png(&r.body);
    assert_eq!((w, h), (rw, rh));
    assert_eq!(palette, want_palette);
    assert_eq!(got, want, "class maps differ");

    let r = post(
        addr,
        "/v1/segment?format=json",
        Some("image/png"),
        &png_of(&img),
    );
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["backend"], "cpu");
    for c in v["classes"].as_array().unwrap() {
        let id = c["id"].as_u64().unwrap() as u8;
        let n = want.iter().filter(|&&k| k == id).count() as u64;
        assert_eq!(c["pixels"].as_u64(), Some(n), "class {id}");
    }
    // Bad input on the real model: 4xx, and the next request still works.
    assert_eq!(
        post(addr, "/v1/segment", Some("image/png"), &bomb_png()).status,
        413
    );
    assert_eq!(
        post(addr, "/v1/segment", Some("image/png"), &png_of(&img)).status,
        200
    );
    handle.shutdown().unwrap();
}

/// `ocrnet-edge serve` with no config file: it prints its address, becomes ready, answers, and on
/// SIGTERM finishes and exits 0.
#[test]
fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ocrnet-edge"))
        .args([
            "serve",
            "--model",
            fixture().to_str().unwrap(),
            "--backend",
            "cpu",
            "--bind",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in '{line}'"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(addr, "/readyz").status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(get(addr, "/healthz").status, 200);
    let r = post(addr, "/v1/segment", Some("image/png"), &png_of(&gradient()));
    assert_eq!(r.status, 200);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(rest.contains("shut down cleanly"), "{rest}");
}

/// Startup errors are reported clearly and exit 1: the TensorRT backend missing from this build, and a
/// config file with an unknown field.
#[test]
fn startup_errors_exit_1_with_a_clear_message() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ocrnet-edge"))
            .args(args)
            .output()
            .unwrap()
    };
    let m = fixture();
    let out = run(&["serve", "--model", m.to_str().unwrap(), "--backend", "trt"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trt") && err.contains("not in this build"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("serve.yaml");
    std::fs::write(&cfg, "model: m.onnx\nqueue_depht: 3\n").unwrap();
    let out = run(&["serve", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("queue_depht") && err.contains("serve.yaml"),
        "{err}"
    );

    std::fs::write(&cfg, "model: m.onnx\nbind: 'everywhere'\n").unwrap();
    let out = run(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--backend",
        "trt",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`bind` (--bind)"), "{err}");

    // A value from a flag: the message names the flag beside the config field.
    let out = run(&[
        "serve",
        "--model",
        m.to_str().unwrap(),
        "--body-limit",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`body_limit_bytes` (--body-limit): 10 is out of range"),
        "{err}"
    );
}

/// A model that loads but cannot segment (a 1-D toy graph): the warm-up fails, the daemon stops serving
/// and exits 1 naming the model, instead of running unready forever.
#[test]
fn a_failed_warm_up_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::write_proto(dir.path(), "toy.onnx", &common::tiny_model(4));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ocrnet-edge"))
        .args([
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warming up") && err.contains("toy.onnx"),
        "{err}"
    );
}
