//! The daemon as a client meets it: routes, formats, limits, errors, the queue, metrics and shutdown.
//! Fake backends (fixed stripes, a gate, a panic) make the queue and timing cases deterministic; the
//! fixture model on the CPU backend proves the daemon answers what `ocrnet-edge run` writes.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ocrnet_edge::runtime::{self, Backend, BackendError, BackendKind};
use ocrnet_edge::serve::{self, Options, Service};
use ocrnet_edge::tensor::Tensor;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------------
// Fake backends

/// Logits at the input's own size where class = x * 19 / W: vertical stripes, optionally slow.
struct Stripes {
    delay: Duration,
}

impl Stripes {
    fn new() -> Self {
        Stripes {
            delay: Duration::ZERO,
        }
    }
    fn slow(delay: Duration) -> Self {
        Stripes { delay }
    }
}

fn stripe_class(x: usize, w: usize) -> u8 {
    (x * 19 / w) as u8
}

fn stripes_logits(input: &Tensor) -> Tensor {
    let (h, w) = (input.shape[2], input.shape[3]);
    let mut v = vec![0f32; 19 * h * w];
    for y in 0..h {
        for x in 0..w {
            v[stripe_class(x, w) as usize * h * w + y * w + x] = 1.0;
        }
    }
    Tensor::vec_f32(vec![1, 19, h, w], v).unwrap()
}

impl Backend for Stripes {
    fn name(&self) -> &'static str {
        "stripes"
    }
    fn input_hw(&self) -> Option<(u32, u32)> {
        None
    }
    fn infer(&self, input: Tensor) -> Result<Tensor, BackendError> {
        std::thread::sleep(self.delay);
        Ok(stripes_logits(&input))
    }
}

/// Blocks every inference until the gate is opened.
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.cv.notify_all();
    }
}

impl Backend for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn input_hw(&self) -> Option<(u32, u32)> {
        None
    }
    fn infer(&self, input: Tensor) -> Result<Tensor, BackendError> {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        Ok(stripes_logits(&input))
    }
}

/// Fine for the warm-up, then panics.
struct Panicky {
    calls: AtomicUsize,
}

impl Backend for Panicky {
    fn name(&self) -> &'static str {
        "panicky"
    }
    fn input_hw(&self) -> Option<(u32, u32)> {
        None
    }
    fn infer(&self, input: Tensor) -> Result<Tensor, BackendError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) > 0 {
            panic!("secret internal detail");
        }
        Ok(stripes_logits(&input))
    }
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/// A 128x64 RGB gradient, the fixture model's input size.
fn gradient() -> image::RgbImage {
    image::RgbImage::from_fn(128, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 4) as u8, ((x + y) % 256) as u8])
    })
}

fn png_of(img: &image::RgbImage) -> Vec<u8> {
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .unwrap();
    buf
}

fn jpeg_of(img: &image::RgbImage) -> Vec<u8> {
    let mut buf = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut buf),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    buf
}

/// A well-formed PNG (the IHDR checksum fixed up) whose header claims 100000 x 100000 pixels.
fn bomb_png() -> Vec<u8> {
    png_claiming(100_000, 100_000)
}

/// A small PNG whose header (checksum fixed up) claims `width` x `height` pixels.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_of(&image::RgbImage::new(8, 8));
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// CRC-32 (IEEE), as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The class indices and palette of an indexed PNG.
fn indexed_png(bytes: &[u8]) -> (u32, u32, Vec<u8>, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    assert_eq!(reader.info().color_type, png::ColorType::Indexed);
    let palette = reader.info().palette.clone().unwrap().into_owned();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    buf.truncate(frame.buffer_size());
    (frame.width, frame.height, buf, palette)
}

fn start(backend: Arc<dyn Backend>, options: Options) -> (Service, serve::Handle) {
    let service = Service::new(backend, options);
    service.warm_up().unwrap();
    let handle = serve::spawn(service.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    (service, handle)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
    /// The `error` of a JSON error body, checking the content type.
    fn error(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        self.json()["error"].as_str().unwrap().to_string()
    }
}

/// A tiny HTTP/1.1 client: one raw request on a fresh connection (`Connection: close`), read to EOF.
/// Write errors are ignored, since a server may answer (413) and close before the body is sent.
fn send_raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if !got.is_empty() => {
                eprintln!("read ended with {e} after {} bytes", got.len());
                break;
            }
            Err(e) => panic!("no response: {e}"),
        }
    }
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = got[end + 4..].to_vec();
    if let Some(n) = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap())
    {
        assert!(body.len() >= n, "short body: {} of {n}", body.len());
        body.truncate(n);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn post(addr: SocketAddr, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    post_with(addr, path, content_type, &[], body)
}

fn post_with(
    addr: SocketAddr,
    path: &str,
    content_type: Option<&str>,
    extra: &[&str],
    body: &[u8],
) -> Reply {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        raw.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for h in extra {
        raw.push_str(&format!("{h}\r\n"));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, &raw)
}

fn get(addr: SocketAddr, path: &str) -> Reply {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// One request through the router in-process (no socket).
async fn call(
    app: axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

fn segment_req(query: &str, content_type: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::post(format!("/v1/segment{query}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Body::from(body)).unwrap()
}

fn json_error(headers: &axum::http::HeaderMap, body: &[u8]) -> String {
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------------
// In-process (router only)

/// /healthz answers from the start; /readyz and /v1/segment only after the warm-up inference.
#[tokio::test]
async fn readiness_follows_the_warm_up() {
    let service = Service::new(Arc::new(Stripes::new()), Options::default());
    let app = serve::app(&service);
    let (s, _, body) = call(
        app.clone(),
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, br#"{"status":"alive"}"#);
    let (s, h, body) = call(
        app.clone(),
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(json_error(&h, &body).contains("not ready"));
    let png = png_of(&gradient());
    let (s, h, _) = call(app.clone(), segment_req("", Some("image/png"), png.clone())).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.contains_key("retry-after"));

    service.warm_up().unwrap();
    let (s, _, body) = call(
        app.clone(),
        Request::get("/readyz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (s, _, _) = call(app.clone(), segment_req("", Some("image/png"), png)).await;
    assert_eq!(s, StatusCode::OK);
    // Unknown routes and methods get JSON errors too.
    let (s, h, body) = call(
        app.clone(),
        Request::get("/v2/nothing").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(json_error(&h, &body).contains("/v2/nothing"));
    let (s, h, body) = call(
        app,
        Request::get("/v1/segment").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    json_error(&h, &body);
}

/// `?format=png|overlay|json` each answer what they promise, from the same class map.
#[tokio::test]
async fn the_three_formats() {
    let service = Service::new(Arc::new(Stripes::new()), Options::default());
    service.warm_up().unwrap();
    let app = serve::app(&service);
    let img = gradient();
    let png = png_of(&img);
    let expected: Vec<u8> = (0..64)
        .flat_map(|_| (0..128).map(|x| stripe_class(x, 128)))
        .collect();

    for query in ["", "?format=png"] {
        let (s, h, body) = call(
            app.clone(),
            segment_req(query, Some("image/png"), png.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["content-type"], "image/png");
        assert!(h["server-timing"].to_str().unwrap().contains("infer;dur="));
        let (w, hh, classes, palette) = indexed_png(&body);
        assert_eq!((w, hh), (128, 64));
        assert_eq!(classes, expected);
        assert_eq!(
            &palette[13 * 3..13 * 3 + 3],
            &runtime::CITYSCAPES_PALETTE[13]
        );
    }

    let (s, h, body) = call(
        app.clone(),
        segment_req("?format=overlay", Some("image/png"), png.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "image/png");
    let overlay = image::load_from_memory(&body).unwrap().to_rgb8();
    assert_eq!(overlay.dimensions(), (128, 64));
    for (x, y) in [(0, 0), (77, 31), (127, 63)] {
        let c = runtime::CITYSCAPES_PALETTE[stripe_class(x as usize, 128) as usize];
        let p = img.get_pixel(x, y).0;
        let want: Vec<u8> = (0..3)
            .map(|i| ((p[i] as u16 + c[i] as u16) / 2) as u8)
            .collect();
        assert_eq!(overlay.get_pixel(x, y).0.to_vec(), want, "pixel ({x}, {y})");
    }

    // A JPEG works as well; JSON has the size, per-class fractions that match the map, and timings.
    let (s, h, body) = call(
        app.clone(),
        segment_req("?format=json", Some("image/jpeg"), jpeg_of(&img)),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(128), Some(64))
    );
    assert_eq!(v["backend"], "stripes");
    let classes = v["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 19);
    assert_eq!(classes[0]["name"], "road");
    let sum: f64 = classes
        .iter()
        .map(|c| c["fraction"].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-9);
    let road = expected.iter().filter(|&&c| c == 0).count();
    assert_eq!(classes[0]["pixels"].as_u64(), Some(road as u64));
    for stage in ["queue", "pre", "infer", "post"] {
        assert!(v["timings_ms"][stage].as_f64().unwrap() >= 0.0, "{stage}");
    }

    let (s, h, body) = call(app, segment_req("?format=gif", Some("image/png"), png)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(json_error(&h, &body).contains("gif"));
}

/// Each bad request gets its status and a JSON error, before it takes a place in the queue.
#[tokio::test]
async fn bad_requests_get_their_status_and_a_json_error() {
    let service = Service::new(
        Arc::new(Stripes::new()),
        Options {
            body_limit: 4096,
            max_pixels: 1 << 20,
            ..Options::default()
        },
    );
    service.warm_up().unwrap();
    let app = serve::app(&service);
    let small = png_of(&image::RgbImage::new(16, 8));
    let png = png_of(&gradient());
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "empty body",
            segment_req("", Some("image/png"), vec![]),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "truncated PNG",
            segment_req("", Some("image/png"), small[..small.len() / 2].to_vec()),
            StatusCode::BAD_REQUEST,
            "corrupt",
        ),
        (
            "not an image",
            segment_req("", Some("image/png"), b"hello world".to_vec()),
            StatusCode::BAD_REQUEST,
            "not a PNG",
        ),
        (
            "JPEG labelled PNG",
            segment_req("", Some("image/png"), jpeg_of(&image::RgbImage::new(8, 8))),
            StatusCode::BAD_REQUEST,
            "Jpeg",
        ),
        (
            "100000x100000 header",
            segment_req("", Some("image/png"), bomb_png()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "100000x100000",
        ),
        (
            "wrong content type",
            segment_req("", Some("text/plain"), small.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "text/plain",
        ),
        (
            "no content type",
            segment_req("", None, small.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            "oversized, declared",
            Request::post("/v1/segment")
                .header("content-type", "image/png")
                .header("content-length", png.len().to_string())
                .body(Body::from(png.clone()))
                .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "4096 bytes",
        ),
        (
            "oversized, streamed without a length",
            segment_req("", Some("image/png"), png.clone()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "4096 bytes",
        ),
        (
            "unknown parameter",
            segment_req("?fromat=json", Some("image/png"), small.clone()),
            StatusCode::BAD_REQUEST,
            "fromat",
        ),
    ];
    for (what, req, status, needle) in cases {
        let (s, h, body) = call(app.clone(), req).await;
        assert_eq!(s, status, "{what}: {}", String::from_utf8_lossy(&body));
        let e = json_error(&h, &body);
        assert!(
            e.contains(needle),
            "{what}: '{e}' should mention '{needle}'"
        );
    }
    let (s, _, _) = call(
        app,
        segment_req("", Some("image/png; charset=binary"), small),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

/// With a token configured, /v1/segment and /metrics need it; the probes do not.
#[tokio::test]
async fn bearer_token_guards_the_api() {
    let service = Service::new(
        Arc::new(Stripes::new()),
        Options {
            bearer_token: Some("s3cret".into()),
            ..Options::default()
        },
    );
    service.warm_up().unwrap();
    let app = serve::app(&service);
    let png = png_of(&image::RgbImage::new(16, 8));
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cre"),
        Some("Basic s3cret"),
    ] {
        let mut b = Request::post("/v1/segment").header("content-type", "image/png");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let (s, h, body) = call(app.clone(), b.body(Body::from(png.clone())).unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert!(!json_error(&h, &body).contains("s3cret"));
    }
    let req = Request::post("/v1/segment")
        .header("content-type", "image/png")
        .header("authorization", "Bearer s3cret")
        .body(Body::from(png))
        .unwrap();
    assert_eq!(call(app.clone(), req).await.0, StatusCode::OK);
    let (s, _, _) = call(
        app.clone(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let req = Request::get("/metrics")
        .header("authorization", "bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(app.clone(), req).await.0, StatusCode::OK);
    for probe in ["/healthz", "/readyz"] {
        let (s, _, _) = call(
            app.clone(),
            Request::get(probe).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{probe}");
    }
}

/// A request slower than the timeout is answered 504; the worker then skips what it no longer needs.
#[tokio::test]
async fn slow_requests_time_out_with_504() {
    let service = Service::new(
        Arc::new(Stripes::slow(Duration::from_secs(2))),
        Options {
            request_timeout: Duration::from_millis(100),
            ..Options::default()
        },
    );
    service.warm_up().unwrap();
    let app = serve::app(&service);
    let png = png_of(&image::RgbImage::new(16, 8));
    let start = Instant::now();
    let (s, h, body) = call(app, segment_req("", Some("image/png"), png)).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert!(json_error(&h, &body).contains("100ms"));
}

/// A backend that panics is a 500 with no internals in the body, and the worker lives on.
#[tokio::test]
async fn a_panicking_backend_is_a_500_and_the_worker_survives() {
    let service = Service::new(
        Arc::new(Panicky {
            calls: AtomicUsize::new(0),
        }),
        Options::default(),
    );
    service.warm_up().unwrap();
    let app = serve::app(&service);
    let png = png_of(&image::RgbImage::new(16, 8));
    for _ in 0..2 {
        let (s, h, body) = call(app.clone(), segment_req("", Some("image/png"), png.clone())).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json_error(&h, &body), "internal error");
    }
}

/// /metrics counts answers by code and shows stage histograms and the gauges.
#[tokio::test]
async fn metrics_count_codes_and_time_stages() {
    let service = Service::new(Arc::new(Stripes::new()), Options::default());
    service.warm_up().unwrap();
    let app = serve::app(&service);
    let png = png_of(&gradient());
    assert_eq!(
        call(app.clone(), segment_req("", Some("image/png"), png.clone()))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(app.clone(), segment_req("", Some("image/gif"), png.clone()))
            .await
            .0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    // Its header passes the probe, so it queues and fails in the worker's decoder: its queue wait
    // counts, its other stages do not.
    let truncated = png[..png.len() - 20].to_vec();
    assert_eq!(
        call(app.clone(), segment_req("", Some("image/png"), truncated))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let (s, h, body) = call(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .contains("openmetrics-text"));
    let text = String::from_utf8(body).unwrap();
    for needle in [
        r#"ocrnet_edge_http_requests_total{route="/v1/segment",code="200"} 1"#,
        r#"ocrnet_edge_http_requests_total{route="/v1/segment",code="415"} 1"#,
        r#"ocrnet_edge_http_requests_total{route="/v1/segment",code="400"} 1"#,
        r#"ocrnet_edge_stage_seconds_count{stage="queue"} 2"#,
        r#"ocrnet_edge_stage_seconds_count{stage="pre"} 1"#,
        r#"ocrnet_edge_stage_seconds_count{stage="infer"} 1"#,
        r#"ocrnet_edge_stage_seconds_bucket{le="0.00025",stage="post"}"#,
        "ocrnet_edge_segment_request_seconds_count 3",
        "ocrnet_edge_queue_depth 0",
        "ocrnet_edge_in_flight_requests 0",
        "ocrnet_edge_ready 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------------
// On a real loopback socket

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

// ---------------------------------------------------------------------------------------------------
// The fixture model on the CPU backend, and the binary

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
