//! On a real loopback socket: hostile clients, the queue, shutdown.

use crate::support::*;
use ocrnet_edge::serve::{self, Options, Service};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Hostile and malformed requests over TCP each get a 4xx with a JSON error, and the server keeps
/// answering good requests in between.
#[test]
fn hostile_requests_over_tcp_leave_the_server_serving() {
    let (_service, handle) = start(
        Arc::new(Stripes::new()),
        Options {
            body_limit: 64 << 10,
            ..Options::default()
        },
    );
    let addr = handle.local_addr();
    let good = png_of(&gradient());
    let small = png_of(&image::RgbImage::new(16, 8));
    let oversized = vec![0x89u8; 1 << 20];
    // Within the default pixel budget (4096²) but far past MAX_SIDE: resizing it would have asked for
    // 16777216 × 128 × 16 bytes.
    let ribbon = png_claiming(4096 * 4096, 1);
    let cases: [(&str, Option<&str>, &[u8], u16); 6] = [
        ("empty body", Some("image/png"), b"", 400),
        (
            "truncated PNG",
            Some("image/png"),
            &small[..small.len() - 20],
            400,
        ),
        ("100000x100000 header", Some("image/png"), &bomb_png(), 413),
        ("16777216x1 header", Some("image/png"), &ribbon, 413),
        ("wrong content type", Some("application/json"), b"{}", 415),
        ("oversized body", Some("image/png"), &oversized, 413),
    ];
    for (what, ct, body, status) in cases {
        let r = post(addr, "/v1/segment", ct, body);
        assert_eq!(
            r.status,
            status,
            "{what}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.error().is_empty(), "{what}");
        let ok = post(addr, "/v1/segment", Some("image/png"), &good);
        assert_eq!(ok.status, 200, "after {what}");
        assert_eq!(indexed_png(&ok.body).0, 128);
    }
    let r = post(addr, "/v1/segment", Some("image/png"), &ribbon);
    assert!(r.error().contains("16384"), "{}", r.error());
    // Garbage instead of HTTP: the connection is dropped (or answered 400), the server lives on.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"\x16\x03\x01 this is not http\r\n\r\n")
        .unwrap();
    drop(s);
    assert_eq!(get(addr, "/healthz").status, 200);
    handle.shutdown().unwrap();
}

/// A client that sends part of a request's headers and stalls, or connects and sends nothing, is cut
/// off after the header timeout (here the 300 ms request timeout), so that such clients cannot pile up
/// and hold the daemon's descriptors; the server keeps answering meanwhile.
#[test]
fn stalled_clients_are_cut_off_after_the_header_timeout() {
    let (_service, handle) = start(
        Arc::new(Stripes::new()),
        Options {
            request_timeout: Duration::from_millis(300),
            ..Options::default()
        },
    );
    let addr = handle.local_addr();
    let stalls: [(&str, &[u8]); 2] = [
        (
            "half a request",
            b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-",
        ),
        ("nothing", b""),
    ];
    for (what, sent) in stalls {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(sent).unwrap();
        let began = Instant::now();
        let mut got = Vec::new();
        let end = loop {
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        let waited = began.elapsed();
        match end {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{what}: the connection was still open after {waited:?}: {e}"),
        }
        // Closed without an answer, or with a 408: never a 2xx.
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "{what}: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(get(addr, "/healthz").status, 200, "after {what}");
    }
    handle.shutdown().unwrap();
}

/// 32 clients at once against queue depth 2 and a blocked backend: every client is answered, 200 or 503
/// (with Retry-After and a JSON error), and both happen.
#[test]
fn a_full_queue_answers_503_and_loses_nobody() {
    let gate = Arc::new(Gate {
        open: Mutex::new(true),
        cv: Condvar::new(),
    });
    let (service, handle) = start(
        gate.clone(),
        Options {
            queue_depth: 2,
            workers: 1,
            ..Options::default()
        },
    );
    gate.set(false);
    let addr = handle.local_addr();
    let png = Arc::new(png_of(&image::RgbImage::new(32, 16)));
    let (tx, rx) = mpsc::channel();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (tx, png) = (tx.clone(), png.clone());
            std::thread::spawn(move || {
                let r = post(addr, "/v1/segment", Some("image/png"), &png);
                tx.send(r).unwrap();
            })
        })
        .collect();
    // With the backend blocked, at most one request is in the worker and two in the queue; the others must
    // be refused without waiting. Open the gate once they have been (or after 20 s, to fail clearly).
    let mut replies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while replies.len() < 29 && Instant::now() < deadline {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(100)) {
            replies.push(r);
        }
    }
    assert!(service.metrics().queue_depth() <= 2);
    gate.set(true);
    for c in clients {
        c.join().unwrap();
    }
    replies.extend(rx.try_iter());
    assert_eq!(replies.len(), 32, "every client is answered");
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        ok + busy.len(),
        32,
        "only 200 or 503: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(ok >= 1 && !busy.is_empty(), "{ok} ok, {} busy", busy.len());
    assert!(
        ok <= 3 + 2,
        "{ok} accepted with a blocked backend and a queue of 2"
    );
    for r in busy {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.error().contains("queue is full"));
    }
    handle.shutdown().unwrap();
}

/// A request accepted before shutdown is answered 200; meanwhile new connections are refused, and the
/// server then stops.
#[test]
fn shutdown_drains_accepted_requests() {
    let (service, mut handle) = start(
        Arc::new(Stripes::slow(Duration::from_millis(800))),
        Options::default(),
    );
    let addr = handle.local_addr();
    let png = png_of(&gradient());
    let client =
        std::thread::spawn(move || post(addr, "/v1/segment?format=json", Some("image/png"), &png));
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.metrics().in_flight() == 0 {
        assert!(Instant::now() < deadline, "the request never arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.begin_shutdown();
    let mut refused = false;
    while !refused && Instant::now() < deadline {
        refused = TcpStream::connect(addr).is_err();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(refused, "new connections are refused while draining");
    assert!(!service.is_ready());
    let r = client.join().unwrap();
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["width"], 128);
    handle.shutdown().unwrap();
}

/// A SIGTERM during a slow warm-up: the warm-up finishing afterwards must not report the draining
/// service ready, neither on /readyz nor in the `ocrnet_edge_ready` gauge.
#[test]
fn a_warm_up_that_ends_after_shutdown_leaves_the_service_unready() {
    let service = Service::new(Arc::new(Stripes::new()), Options::default());
    let handle = serve::spawn(service.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    handle.shutdown().unwrap();
    service.warm_up().unwrap();
    assert!(!service.is_ready());
    let text = service.metrics().encode();
    assert!(text.contains("ocrnet_edge_ready 0\n"), "{text}");
}
