//! The API's routes: each a thin handler over one [`Backend`] call, answering JSON, errors as
//! [`ApiError`] with the status the failure calls for.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request};
use axum::http::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio_util::sync::CancellationToken;

use super::Limits;
use super::events;
use crate::daemon::backend::{Backend, CancelError, SubmitError};
use crate::daemon::model::{ApiError, OperationRequest};

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct State {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) max_body_bytes: usize,
    pub(super) body_read_timeout: Duration,
    pub(super) sse_keep_alive: Duration,
    pub(super) shutdown: CancellationToken,
}

impl State {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        limits: &Limits,
        shutdown: &CancellationToken,
    ) -> State {
        State {
            backend,
            max_body_bytes: limits.max_body_bytes,
            body_read_timeout: limits.body_read_timeout,
            sse_keep_alive: limits.sse_keep_alive,
            shutdown: shutdown.clone(),
        }
    }
}

type Ctx = axum::extract::State<State>;

pub(super) fn router(state: State) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/clusters", get(clusters))
        .route("/v1/clusters/{name}", get(cluster))
        .route("/v1/operations", get(operations).post(submit))
        .route("/v1/operations/{id}", get(operation))
        .route("/v1/operations/{id}/cancel", post(cancel))
        .route("/v1/operations/{id}/events", get(events::operation))
        .route("/v1/events", get(events::all))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The router of the metrics listener: `GET /metrics` alone.
pub(crate) fn metrics_router(state: State) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A failed request: its status and the message of its [`ApiError`] body.
#[derive(Debug)]
pub(super) struct Failure {
    status: StatusCode,
    message: String,
    /// The request body was not read to its end: the connection cannot carry another request.
    close: bool,
}

impl Failure {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            close: false,
        }
    }

    fn closing(mut self) -> Failure {
        self.close = true;
        self
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ApiError {
                error: self.message,
            }),
        )
            .into_response();
        if self.close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The path parameter, or 400 when it is not valid (percent-encoded bytes that are not UTF-8).
pub(super) fn param(p: Result<Path<String>, PathRejection>) -> Result<String, Failure> {
    match p {
        Ok(Path(s)) => Ok(s),
        Err(e) => Err(Failure::new(StatusCode::BAD_REQUEST, e.body_text())),
    }
}

async fn health(ctx: Ctx) -> Response {
    Json(ctx.backend.health()).into_response()
}

async fn clusters(ctx: Ctx) -> Response {
    Json(ctx.backend.clusters()).into_response()
}

async fn cluster(ctx: Ctx, name: Result<Path<String>, PathRejection>) -> Result<Response, Failure> {
    let name = param(name)?;
    match ctx.backend.cluster(&name) {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no cluster {name} in the repository the daemon follows"),
        )),
    }
}

async fn operations(ctx: Ctx) -> Response {
    Json(ctx.backend.operations()).into_response()
}

async fn operation(ctx: Ctx, id: Result<Path<String>, PathRejection>) -> Result<Response, Failure> {
    let id = param(id)?;
    match ctx.backend.operation(&id) {
        Some(op) => Ok(Json(op).into_response()),
        None => Err(unknown_operation(&id)),
    }
}

pub(super) fn unknown_operation(id: &str) -> Failure {
    Failure::new(StatusCode::NOT_FOUND, format!("no operation {id}"))
}

async fn submit(ctx: Ctx, headers: HeaderMap, body: Body) -> Result<Response, Failure> {
    require_json(&headers)?;
    let bytes = read_body(&ctx, &headers, body).await?;
    let request = parse_request(&bytes)?;
    let view = ctx.backend.submit(request).map_err(|e| {
        let status = match e {
            SubmitError::UnknownCluster(_) => StatusCode::NOT_FOUND,
            SubmitError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SubmitError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure::new(status, e.to_string())
    })?;
    let mut response = (StatusCode::ACCEPTED, Json(&view)).into_response();
    if let Ok(location) = HeaderValue::try_from(format!("/v1/operations/{}", view.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

async fn cancel(ctx: Ctx, id: Result<Path<String>, PathRejection>) -> Result<Response, Failure> {
    let id = param(id)?;
    match ctx.backend.cancel(&id) {
        Ok(op) => Ok(Json(op).into_response()),
        Err(e @ CancelError::Unknown(_)) => Err(Failure::new(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ CancelError::Finished(_)) => Err(Failure::new(StatusCode::CONFLICT, e.to_string())),
    }
}

/// The media type of the Prometheus text format: what `/metrics` answers unless the scraper
/// asks for OpenMetrics, which is what the backend's page is.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(ctx: Ctx, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let page = ctx.backend.metrics();
    let (content_type, page) = if openmetrics {
        (OPENMETRICS_TEXT, page)
    } else {
        (
            PROMETHEUS_TEXT,
            crate::daemon::metrics::prometheus_text(&page),
        )
    };
    (
        [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
        page,
    )
        .into_response()
}

async fn not_found(request: Request) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {}; the API's paths are listed in docs/api/openapi.yaml",
            shortened(request.uri().path())
        ),
    )
}

async fn method_not_allowed(request: Request) -> Failure {
    Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "method {} is not allowed on {}",
            shortened(request.method().as_str()),
            shortened(request.uri().path())
        ),
    )
}

/// At most 200 characters of what a caller sent, for an error message.
fn shortened(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// 415 unless the body is declared JSON (`application/json`, parameters allowed).
fn require_json(headers: &HeaderMap) -> Result<(), Failure> {
    let declared = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let is_json = declared.is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if is_json {
        return Ok(());
    }
    Err(Failure::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "the request body must be JSON with content-type application/json, not {}",
            declared.map_or_else(|| "none".to_string(), shortened)
        ),
    )
    .closing())
}

/// The whole body, within the size limit (413) and the read deadline (408).
async fn read_body(ctx: &State, headers: &HeaderMap, body: Body) -> Result<Bytes, Failure> {
    let limit = ctx.max_body_bytes;
    let too_large = || {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
        .closing()
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = Limited::new(body, limit).collect();
    match tokio::time::timeout(ctx.body_read_timeout, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("failed to read the request body: {e}"),
        )
        .closing()),
        Err(_) => Err(Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                ctx.body_read_timeout.as_secs_f64()
            ),
        )
        .closing()),
    }
}

/// An [`OperationRequest`] from JSON: 400 for JSON that does not parse, 422 for JSON that is
/// not an operation request (unknown or missing fields, wrong types), each with serde's
/// message, the field's path and the position.
fn parse_request(bytes: &[u8]) -> Result<OperationRequest, Failure> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let request = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| json_failure(&e.path().to_string(), e.inner()))?;
    de.end().map_err(|e| json_failure(".", &e))?;
    Ok(request)
}

fn json_failure(path: &str, e: &serde_json::Error) -> Failure {
    match e.classify() {
        serde_json::error::Category::Data if path == "." => Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid operation request: {e}"),
        ),
        serde_json::error::Category::Data => Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid operation request: field {path}: {e}"),
        ),
        _ => Failure::new(
            StatusCode::BAD_REQUEST,
            format!("the request body is not valid JSON: {e}"),
        ),
    }
}
