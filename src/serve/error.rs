//! Every way a request can fail, each with its status code. The body is always `{"error": "..."}`;
//! internal failures are logged in full and answered with a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("no such route: {0}")]
    NotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is empty: send a PNG or JPEG image")]
    EmptyBody,
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the image is {width}x{height} = {pixels} pixels; the limit is {limit} pixels")]
    ImageTooLarge {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("the image is {width}x{height}; neither side may exceed {limit} pixels")]
    ImageTooWide { width: u32, height: u32, limit: u32 },
    #[error("Content-Type must be image/png or image/jpeg, got {0}")]
    UnsupportedMediaType(String),
    #[error("the queue is full ({depth} waiting); retry later")]
    QueueFull { depth: usize },
    #[error("the model is not ready yet (loading or warming up)")]
    NotReady,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the request took longer than {0:?}")]
    Timeout(Duration),
    /// Details are logged, never sent.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BadRequest(_) | ApiError::EmptyBody => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. }
            | ApiError::ImageTooLarge { .. }
            | ApiError::ImageTooWide { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::QueueFull { .. } | ApiError::NotReady | ApiError::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => log::error!("request failed: {detail}"),
            e if status.is_server_error() => log::warn!("{status}: {e}"),
            e => log::debug!("{status}: {e}"),
        }
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            ApiError::QueueFull { .. } | ApiError::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::NotReady => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"ocrnet-edge\""),
                );
            }
            _ => {}
        }
        resp
    }
}
