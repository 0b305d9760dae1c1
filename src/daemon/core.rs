//! The daemon's state and the operations it runs: the source revision in force (or why the
//! newest was refused), each cluster's state, and a queue of operations per cluster, each run
//! by the same `ops` functions the CLI calls, with an event sink that feeds the API's streams.

mod api;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backend::SubmitError;
use super::config::Mode;
use super::model::{
    MissedRuns, NextSchedule, OperationKind, OperationRequest, OperationState, OperationView,
    Rejected, StreamEvent,
};
use super::source::Revision;
use crate::drivers::toolchain::Toolchain;
use crate::engine::clock::Clock;
use crate::engine::events::{Event, Events, Sink};
use crate::ops::outcome::{self, Outcome};
use crate::ops::{self, Context};
use crate::spec::{self, Repo};

/// Operations kept for the API (the journal keeps them all).
const KEPT_OPERATIONS: usize = 500;
/// Events kept per operation for replay.
const KEPT_EVENTS: usize = 5_000;

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub k3d: Option<PathBuf>,
    pub helm: Option<PathBuf>,
    /// `--no-download`: operations never download k3d or helm.
    pub no_download: bool,
    pub mode: Mode,
    /// `folder` or `git`, and where.
    pub source: (&'static str, String),
    pub version: String,
}

#[derive(Debug, Default, Clone)]
struct ClusterEntry {
    state: String,
    drift: Vec<String>,
    last_operation: Option<String>,
    next_schedule: Option<NextSchedule>,
    missed: VecDeque<MissedRuns>,
}

#[derive(Debug)]
struct OpEntry {
    view: OperationView,
    req: OperationRequest,
    cancel: CancellationToken,
    events: Vec<StreamEvent>,
}

#[derive(Debug, Default)]
struct State {
    revision: Option<(Revision, Repo)>,
    rejected: Option<Rejected>,
    clusters: BTreeMap<String, ClusterEntry>,
    ops: VecDeque<OpEntry>,
}

pub struct Daemon {
    me: Weak<Daemon>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    started_at: String,
    state: Mutex<State>,
    events: broadcast::Sender<StreamEvent>,
    next_id: AtomicU64,
    /// One operation at a time per cluster, in the order they were submitted: the receiver
    /// that ends when the last one submitted has ended.
    queues: Mutex<HashMap<String, oneshot::Receiver<()>>>,
    /// Stops new operations; running ones finish their step.
    shutdown: CancellationToken,
    tasks: TaskTracker,
    pub metrics: super::metrics::Metrics,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl Daemon {
    pub fn new(settings: Settings, clock: Arc<dyn Clock>) -> Arc<Self> {
        let started_at = rfc3339(clock.now());
        let metrics = super::metrics::Metrics::new(clock.now().as_second());
        let (events, _) = broadcast::channel(4096);
        Arc::new_cyclic(|me| Daemon {
            me: me.clone(),
            settings,
            clock,
            started_at,
            state: Mutex::new(State::default()),
            events,
            next_id: AtomicU64::new(1),
            queues: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            metrics,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> String {
        rfc3339(self.clock.now())
    }

    /// The revision in force and its repository.
    pub fn revision(&self) -> Option<(Revision, Repo)> {
        self.state().revision.clone()
    }

    /// Take `rev` if its specs are valid: it is then in force. Otherwise the one in force
    /// stays and `rev` is reported as rejected, with its located errors. `Ok(true)`: `rev` is
    /// new.
    pub fn take_revision(&self, rev: Revision) -> Result<bool, Vec<String>> {
        let same = self
            .state()
            .revision
            .as_ref()
            .is_some_and(|(r, _)| *r == rev);
        if same && rev.commit.is_some() {
            return Ok(false);
        }
        match spec::validate_repo(&rev.root) {
            Ok(repo) => {
                let mut st = self.state();
                for name in declared(&repo) {
                    st.clusters.entry(name).or_insert_with(|| ClusterEntry {
                        state: "unknown".into(),
                        ..ClusterEntry::default()
                    });
                }
                let names = declared(&repo);
                st.clusters.retain(|name, _| names.contains(name));
                st.rejected = None;
                if let Some(commit) = &rev.commit {
                    self.metrics
                        .set_source_commit(commit, self.clock.now().as_second());
                }
                tracing::info!(source = %rev.label(), "specs taken");
                st.revision = Some((rev, repo));
                Ok(true)
            }
            Err(errors) => {
                let lines: Vec<String> = errors.0.iter().map(|d| d.to_string()).collect();
                tracing::warn!(source = %rev.label(), errors = ?lines, "specs refused; the last good ones stay in force");
                self.state().rejected = Some(Rejected {
                    commit: rev.commit.clone(),
                    errors: lines.clone(),
                });
                Err(lines)
            }
        }
    }

    /// The clusters of the revision in force.
    pub fn cluster_names(&self) -> Vec<String> {
        self.state()
            .revision
            .as_ref()
            .map(|(_, repo)| declared(repo))
            .unwrap_or_default()
    }

    /// Keep a report of runs a schedule missed (the newest 20 per cluster).
    pub fn report_missed(&self, cluster: &str, missed: MissedRuns) {
        if let Some(c) = self.state().clusters.get_mut(cluster) {
            c.missed.push_back(missed);
            while c.missed.len() > 20 {
                c.missed.pop_front();
            }
        }
    }

    pub fn set_next_schedule(&self, cluster: &str, next: Option<NextSchedule>) {
        if let Some(c) = self.state().clusters.get_mut(cluster) {
            c.next_schedule = next;
        }
    }

    /// Queue an operation; `trigger` says who asked (`api`, `source`, `resume`,
    /// `schedule:<name>`).
    pub fn submit_as(
        &self,
        req: OperationRequest,
        trigger: &str,
    ) -> Result<OperationView, SubmitError> {
        if self.shutdown.is_cancelled() {
            return Err(SubmitError::ShuttingDown);
        }
        check_request(&req)?;
        let id = format!("op-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let view = {
            let mut st = self.state();
            let Some((rev, repo)) = &st.revision else {
                return Err(SubmitError::Invalid(
                    "the daemon has no valid specs yet; see its source's errors in /v1/clusters"
                        .into(),
                ));
            };
            if !declared(repo).contains(&req.cluster) {
                return Err(SubmitError::UnknownCluster(req.cluster.clone()));
            }
            let view = OperationView {
                id: id.clone(),
                cluster: req.cluster.clone(),
                kind: req.kind,
                state: OperationState::Queued,
                trigger: trigger.to_string(),
                source: Some(rev.label()),
                submitted_at: self.now(),
                started_at: None,
                finished_at: None,
                outcomes: Vec::new(),
            };
            if let Some(c) = st.clusters.get_mut(&req.cluster) {
                c.last_operation = Some(id.clone());
            }
            st.ops.push_back(OpEntry {
                view: view.clone(),
                req,
                cancel: self.shutdown.child_token(),
                events: Vec::new(),
            });
            // Only finished operations make room: a running one keeps its record (and its
            // stream's end).
            while st.ops.len() > KEPT_OPERATIONS {
                let Some(i) = st.ops.iter().position(|o| o.view.finished_at.is_some()) else {
                    break;
                };
                st.ops.remove(i);
            }
            view
        };
        tracing::info!(op = %id, cluster = %view.cluster, kind = ?view.kind, trigger, "operation queued");
        // Its turn comes after the operation submitted before it on the same cluster.
        let (done, turn) = self.take_turn(&view.cluster);
        if let Some(me) = self.me.upgrade() {
            self.tasks.spawn(me.run(id, turn, done));
        }
        Ok(view)
    }

    /// The turn of an operation on `cluster`: a receiver that ends when the operation
    /// submitted before it has ended, and a sender to drop when this one has.
    fn take_turn(&self, cluster: &str) -> (oneshot::Sender<()>, Option<oneshot::Receiver<()>>) {
        let (done, next) = oneshot::channel();
        let before = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cluster.to_string(), next);
        (done, before)
    }

    /// Is an operation of `kind` on `cluster` queued and not started yet?
    pub fn queued(&self, cluster: &str, kind: OperationKind) -> bool {
        self.state().ops.iter().any(|o| {
            o.view.cluster == cluster
                && o.view.kind == kind
                && o.view.state == OperationState::Queued
        })
    }

    /// Apply what changed (`up` on every cluster), or in report mode, record what `up`
    /// would change as drift. Clusters with an `up` already queued are left to it.
    pub fn reconcile_all(&self, trigger: &str) {
        for cluster in self.cluster_names() {
            match self.settings.mode {
                Mode::Apply => {
                    if self.queued(&cluster, OperationKind::Up) {
                        continue;
                    }
                    let _ =
                        self.submit_as(OperationRequest::new(&cluster, OperationKind::Up), trigger);
                }
                Mode::Report => {
                    if let Some(me) = self.me.upgrade() {
                        self.tasks
                            .spawn(async move { me.check_drift(&cluster).await });
                    }
                }
            }
        }
    }

    /// Continue every cluster's unfinished upgrade (at start: a killed daemon's work).
    pub fn resume_unfinished(&self) {
        for cluster in self.cluster_names() {
            let Ok(journal) =
                crate::engine::journal::Journal::open_read_only(&self.settings.state_dir, &cluster)
            else {
                continue;
            };
            if let Ok(Some((op, _))) = journal.unfinished_upgrade() {
                // A paused upgrade waits for the person who paused it.
                if journal.status(&op).ok().flatten().as_deref() == Some("paused") {
                    tracing::info!(%cluster, journal_op = %op, "an upgrade is paused for a check; not continued");
                    continue;
                }
                tracing::info!(%cluster, journal_op = %op, "continuing an unfinished upgrade");
                let req = OperationRequest::new(&cluster, OperationKind::Upgrade);
                let _ = self.submit_as(req, "resume");
            }
        }
    }

    /// Stop: no new operation starts, running ones finish their current step (a journaled
    /// upgrade stays unfinished, to continue at the next start); returns when all ended.
    pub async fn shut_down(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn with_op<T>(&self, id: &str, f: impl FnOnce(&mut OpEntry) -> T) -> Option<T> {
        self.state().ops.iter_mut().find(|o| o.view.id == id).map(f)
    }

    /// Record and broadcast one event of operation `id` (both under the state lock, so a
    /// subscriber gets each event once: in its replay or live).
    fn publish(&self, id: &str, event: Value) {
        let ev = StreamEvent {
            operation: id.to_string(),
            event,
        };
        self.with_op(id, |o| {
            // The end is always kept: a late reader's stream ends with it.
            if o.events.len() < KEPT_EVENTS || ev.event["event"] == "end" {
                o.events.push(ev.clone());
            }
            let _ = self.events.send(ev);
        });
    }

    /// Run operation `id` when its `turn` comes; drop `done` when it has ended, so the next
    /// one on its cluster can start. Cancelled while it waits, it ends at once, and still
    /// passes the turn on only after the operation before it.
    async fn run(
        self: Arc<Self>,
        id: String,
        turn: Option<oneshot::Receiver<()>>,
        done: oneshot::Sender<()>,
    ) {
        let Some((req, cancel)) = self.with_op(&id, |o| (o.req.clone(), o.cancel.clone())) else {
            return;
        };
        let before = async {
            if let Some(t) = turn {
                let _ = t.await;
            }
        };
        tokio::pin!(before);
        let waited = tokio::select! {
            () = &mut before => true,
            () = cancel.cancelled() => false,
        };
        if !waited || cancel.is_cancelled() {
            self.finish(&id, OperationState::Cancelled, vec![not_started(&id)]);
            if !waited {
                before.await;
            }
            drop(done);
            return;
        }
        let now = self.now();
        self.with_op(&id, |o| {
            o.view.state = OperationState::Running;
            o.view.started_at = Some(now);
        });
        self.set_cluster_state(&req.cluster, "reconciling");
        self.metrics.operation_started(req.kind, &req.cluster);
        let took = tokio::time::Instant::now();
        let outcomes = self.execute(&id, &req, cancel.clone()).await;
        let ok = outcomes.iter().all(Outcome::ok);
        let state = match (ok, cancel.is_cancelled()) {
            (true, _) => OperationState::Succeeded,
            (false, true) => OperationState::Cancelled,
            (false, false) => OperationState::Failed,
        };
        self.metrics
            .operation_finished(req.kind, &req.cluster, state, took.elapsed());
        if req.kind == OperationKind::Up {
            self.set_cluster_state(&req.cluster, if ok { "in-sync" } else { "failed" });
            if ok {
                self.set_drift(&req.cluster, Vec::new());
            }
        } else {
            self.set_cluster_state(&req.cluster, if ok { "in-sync" } else { "failed" });
        }
        self.finish(&id, state, outcomes);
        drop(done);
    }

    fn finish(&self, id: &str, state: OperationState, outcomes: Vec<Outcome>) {
        let now = self.now();
        let end = json!({"event": "end", "state": state, "outcomes": outcomes});
        self.with_op(id, |o| {
            o.view.state = state;
            o.view.finished_at = Some(now);
            o.view.outcomes = outcomes;
        });
        tracing::info!(op = %id, state = ?state, "operation ended");
        self.publish(id, end);
    }

    fn set_cluster_state(&self, cluster: &str, state: &str) {
        if let Some(c) = self.state().clusters.get_mut(cluster) {
            c.state = state.to_string();
        }
    }

    fn set_drift(&self, cluster: &str, drift: Vec<String>) {
        self.metrics.set_drift(cluster, Some(drift.len()));
        if let Some(c) = self.state().clusters.get_mut(cluster) {
            c.drift = drift;
        }
    }

    /// Whether and what to download: the revision's `tools:`, the variables, `--no-download`.
    fn downloads(
        &self,
        repo: &Repo,
    ) -> Result<crate::drivers::provision::Settings, crate::drivers::provision::Error> {
        crate::drivers::provision::Settings::resolve(
            &repo.config.tools,
            self.settings.no_download,
            &crate::drivers::provision::process_env,
        )
    }

    /// The context an operation runs in: the revision's tools, a sink feeding the API, the
    /// daemon's clock, the operation's cancellation, the revision as its source.
    fn context(&self, id: &str, rev: &Revision, repo: &Repo, cancel: CancellationToken) -> Context {
        let tools = Toolchain::resolve(
            self.settings.k3d.as_deref(),
            self.settings.helm.as_deref(),
            &repo.config.tools,
            Some(&self.settings.state_dir),
        );
        // Cached tools count (drift checks); operations download what is missing (`execute`).
        let tools = match self.downloads(repo) {
            Ok(s) => tools.with_downloads(s),
            Err(_) => tools,
        };
        let sink = OpSink {
            daemon: self.me.clone(),
            id: id.to_string(),
            started: tokio::time::Instant::now(),
        };
        let mut cx = Context::new(tools, Events::new(Arc::new(sink)))
            .with_clock(self.clock.clone())
            .with_source(rev.label());
        cx.cancel = cancel;
        cx
    }

    async fn execute(
        &self,
        id: &str,
        req: &OperationRequest,
        cancel: CancellationToken,
    ) -> Vec<Outcome> {
        // A folder is read again as the operation starts: an edit made just before asking is
        // not missed while the watcher waits for the folder to settle.
        if self.settings.source.0 == "folder" {
            let rev = Revision {
                root: PathBuf::from(&self.settings.source.1),
                commit: None,
            };
            if let Err(errors) = self.take_revision(rev) {
                return vec![failed(format!(
                    "the repository's specs are not valid; nothing was changed:\n{}",
                    errors.join("\n")
                ))];
            }
        }
        let Some((rev, repo)) = self.revision() else {
            return vec![failed("the daemon has no valid specs".into())];
        };
        let spec = match repo.resolve(&req.cluster) {
            Ok(s) => s,
            Err(e) => return vec![failed(e.to_string())],
        };
        let mut cx = self.context(id, &rev, &repo, cancel);
        let downloads = self.downloads(&repo);
        if let Err(e) = ops::tools::prepare_with(&mut cx.tools, downloads, &cx.events).await {
            return vec![failed(format!(
                "{}\n  what to do: {}",
                crate::engine::chain(&e),
                e.what_to_do()
            ))];
        }
        match req.kind {
            OperationKind::Up => {
                let loaded = match ops::up::load_manifests_from(&rev.root, &spec.body.workloads) {
                    Ok(l) => l,
                    Err(e) => return vec![failed(crate::engine::chain(&e))],
                };
                let (origins, applied): (Vec<String>, Vec<Value>) = loaded.into_iter().unzip();
                let opts = ops::up::UpOptions {
                    origins,
                    adopt: req.adopt,
                    ..ops::up::UpOptions::default()
                };
                let r = ops::up::converge(&cx, &spec, &applied, &opts).await;
                outcome::of_up(&spec.name, &r)
            }
            OperationKind::Upgrade => {
                let r = ops::upgrade::execute(&cx, &spec, &upgrade_request(req)).await;
                vec![outcome::of_upgrade(&spec.name, &r)]
            }
            OperationKind::Restart => {
                let opts = ops::restart::Options {
                    namespaces: req.namespaces.clone(),
                    stale_only: req.stale_only,
                    max_concurrent: 4,
                    timeout: Duration::from_secs(300),
                };
                let r = ops::restart::execute(&cx, &spec.name, &opts).await;
                vec![outcome::of_restart(&spec.name, &r)]
            }
        }
    }

    /// Report mode: what `up` would change, observed and planned but not applied.
    async fn check_drift(&self, cluster: &str) {
        let Some((rev, repo)) = self.revision() else {
            return;
        };
        let Ok(spec) = repo.resolve(cluster) else {
            return;
        };
        let cx = self.context("drift", &rev, &repo, CancellationToken::new());
        let drift = match ops::up::drift(&cx, &spec, &rev.root).await {
            Ok(steps) => steps,
            Err(e) => {
                tracing::warn!(%cluster, error = %crate::engine::chain(&e), "could not check drift");
                self.set_cluster_state(cluster, "unknown");
                return;
            }
        };
        let state = if drift.is_empty() {
            "in-sync"
        } else {
            "drifted"
        };
        self.set_cluster_state(cluster, state);
        self.set_drift(cluster, drift);
    }
}

/// The clusters a repository declares (the implicit one when it declares none).
fn declared(repo: &Repo) -> Vec<String> {
    if repo.clusters.is_empty() {
        vec![crate::spec::load::IMPLICIT_CLUSTER.to_string()]
    } else {
        repo.clusters.keys().cloned().collect()
    }
}

/// How an operation cancelled before it started ended: a failure that says nothing changed.
fn not_started(id: &str) -> Outcome {
    failed(format!(
        "operation {id} was cancelled before it started; nothing was changed"
    ))
}

fn failed(message: String) -> Outcome {
    Outcome {
        summary: None,
        result: None,
        error: Some(outcome::Ending {
            message,
            hint: None,
            exit: outcome::Exit::Failed,
        }),
    }
}

fn upgrade_request(req: &OperationRequest) -> ops::upgrade::Request {
    use crate::plan::upgrade::Strategy;
    ops::upgrade::Request {
        to: req.to.clone(),
        strategy: match req.strategy.as_deref() {
            Some("canary") => Some(Strategy::Canary),
            Some("in-place") => Some(Strategy::InPlace),
            _ => None,
        },
        dry_run: false,
        pause_after: req.pause_after.clone(),
        grace_secs: req.grace_secs,
        max_concurrent: 4,
        step_timeout: Duration::from_secs(300),
    }
}

/// Refuse what no operation could do, before anything is queued.
fn check_request(req: &OperationRequest) -> Result<(), SubmitError> {
    if let Some(s) = req.strategy.as_deref()
        && !matches!(s, "canary" | "in-place")
    {
        return Err(SubmitError::Invalid(format!(
            "strategy {s:?}: use `canary` or `in-place`"
        )));
    }
    let upgrade_only = req.to.is_some()
        || req.strategy.is_some()
        || req.pause_after.is_some()
        || req.grace_secs.is_some();
    if upgrade_only && req.kind != OperationKind::Upgrade {
        return Err(SubmitError::Invalid(
            "to, strategy, pauseAfter and graceSecs are for upgrade operations".into(),
        ));
    }
    if req.adopt && req.kind != OperationKind::Up {
        return Err(SubmitError::Invalid("adopt is for up operations".into()));
    }
    if (req.stale_only || !req.namespaces.is_empty()) && req.kind != OperationKind::Restart {
        return Err(SubmitError::Invalid(
            "namespaces and staleOnly are for restart operations".into(),
        ));
    }
    if let Some(to) = &req.to {
        crate::mesh::istio::parse_version(to)
            .map_err(|e| SubmitError::Invalid(format!("to {to:?}: {e}")))?;
    }
    Ok(())
}

/// An operation's events, to its API streams and the daemon's log.
struct OpSink {
    daemon: Weak<Daemon>,
    id: String,
    started: tokio::time::Instant,
}

impl Sink for OpSink {
    fn emit(&self, event: &Event) {
        let Some(d) = self.daemon.upgrade() else {
            return;
        };
        if let Event::StepDone { step, took } = event {
            d.metrics.step_finished(step, *took);
        }
        let at_ms = self.started.elapsed().as_millis() as u64;
        tracing::info!(target: "paddock::daemon", op = %self.id, event = %event.to_json(at_ms));
        if self.id != "drift" {
            d.publish(&self.id, event.to_json(at_ms));
        }
    }
}
