//! In-process: requests through the router, no socket.

use crate::support::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use ocrnet_edge::runtime::{self};
use ocrnet_edge::serve::{self, Options, Service};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
