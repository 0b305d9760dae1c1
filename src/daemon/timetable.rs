//! The schedules' side of the daemon: which schedules the revision in force declares, the
//! instants each last decided (kept in `<state>/schedules.json`, so a restart neither repeats
//! a run nor reports a miss twice), and what a firing runs: `reconcile` is `up`, `restart`
//! restarts stale workloads, `upgrade` upgrades to the spec's Istio version (or, with
//! `track: patch`, the newest patch of its minor in the chart repository's index).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

use super::core::Daemon;
use super::model::{MissedRuns, NextSchedule, OperationKind, OperationRequest};
use super::schedule::{Fire, MissReason, Scheduler, track};
use crate::spec::types::{ScheduleAction, Track};

/// Cluster → schedule → the instant it last decided.
type Decided = BTreeMap<String, BTreeMap<String, Timestamp>>;

pub struct Timetable {
    scheduler: Scheduler,
    store: PathBuf,
    decided: Decided,
}

impl std::fmt::Debug for Timetable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timetable")
            .field("store", &self.store)
            .field("decided", &self.decided)
            .finish_non_exhaustive()
    }
}

impl Timetable {
    pub fn new(state_dir: &std::path::Path, started: Timestamp) -> Self {
        let store = state_dir.join("schedules.json");
        let decided = std::fs::read(&store)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            scheduler: Scheduler::new(started),
            store,
            decided,
        }
    }

    /// Serve the schedules of the revision in force.
    pub fn take(&mut self, daemon: &Daemon, now: Timestamp) {
        let Some((_, repo)) = daemon.revision() else {
            return;
        };
        let names = daemon.cluster_names();
        for cluster in &names {
            let schedules = repo
                .resolve(cluster)
                .map(|s| s.body.schedules)
                .unwrap_or_default();
            let stored = self.decided.get(cluster).cloned().unwrap_or_default();
            if let Err(e) = self
                .scheduler
                .set_cluster(cluster, &schedules, &stored, now)
            {
                tracing::warn!(%cluster, error = %e, "schedules not served");
            }
        }
        let served: std::collections::BTreeSet<String> = self
            .scheduler
            .upcoming()
            .into_iter()
            .map(|u| u.cluster)
            .collect();
        for cluster in served {
            if !names.contains(&cluster) {
                self.scheduler.remove_cluster(&cluster);
            }
        }
        self.show(daemon);
    }

    /// How long to sleep before [`fire`](Self::fire) has something to do.
    pub fn sleep_for(&self, now: Timestamp) -> Duration {
        self.scheduler.sleep_for(now)
    }

    /// Run what is due at `now`, report what was missed, and remember both.
    pub async fn fire(&mut self, daemon: &Daemon, now: Timestamp) {
        let fires = self.scheduler.poll(now);
        if fires.is_empty() {
            return;
        }
        // Kept before anything starts: a crash in between must not run a schedule twice.
        for fire in &fires {
            if let Some(at) = fire.decision.decided {
                self.decided
                    .entry(fire.cluster.clone())
                    .or_default()
                    .insert(fire.schedule.clone(), at);
            }
        }
        self.save();
        for fire in fires {
            report_missed(daemon, &fire);
            if let Some(run) = &fire.decision.run {
                tracing::info!(cluster = %fire.cluster, schedule = %fire.schedule, instant = %run.instant, "schedule fired");
                start(daemon, &fire).await;
            }
        }
        self.show(daemon);
    }

    fn save(&self) {
        let Ok(text) = serde_json::to_vec_pretty(&self.decided) else {
            return;
        };
        let tmp = self.store.with_extension("json.tmp");
        if std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &self.store))
            .is_err()
        {
            tracing::warn!(file = %self.store.display(), "could not keep the schedules' last instants");
        }
    }

    /// Each cluster's next schedule, for the API.
    fn show(&self, daemon: &Daemon) {
        let repo = daemon.revision().map(|(_, r)| r);
        let action = |cluster: &str, name: &str| {
            repo.as_ref()
                .and_then(|r| r.resolve(cluster).ok())
                .and_then(|s| s.body.schedules.into_iter().find(|s| s.name == name))
                .and_then(|s| serde_json::to_value(s.action).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let mut next: BTreeMap<String, NextSchedule> = BTreeMap::new();
        for u in self.scheduler.upcoming() {
            let Some(at) = u.next else { continue };
            let sooner = next
                .get(&u.cluster)
                .is_none_or(|n| n.at.parse::<Timestamp>().is_ok_and(|t| at < t));
            if sooner {
                next.insert(
                    u.cluster.clone(),
                    NextSchedule {
                        name: u.schedule.clone(),
                        action: action(&u.cluster, &u.schedule),
                        at: at.to_string(),
                    },
                );
            }
            daemon
                .metrics
                .set_next_schedule(&u.cluster, &u.schedule, Some(at.as_second()));
        }
        for cluster in daemon.cluster_names() {
            daemon.set_next_schedule(&cluster, next.remove(&cluster));
        }
    }
}

/// Say which runs a firing missed: in the log, and in the cluster's status (`missed`).
fn report_missed(daemon: &Daemon, fire: &Fire) {
    for m in &fire.decision.missed {
        let (reason, why) = match m.reason {
            MissReason::DaemonDown => {
                ("daemon-down", "the daemon was not running (catchUp is off)")
            }
            MissReason::OutsideWindow => (
                "outside-window",
                "it was later than the schedule's window allows",
            ),
        };
        let instants: Vec<String> = m.instants.iter().map(Timestamp::to_string).collect();
        tracing::warn!(cluster = %fire.cluster, schedule = %fire.schedule, ?instants, "runs missed: {why}");
        daemon.report_missed(
            &fire.cluster,
            MissedRuns {
                schedule: fire.schedule.clone(),
                reason: reason.to_string(),
                instants,
            },
        );
    }
}

/// Queue the operation a schedule's firing asks for.
async fn start(daemon: &Daemon, fire: &Fire) {
    let trigger = format!("schedule:{}", fire.schedule);
    let mut req = OperationRequest::new(&fire.cluster, OperationKind::Up);
    match fire.action {
        ScheduleAction::Reconcile => {}
        ScheduleAction::Restart => {
            req.kind = OperationKind::Restart;
            req.stale_only = true;
        }
        ScheduleAction::Upgrade => {
            req.kind = OperationKind::Upgrade;
            let Some(to) = upgrade_target(daemon, &fire.cluster, fire.track).await else {
                return;
            };
            req.to = Some(to);
        }
        ScheduleAction::Switchover => {
            tracing::warn!(cluster = %fire.cluster, schedule = %fire.schedule, "switchover is not available in this build; nothing was run");
            return;
        }
    }
    if let Err(e) = daemon.submit_as(req, &trigger) {
        tracing::warn!(cluster = %fire.cluster, schedule = %fire.schedule, error = %e, "the scheduled operation was not queued");
    }
}

/// The version a scheduled upgrade goes to: the spec's, or with `track: patch` the newest
/// patch of its minor that the chart repository's index lists.
async fn upgrade_target(daemon: &Daemon, cluster: &str, track: Option<Track>) -> Option<String> {
    let (_, repo) = daemon.revision()?;
    let istio = repo.resolve(cluster).ok()?.body.istio?;
    if track != Some(Track::Patch) {
        return Some(istio.version);
    }
    let pinned = semver::Version::parse(&istio.version).ok()?;
    match track::newest_patch_in_repo(&istio.repo, &pinned).await {
        Ok(Some(v)) => Some(v.to_string()),
        Ok(None) => Some(istio.version),
        Err(e) => {
            tracing::warn!(%cluster, error = %crate::engine::chain(&e), "could not read the chart repository's index; no upgrade");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::daemon::backend::Backend;
    use crate::daemon::config::Mode;
    use crate::daemon::core::Settings;
    use crate::daemon::source::Revision;
    use crate::engine::clock::{Clock, ManualClock};

    /// A copy of the shipped repository: `dev` reconciles at 03:00 UTC daily and restarts at
    /// 04:30 on Saturdays.
    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for sub in ["profiles", "clusters", "addons", "manifests"] {
            let to = dir.path().join(sub);
            std::fs::create_dir_all(&to).expect("mkdir");
            for e in std::fs::read_dir(root.join(sub)).expect("read").flatten() {
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        }
        std::fs::copy(root.join("paddock.yaml"), dir.path().join("paddock.yaml")).expect("copy");
        dir
    }

    fn daemon(state: &std::path::Path, clock: Arc<ManualClock>) -> Arc<Daemon> {
        Daemon::new(
            Settings {
                state_dir: state.to_path_buf(),
                // No k3d here: a queued operation fails at once, which is all this needs.
                k3d: Some("/nonexistent/k3d".into()),
                helm: Some("/nonexistent/helm".into()),
                no_download: true,
                mode: Mode::Report,
                source: ("git", "test".into()),
                version: "test".into(),
            },
            clock,
        )
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    /// The daemon's schedules under a set clock: nothing before 03:00, the nightly reconcile
    /// queued as `up` right after it, the next one shown, and after a restart (the instants
    /// read back from the state directory) not queued again.
    #[tokio::test]
    async fn a_due_schedule_queues_its_operation_once_across_restarts() {
        let (repo, state) = (repo(), tempfile::tempdir().expect("tempdir"));
        let clock = Arc::new(ManualClock::new(at("2026-12-04T02:58:00Z")));
        let d = daemon(state.path(), clock.clone());
        let rev = Revision {
            root: repo.path().to_path_buf(),
            commit: Some("c1".into()),
        };
        d.take_revision(rev.clone()).expect("valid specs");
        let mut t = Timetable::new(state.path(), clock.now());
        t.take(&d, clock.now());
        assert_eq!(
            t.sleep_for(clock.now()),
            Duration::from_secs(60),
            "capped sleep"
        );
        let next = d
            .cluster("dev")
            .and_then(|c| c.next_schedule)
            .expect("next");
        assert_eq!(
            (next.name.as_str(), next.action.as_str(), next.at.as_str()),
            ("nightly-reconcile", "reconcile", "2026-12-04T03:00:00Z")
        );
        t.fire(&d, clock.now()).await;
        assert!(d.operations().is_empty(), "nothing due at 02:58");

        clock.set(at("2026-12-04T03:00:05Z"));
        t.fire(&d, clock.now()).await;
        let ops = d.operations();
        assert_eq!(ops.len(), 1, "{ops:#?}");
        assert_eq!(ops[0].trigger, "schedule:nightly-reconcile");
        assert_eq!(ops[0].kind, OperationKind::Up);
        assert_eq!(ops[0].cluster, "dev");
        t.fire(&d, clock.now()).await;
        assert_eq!(d.operations().len(), 1, "fired once");
        d.shut_down().await;

        // A restart a minute later: the 03:00 run is remembered, not run again.
        clock.set(at("2026-12-04T03:01:00Z"));
        let d = daemon(state.path(), clock.clone());
        d.take_revision(rev.clone()).expect("valid specs");
        let mut t = Timetable::new(state.path(), clock.now());
        t.take(&d, clock.now());
        t.fire(&d, clock.now()).await;
        assert!(d.operations().is_empty(), "{:#?}", d.operations());
        assert!(d.cluster("dev").is_some_and(|c| c.missed.is_empty()));
        let next = d
            .cluster("dev")
            .and_then(|c| c.next_schedule)
            .expect("next");
        assert_eq!(next.at, "2026-12-05T03:00:00Z");
        d.shut_down().await;

        // Down for two nights (no catchUp): the runs are reported in the cluster's status,
        // not run.
        clock.set(at("2026-12-06T03:30:00Z"));
        let d = daemon(state.path(), clock.clone());
        d.take_revision(rev).expect("valid specs");
        let mut t = Timetable::new(state.path(), clock.now());
        t.take(&d, clock.now());
        t.fire(&d, clock.now()).await;
        assert!(d.operations().is_empty(), "{:#?}", d.operations());
        let missed = d.cluster("dev").map(|c| c.missed).unwrap_or_default();
        assert_eq!(missed.len(), 1, "{missed:#?}");
        assert_eq!(
            (missed[0].schedule.as_str(), missed[0].reason.as_str()),
            ("nightly-reconcile", "daemon-down")
        );
        assert_eq!(
            missed[0].instants,
            ["2026-12-05T03:00:00Z", "2026-12-06T03:00:00Z"]
        );
        d.shut_down().await;
    }
}
