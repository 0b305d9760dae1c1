//! The daemon's Prometheus metrics: what it ran (operations and steps, how they ended and how
//! long they took), how far each cluster is from its spec, when each schedule fires next, and
//! which source commit is in force. The daemon's core records into one [`Metrics`]; the API
//! serves [`Metrics::encode`] on `GET /metrics`, on the unix socket and, optionally, on a
//! loopback TCP address ([`serve_metrics`]).
//!
//! Label values are bounded: clusters and schedules come from the repository, step names are cut
//! to their first segment (`restart/Deployment/ns/x` → `restart`), and a source commit replaces
//! the previous one instead of adding a series.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::api::{self, Limits, ListenError};
use super::backend::Backend;
use super::model::{OperationKind, OperationState};

/// The longest step label kept; longer first segments are cut.
const MAX_STEP_LABEL: usize = 64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    kind: &'static str,
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    kind: &'static str,
    cluster: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    cluster: String,
    schedule: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    commit: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The daemon's metrics. Cheap to share (`Arc<Metrics>`); every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    operations_started: Family<OperationLabels, Counter>,
    operations_finished: Family<FinishedLabels, Counter>,
    operation_duration: HistogramFamily<KindLabels>,
    step_duration: HistogramFamily<StepLabels>,
    drift_steps: Family<ClusterLabels, Gauge>,
    next_schedule: Family<ScheduleLabels, Gauge>,
    source_commit: Family<CommitLabels, Gauge>,
    source_commit_timestamp: Gauge,
    /// The commit `source_commit` holds a series for, so a new one replaces it.
    commit_in_force: Mutex<Option<String>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn operation_buckets() -> Histogram {
    // 1 s … about 68 min.
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

fn step_buckets() -> Histogram {
    // 50 ms … about 20 min.
    Histogram::new(exponential_buckets(0.05, 2.5, 12))
}

impl Metrics {
    /// The metrics of a daemon started at `started_at` (unix seconds).
    pub fn new(started_at: i64) -> Self {
        let mut registry = Registry::with_prefix("paddock");
        let operations_started = Family::<OperationLabels, Counter>::default();
        registry.register(
            "operations_started",
            "Operations started, by kind and cluster",
            operations_started.clone(),
        );
        let operations_finished = Family::<FinishedLabels, Counter>::default();
        registry.register(
            "operations_finished",
            "Operations finished, by kind, cluster and final state",
            operations_finished.clone(),
        );
        let operation_duration: HistogramFamily<KindLabels> =
            Family::new_with_constructor(operation_buckets);
        registry.register_with_unit(
            "operation_duration",
            "How long operations ran, from start to end, by kind",
            Unit::Seconds,
            operation_duration.clone(),
        );
        let step_duration: HistogramFamily<StepLabels> = Family::new_with_constructor(step_buckets);
        registry.register_with_unit(
            "step_duration",
            "How long steps ran, by the first segment of the step's name",
            Unit::Seconds,
            step_duration.clone(),
        );
        let drift_steps = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "cluster_drift_steps",
            "Steps `up` would run to bring the cluster in line with its spec (0: in sync)",
            drift_steps.clone(),
        );
        let next_schedule = Family::<ScheduleLabels, Gauge>::default();
        registry.register_with_unit(
            "schedule_next_run_timestamp",
            "When each schedule fires next, unix time",
            Unit::Seconds,
            next_schedule.clone(),
        );
        let source_commit = Family::<CommitLabels, Gauge>::default();
        registry.register(
            "source_commit_info",
            "The source commit in force (always 1; the commit is the label)",
            source_commit.clone(),
        );
        let source_commit_timestamp = Gauge::default();
        registry.register_with_unit(
            "source_commit_taken_timestamp",
            "When the source commit in force was taken, unix time",
            Unit::Seconds,
            source_commit_timestamp.clone(),
        );
        let start_time: Gauge = Gauge::default();
        start_time.set(started_at);
        registry.register_with_unit(
            "start_time",
            "When the daemon started, unix time",
            Unit::Seconds,
            start_time.clone(),
        );
        Metrics {
            registry,
            operations_started,
            operations_finished,
            operation_duration,
            step_duration,
            drift_steps,
            next_schedule,
            source_commit,
            source_commit_timestamp,
            commit_in_force: Mutex::new(None),
        }
    }

    /// An operation of `kind` started on `cluster`.
    pub fn operation_started(&self, kind: OperationKind, cluster: &str) {
        self.operations_started
            .get_or_create(&OperationLabels {
                kind: kind_label(kind),
                cluster: cluster.to_string(),
            })
            .inc();
    }

    /// An operation of `kind` on `cluster` ended in `state` after running `took`.
    pub fn operation_finished(
        &self,
        kind: OperationKind,
        cluster: &str,
        state: OperationState,
        took: Duration,
    ) {
        self.operations_finished
            .get_or_create(&FinishedLabels {
                kind: kind_label(kind),
                cluster: cluster.to_string(),
                state: state_label(state),
            })
            .inc();
        self.operation_duration
            .get_or_create(&KindLabels {
                kind: kind_label(kind),
            })
            .observe(took.as_secs_f64());
    }

    /// A step ran for `took` (done or failed).
    pub fn step_finished(&self, step: &str, took: Duration) {
        self.step_duration
            .get_or_create(&StepLabels {
                step: step_label(step),
            })
            .observe(took.as_secs_f64());
    }

    /// How many steps `up` would run on `cluster`; `None` forgets the cluster (removed from
    /// the repository).
    pub fn set_drift(&self, cluster: &str, steps: Option<usize>) {
        let labels = ClusterLabels {
            cluster: cluster.to_string(),
        };
        match steps {
            Some(n) => {
                self.drift_steps
                    .get_or_create(&labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            None => {
                self.drift_steps.remove(&labels);
            }
        }
    }

    /// When `schedule` of `cluster` fires next (unix seconds); `None` forgets it.
    pub fn set_next_schedule(&self, cluster: &str, schedule: &str, at: Option<i64>) {
        let labels = ScheduleLabels {
            cluster: cluster.to_string(),
            schedule: schedule.to_string(),
        };
        match at {
            Some(at) => {
                self.next_schedule.get_or_create(&labels).set(at);
            }
            None => {
                self.next_schedule.remove(&labels);
            }
        }
    }

    /// The source commit now in force, taken at `taken_at` (unix seconds). Replaces the
    /// previous commit's series.
    pub fn set_source_commit(&self, commit: &str, taken_at: i64) {
        let mut in_force = match self.commit_in_force.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(old) = in_force.take() {
            self.source_commit.remove(&CommitLabels { commit: old });
        }
        self.source_commit
            .get_or_create(&CommitLabels {
                commit: commit.to_string(),
            })
            .set(1);
        *in_force = Some(commit.to_string());
        self.source_commit_timestamp.set(taken_at);
    }

    /// The text exposition of every metric (OpenMetrics text, which Prometheus' text parser
    /// also reads), ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; a metric that could not be encoded is left out.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::warn!("failed to encode the daemon's metrics");
        }
        out
    }
}

fn kind_label(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Up => "up",
        OperationKind::Upgrade => "upgrade",
        OperationKind::Restart => "restart",
    }
}

fn state_label(state: OperationState) -> &'static str {
    match state {
        OperationState::Queued => "queued",
        OperationState::Running => "running",
        OperationState::Succeeded => "succeeded",
        OperationState::Failed => "failed",
        OperationState::Cancelled => "cancelled",
    }
}

/// A step's name cut to its first segment, so workloads and namespaces named in later
/// segments do not each make a series.
fn step_label(step: &str) -> String {
    let first = step.split('/').next().unwrap_or(step);
    let mut end = first.len().min(MAX_STEP_LABEL);
    while !first.is_char_boundary(end) {
        end -= 1;
    }
    first[..end].to_string()
}

/// The Prometheus text format (version 0.0.4) of an OpenMetrics text page such as
/// [`Metrics::encode`] writes: a counter family is named with its `_total` suffix (as its
/// samples are), and the `# UNIT` and `# EOF` lines, which that format lacks, are left out.
/// Text already in that format passes unchanged.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            (counters.contains(name) && !name.ends_with("_total"))
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match described {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Serve `GET /metrics` (the backend's [`Backend::metrics`]) on a loopback TCP address until
/// `shutdown`. Any other address is refused: the metrics name clusters and commits, and the
/// endpoint has no authentication.
pub async fn serve_metrics(
    addr: SocketAddr,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let listener = bind_metrics(addr).await?;
    serve_metrics_on(listener, backend, shutdown).await
}

/// The listener of [`serve_metrics`]: a loopback address only (port 0 picks a free port).
pub async fn bind_metrics(addr: SocketAddr) -> io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            ListenError::NotLoopback(addr),
        ));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| io::Error::new(source.kind(), ListenError::Metrics { addr, source }))
}

/// [`serve_metrics`] on a listener from [`bind_metrics`].
pub async fn serve_metrics_on(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let limits = Limits::default();
    let router = api::metrics_router(api::State::new(backend, &limits, &shutdown));
    api::run(listener, router, &limits, shutdown, |_| true).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_labels_keep_the_first_segment_only() {
        for (step, want) in [
            ("restart/Deployment/ns/x", "restart"),
            ("observe/helm", "observe"),
            ("install-istiod", "install-istiod"),
            ("", ""),
        ] {
            assert_eq!(step_label(step), want, "{step}");
        }
        assert_eq!(step_label(&"é".repeat(100)).len(), 64);
    }

    #[test]
    fn a_new_source_commit_replaces_the_old_series() {
        let m = Metrics::new(1);
        m.set_source_commit("aaa", 10);
        m.set_source_commit("bbb", 20);
        let text = m.encode();
        assert!(text.contains("commit=\"bbb\""), "{text}");
        assert!(!text.contains("commit=\"aaa\""), "{text}");
        assert!(
            text.contains("paddock_source_commit_taken_timestamp_seconds 20"),
            "{text}"
        );
    }

    #[test]
    fn the_prometheus_text_names_counters_with_their_suffix_and_has_no_openmetrics_lines() {
        let m = Metrics::new(7);
        m.operation_started(OperationKind::Up, "dev");
        let text = prometheus_text(&m.encode());
        assert!(
            text.contains(
                "# HELP paddock_operations_started_total Operations started, by kind and cluster.\n\
                 # TYPE paddock_operations_started_total counter\n\
                 paddock_operations_started_total{kind=\"up\",cluster=\"dev\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE paddock_start_time_seconds gauge\npaddock_start_time_seconds 7\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert_eq!(prometheus_text(&text), text);
    }

    #[test]
    fn forgotten_clusters_and_schedules_leave_the_page() {
        let m = Metrics::new(1);
        m.set_drift("dev", Some(3));
        m.set_next_schedule("dev", "nightly", Some(1_700_000_000));
        assert!(m.encode().contains("cluster=\"dev\""));
        m.set_drift("dev", None);
        m.set_next_schedule("dev", "nightly", None);
        assert!(!m.encode().contains("cluster=\"dev\""));
    }
}
