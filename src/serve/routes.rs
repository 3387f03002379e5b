//! The HTTP surface: `POST /v1/segment`, `GET /healthz`, `GET /readyz`, `GET /metrics`. Every check that
//! needs no pixels (token, content type, size, header dimensions) happens here, before a request takes a
//! place in the queue.

use crate::data::ImageLimits;
use crate::serve::error::ApiError;
use crate::serve::metrics::{InFlight, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::serve::render::{self, Format, Payload};
use crate::serve::worker::Job;
use crate::serve::Shared;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::io::Cursor;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

pub const SEGMENT: &str = "/v1/segment";

/// The router over a service's shared state.
pub(crate) fn router(st: Arc<Shared>) -> Router {
    Router::new()
        .route(SEGMENT, post(segment))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(st.options.body_limit))
        .layer(middleware::from_fn_with_state(st.clone(), count))
        .with_state(st)
}

/// Counts every answer by route and status code.
async fn count(State(st): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = match req.uri().path() {
        SEGMENT => SEGMENT,
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    st.metrics.count_request(route, resp.status().as_u16());
    if route == SEGMENT {
        st.metrics.observe_request(start.elapsed());
    }
    resp
}

/// A JSON body with its content type.
fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn healthz() -> Response {
    json(serde_json::json!({ "status": "alive" }))
}

async fn readyz(State(st): State<Arc<Shared>>) -> Result<Response, ApiError> {
    if st.draining.load(Ordering::SeqCst) {
        return Err(ApiError::ShuttingDown);
    }
    if !st.ready.load(Ordering::SeqCst) {
        return Err(ApiError::NotReady);
    }
    Ok(json(serde_json::json!({
        "status": "ready",
        "backend": st.backend.name(),
    })))
}

async fn metrics(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    Ok((
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        st.metrics.encode(),
    )
        .into_response())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(req.uri().path().chars().take(100).collect())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The whole request, body upload included, runs under the request timeout.
async fn segment(State(st): State<Arc<Shared>>, req: Request) -> Result<Response, ApiError> {
    let _in_flight = InFlight::new(&st.metrics.in_flight);
    let limit = st.options.request_timeout;
    tokio::time::timeout(limit, segment_inner(&st, req))
        .await
        .unwrap_or(Err(ApiError::Timeout(limit)))
}

async fn segment_inner(st: &Arc<Shared>, req: Request) -> Result<Response, ApiError> {
    authorize(st, req.headers())?;
    let format = Format::from_query(req.uri().query())?;
    let declared = content_type(req.headers())?;
    if !st.ready.load(Ordering::SeqCst) {
        return Err(ApiError::NotReady);
    }
    let limit = st.options.body_limit;
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared_len.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let body = Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge { limit }
        } else {
            ApiError::BadRequest(format!("could not read the request body: {rejection}"))
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::EmptyBody);
    }
    probe(&body, declared, st.options.image_limits())?;

    let (tx, rx) = tokio::sync::oneshot::channel();
    st.pool.submit(Job {
        body,
        format,
        enqueued: Instant::now(),
        reply: tx,
    })?;
    let answer = rx
        .await
        .map_err(|_| ApiError::Internal("the inference worker dropped the request".into()))??;
    let timing = HeaderValue::from_str(&render::server_timing(&answer.timings))
        .expect("timings format as ASCII");
    let mut resp = match answer.payload {
        Payload::Png(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Payload::Counts(counts) => json(render::json_body(
            (answer.width, answer.height),
            &counts,
            &answer.timings,
            st.backend.name(),
        )),
    };
    resp.headers_mut().insert("server-timing", timing);
    Ok(resp)
}

/// Checks `Authorization: Bearer <token>` when a token is configured (constant-time comparison).
fn authorize(st: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &st.options.bearer_token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(ApiError::Unauthorized)?;
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let diff = a
        .iter()
        .zip(b)
        .fold((a.len() != b.len()) as u8, |acc, (x, y)| acc | (x ^ y));
    if diff == 0 {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The declared image format, from `Content-Type` (parameters ignored).
fn content_type(headers: &HeaderMap) -> Result<image::ImageFormat, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = raw.as_deref().map(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    });
    match essence.as_deref() {
        Some("image/png") => Ok(image::ImageFormat::Png),
        Some("image/jpeg" | "image/jpg") => Ok(image::ImageFormat::Jpeg),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "'{}'",
            other.chars().take(60).collect::<String>()
        ))),
        None => Err(ApiError::UnsupportedMediaType("none".into())),
    }
}

/// Reads the image header only: the format must match the declared one and the size must be within
/// the limits, so that a small file claiming a huge image never reaches a decoder.
fn probe(body: &[u8], declared: image::ImageFormat, limits: ImageLimits) -> Result<(), ApiError> {
    let read = || -> Result<(u32, u32), ApiError> {
        let reader = image::ImageReader::new(Cursor::new(body))
            .with_guessed_format()
            .map_err(|e| ApiError::BadRequest(format!("unreadable image: {e}")))?;
        match reader.format() {
            Some(f) if f == declared => {}
            Some(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => {
                return Err(ApiError::BadRequest(format!(
                    "the body is a {f:?} image but Content-Type says {declared:?}"
                )))
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "the body is not a PNG or JPEG image".into(),
                ))
            }
        }
        reader
            .into_dimensions()
            .map_err(|e| ApiError::BadRequest(format!("unreadable image header: {e}")))
    };
    let (width, height) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
        .unwrap_or_else(|_| {
            Err(ApiError::BadRequest(
                "the image decoder failed on this file (corrupt image)".into(),
            ))
        })?;
    let pixels = width as u64 * height as u64;
    if pixels == 0 {
        return Err(ApiError::BadRequest(format!(
            "the image is {width}x{height}: empty"
        )));
    }
    if pixels > limits.max_pixels {
        return Err(ApiError::ImageTooLarge {
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        });
    }
    if width > limits.max_width || height > limits.max_height {
        return Err(ApiError::ImageTooWide {
            width,
            height,
            limit: limits.max_width.max(limits.max_height),
        });
    }
    Ok(())
}
