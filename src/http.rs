//! /healthz, /readyz and /metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kube::runtime::reflector::Store;
use tokio_util::sync::CancellationToken;

use crate::crd::DockerSandbox;
use crate::metrics::Metrics;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct AppState {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// The controllers' caches.
    pub stores: Vec<Store<DockerSandbox>>,
    /// Set once every cache has synced.
    pub ready: Arc<AtomicBool>,
    /// Who leads (leader election), for /readyz.
    pub role: crate::leader::Role,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready (200) once the API server answers, leader or standby: a standby is healthy, and a rollout
/// of 2 replicas must finish. The body says which.
async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, format!("ready: {}", s.role.get()))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the API server cannot be reached yet".to_string())
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        s.metrics.render(&s.stores),
    )
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(addr: std::net::SocketAddr, state: AppState, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
