//! Plain HTTP on the client port, next to gRPC: GET /health, /version, /metrics (etcd's
//! paths and bodies). Anything else is a 404, except gRPC calls to unknown services, which
//! get gRPC's own "unimplemented" answer.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// What the HTTP endpoints need from the node, as plain functions so this module knows
/// nothing of raft or the store.
#[derive(Clone)]
pub struct HttpState {
    /// None = healthy; Some(reason) = not (etcd's reasons, e.g. "RAFT NO LEADER").
    pub health: Arc<dyn Fn() -> Option<String> + Send + Sync>,
    pub metrics: Arc<dyn Fn() -> String + Send + Sync>,
    pub server_version: &'static str,
    pub cluster_version: &'static str,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .with_state(state)
}

async fn health(State(s): State<HttpState>) -> Response {
    let (status, body) = match (s.health)() {
        None => (StatusCode::OK, r#"{"health":"true","reason":""}"#.to_string()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!(r#"{{"health":"false","reason":"{reason}"}}"#)),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn version(State(s): State<HttpState>) -> Response {
    let body = format!(r#"{{"etcdserver":"{}","etcdcluster":"{}"}}"#, s.server_version, s.cluster_version);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(s): State<HttpState>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], (s.metrics)()).into_response()
}

async fn fallback(headers: HeaderMap) -> Response {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("unknown service").into_http::<axum::body::Body>().into_response();
    }
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "404 page not found\n")
        .into_response()
}
