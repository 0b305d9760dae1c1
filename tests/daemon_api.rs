//! The daemon's HTTP API over its real unix socket, against an in-memory backend: every answer
//! checked against `docs/api/openapi.yaml`; who may connect; what bad, big, slow, many and
//! random requests do (never a crash, never a stuck daemon); the metrics page read by
//! Prometheus' own text parser.

#[path = "support/api.rs"]
mod api_support;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::{Raw, SseReader, get, openapi, post_json, raw};
use paddock::daemon::api::{self, Limits};
use paddock::daemon::backend::{Backend, CancelError, SubmitError};
use paddock::daemon::metrics::Metrics;
use paddock::daemon::model::{
    ClusterView, Health, MissedRuns, NextSchedule, OperationKind, OperationRequest, OperationState,
    OperationView, Outcome, Rejected, SourceView, StreamEvent,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The daemon's state in memory: two clusters, a finished and a running operation, every
/// metric family populated.
struct TestBackend {
    clusters: Vec<ClusterView>,
    ops: Mutex<Ops>,
    tx: broadcast::Sender<StreamEvent>,
    metrics: Metrics,
    shutting_down: AtomicBool,
}

#[derive(Default)]
struct Ops {
    /// Oldest first.
    list: Vec<OperationView>,
    events: HashMap<String, Vec<StreamEvent>>,
}

fn cluster(name: &str) -> ClusterView {
    ClusterView {
        name: name.into(),
        source: SourceView {
            kind: "folder".into(),
            location: "/srv/clusters".into(),
            commit: None,
            rejected: None,
        },
        state: "in-sync".into(),
        drift: vec![],
        last_operation: None,
        next_schedule: None,
        missed: vec![],
    }
}

fn operation(id: &str, state: OperationState) -> OperationView {
    OperationView {
        id: id.into(),
        cluster: "dev".into(),
        kind: OperationKind::Up,
        state,
        trigger: "api".into(),
        source: None,
        submitted_at: "2026-05-01T10:00:00Z".into(),
        started_at: None,
        finished_at: None,
        outcomes: Vec::new(),
    }
}

fn step(op: &str, name: &str, status: &str) -> StreamEvent {
    StreamEvent {
        operation: op.into(),
        event: json!({"event": "step", "step": name, "status": status, "at_ms": 5}),
    }
}

fn end(op: &str, ok: bool) -> StreamEvent {
    StreamEvent {
        operation: op.into(),
        event: json!({"event": "end", "state": if ok { "succeeded" } else { "failed" }, "outcomes": []}),
    }
}

impl TestBackend {
    fn new(capacity: usize) -> Arc<TestBackend> {
        let mut ci = cluster("ci");
        ci.source = SourceView {
            kind: "git".into(),
            location: "https://git.example/clusters.git#main".into(),
            commit: Some("4b825dc".into()),
            rejected: Some(Rejected {
                commit: Some("9f1e2d3".into()),
                errors: vec!["clusters/ci.yaml:3: istio.version: not a version".into()],
            }),
        };
        ci.state = "drifted".into();
        ci.missed = vec![MissedRuns {
            schedule: "nightly".into(),
            reason: "daemon-down".into(),
            instants: vec!["2026-05-01T02:00:00Z".into()],
        }];
        ci.drift = vec!["install addon kiali".into()];
        ci.last_operation = Some("op-1".into());
        ci.next_schedule = Some(NextSchedule {
            name: "nightly".into(),
            action: "restart".into(),
            at: "2026-05-02T02:00:00+02:00".into(),
        });
        let mut done = operation("op-1", OperationState::Succeeded);
        done.source = Some("4b825dc".into());
        done.started_at = Some("2026-05-01T10:00:01Z".into());
        done.finished_at = Some("2026-05-01T10:00:09Z".into());
        done.outcomes = vec![Outcome {
            summary: Some("dev is up to date".into()),
            result: Some(json!({"upToDate": true, "stepsRun": 0})),
            error: None,
        }];
        let mut running = operation("op-2", OperationState::Running);
        running.trigger = "schedule:nightly".into();
        running.started_at = Some("2026-05-01T11:00:00Z".into());
        let mut ops = Ops::default();
        ops.events.insert(
            "op-1".into(),
            vec![step("op-1", "observe/helm", "started"), end("op-1", true)],
        );
        ops.events
            .insert("op-2".into(), vec![step("op-2", "restart/ns/a", "started")]);
        ops.list = vec![done, running];
        let metrics = Metrics::new(1_777_000_000);
        metrics.operation_started(OperationKind::Up, "dev");
        metrics.operation_finished(
            OperationKind::Up,
            "dev",
            OperationState::Succeeded,
            Duration::from_secs(8),
        );
        metrics.step_finished("restart/Deployment/ns/x", Duration::from_millis(1500));
        metrics.set_drift("ci", Some(1));
        metrics.set_drift("we\"ird\\name", Some(0));
        metrics.set_next_schedule("ci", "nightly", Some(1_777_680_000));
        metrics.set_source_commit("4b825dc", 1_777_000_100);
        Arc::new(TestBackend {
            clusters: vec![cluster("dev"), ci],
            ops: Mutex::new(ops),
            tx: broadcast::channel(capacity).0,
            metrics,
            shutting_down: AtomicBool::new(false),
        })
    }

    fn ops(&self) -> std::sync::MutexGuard<'_, Ops> {
        self.ops.lock().expect("ops lock")
    }

    /// Record and broadcast an event (under the lock, so a subscriber misses none).
    fn emit(&self, ev: StreamEvent) {
        let mut ops = self.ops();
        ops.events
            .entry(ev.operation.clone())
            .or_default()
            .push(ev.clone());
        let _ = self.tx.send(ev);
    }
}

impl Backend for TestBackend {
    fn health(&self) -> Health {
        Health {
            ok: true,
            pid: std::process::id(),
            version: "0.1.0".into(),
            started_at: "2026-05-01T09:00:00Z".into(),
            state_dir: "/var/lib/paddock".into(),
        }
    }
    fn clusters(&self) -> Vec<ClusterView> {
        self.clusters.clone()
    }
    fn submit(&self, req: OperationRequest) -> Result<OperationView, SubmitError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        if !self.clusters.iter().any(|c| c.name == req.cluster) {
            return Err(SubmitError::UnknownCluster(req.cluster));
        }
        if req
            .strategy
            .as_deref()
            .is_some_and(|s| s != "canary" && s != "in-place")
        {
            return Err(SubmitError::Invalid(
                "strategy must be canary or in-place".into(),
            ));
        }
        let mut ops = self.ops();
        let mut op = operation(
            &format!("op-{}", ops.list.len() + 1),
            OperationState::Queued,
        );
        op.cluster = req.cluster;
        op.kind = req.kind;
        ops.list.push(op.clone());
        Ok(op)
    }
    fn operations(&self) -> Vec<OperationView> {
        self.ops().list.iter().rev().cloned().collect()
    }
    fn operation(&self, id: &str) -> Option<OperationView> {
        self.ops().list.iter().find(|o| o.id == id).cloned()
    }
    fn cancel(&self, id: &str) -> Result<OperationView, CancelError> {
        let mut ops = self.ops();
        let op = ops
            .list
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or_else(|| CancelError::Unknown(id.into()))?;
        if !matches!(op.state, OperationState::Queued | OperationState::Running) {
            return Err(CancelError::Finished(id.into()));
        }
        op.state = OperationState::Cancelled;
        Ok(op.clone())
    }
    fn subscribe(&self, id: &str) -> Option<(Vec<StreamEvent>, broadcast::Receiver<StreamEvent>)> {
        let ops = self.ops();
        ops.list.iter().find(|o| o.id == id)?;
        let past = ops.events.get(id).cloned().unwrap_or_default();
        Some((past, self.tx.subscribe()))
    }
    fn subscribe_all(&self) -> broadcast::Receiver<StreamEvent> {
        self.tx.subscribe()
    }
    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// A daemon serving a [`TestBackend`] on a socket in a fresh directory.
struct Daemon {
    dir: tempfile::TempDir,
    socket: PathBuf,
    backend: Arc<TestBackend>,
    shutdown: CancellationToken,
    task: JoinHandle<io::Result<()>>,
}

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with(Limits::default(), TestBackend::new(64))
    }

    fn start_with(limits: Limits, backend: Arc<TestBackend>) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("api.sock");
        let listener = api::bind(&socket).expect("bind the API socket");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(api::serve_with(
            listener,
            backend.clone(),
            shutdown.clone(),
            limits,
        ));
        Daemon {
            dir,
            socket,
            backend,
            shutdown,
            task,
        }
    }

    /// `/v1/health` answers 200.
    async fn assert_healthy(&self) {
        let r = get(&self.socket, "/v1/health").await;
        assert_eq!(r.status, 200, "{}", r.text());
        openapi().check("/v1/health", "GET", &r);
    }

    /// Shut down; how long `serve` took to return.
    async fn stop(self) -> Duration {
        let t = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic")
            .expect("serve ends without error");
        t.elapsed()
    }
}

#[path = "daemon_api/routes.rs"]
mod routes;

#[path = "daemon_api/hardening.rs"]
mod hardening;

#[path = "daemon_api/metrics.rs"]
mod metrics;
