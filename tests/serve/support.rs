//! Fake backends and the HTTP helpers the daemon tests share.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ocrnet_edge::runtime::{Backend, BackendError};
use ocrnet_edge::serve::{self, Options, Service};
use ocrnet_edge::tensor::Tensor;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tower::ServiceExt;

// ---------------------------------------------------------------------------------------------------
// Fake backends

/// Logits at the input's own size where class = x * 19 / W: vertical stripes, optionally slow.
pub(crate) struct Stripes {
    pub(crate) delay: Duration,
}

impl Stripes {
    pub(crate) fn new() -> Self {
        Stripes {
            delay: Duration::ZERO,
        }
    }
    pub(crate) fn slow(delay: Duration) -> Self {
        Stripes { delay }
    }
}

pub(crate) fn stripe_class(x: usize, w: usize) -> u8 {
    (x * 19 / w) as u8
}

pub(crate) fn stripes_logits(input: &Tensor) -> Tensor {
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
pub(crate) struct Gate {
    pub(crate) open: Mutex<bool>,
    pub(crate) cv: Condvar,
}

impl Gate {
    pub(crate) fn set(&self, open: bool) {
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
pub(crate) struct Panicky {
    pub(crate) calls: AtomicUsize,
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
pub(crate) fn gradient() -> image::RgbImage {
    image::RgbImage::from_fn(128, 64, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 4) as u8, ((x + y) % 256) as u8])
    })
}

pub(crate) fn png_of(img: &image::RgbImage) -> Vec<u8> {
    let mut buf = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .unwrap();
    buf
}

pub(crate) fn jpeg_of(img: &image::RgbImage) -> Vec<u8> {
    let mut buf = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut buf),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    buf
}

/// A well-formed PNG (the IHDR checksum fixed up) whose header claims 100000 x 100000 pixels.
pub(crate) fn bomb_png() -> Vec<u8> {
    png_claiming(100_000, 100_000)
}

/// A small PNG whose header (checksum fixed up) claims `width` x `height` pixels.
pub(crate) fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = png_of(&image::RgbImage::new(8, 8));
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// CRC-32 (IEEE), as PNG chunks use it.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
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
pub(crate) fn indexed_png(bytes: &[u8]) -> (u32, u32, Vec<u8>, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    assert_eq!(reader.info().color_type, png::ColorType::Indexed);
    let palette = reader.info().palette.clone().unwrap().into_owned();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    buf.truncate(frame.buffer_size());
    (frame.width, frame.height, buf, palette)
}

pub(crate) fn start(backend: Arc<dyn Backend>, options: Options) -> (Service, serve::Handle) {
    let service = Service::new(backend, options);
    service.warm_up().unwrap();
    let handle = serve::spawn(service.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    (service, handle)
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
    /// The `error` of a JSON error body, checking the content type.
    pub(crate) fn error(&self) -> String {
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
pub(crate) fn send_raw(addr: SocketAddr, raw: &[u8]) -> Reply {
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

pub(crate) fn post(addr: SocketAddr, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    post_with(addr, path, content_type, &[], body)
}

pub(crate) fn post_with(
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

pub(crate) fn get(addr: SocketAddr, path: &str) -> Reply {
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// One request through the router in-process (no socket).
pub(crate) async fn call(
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

pub(crate) fn segment_req(query: &str, content_type: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::post(format!("/v1/segment{query}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Body::from(body)).unwrap()
}

pub(crate) fn json_error(headers: &axum::http::HeaderMap, body: &[u8]) -> String {
    assert_eq!(headers["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["error"].as_str().unwrap().to_string()
}
