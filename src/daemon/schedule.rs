//! When a cluster's `schedules` call for a run. The daemon builds a [`Scheduler`] from its
//! clusters' specs and the instants it stored, calls [`Scheduler::poll`] with the wall time of
//! its [`Clock`](crate::engine::clock::Clock), starts the operations the returned [`Fire`]s ask
//! for, stores each fire's `decided` instant, and sleeps until [`Scheduler::next_wake`]. Nothing
//! here reads a clock, sleeps or stores anything: every function takes `now`, so tests drive it
//! with a [`ManualClock`](crate::engine::clock::ManualClock) or plain timestamps. For an
//! upgrade with `track: patch`, [`track`] reads the version to upgrade to from the chart
//! repository when the run starts.
//!
//! # Rules
//!
//! - **Instants.** A schedule's instants are the times its five-field cron expression matches
//!   on the wall clock of its `timeZone` (UTC when absent). Fields are crontab's: Sunday is 0
//!   (7 is Sunday too), and when both day-of-month and day-of-week are restricted either one
//!   matching is enough.
//! - **Daylight saving time.** A time the clock skips (02:30 on a spring-forward day in
//!   Europe/Berlin) runs at the first instant after the jump (03:00 local) if the expression
//!   names a single minute and hour, and is skipped if it names several (`*/15 * * * *`,
//!   `0 * * * *`): such a schedule keeps its spacing in elapsed time. A time the clock repeats
//!   (01:30 on a fall-back day in America/New_York) runs once, at the first of its two
//!   instants, if the expression names a single minute and hour, and on both otherwise. These
//!   are croner's rules for `jiff::Zoned`, and match Vixie cron.
//! - **History.** For each schedule the daemon stores the latest instant already decided (run,
//!   or reported as missed): [`Decision::decided`]. With it a restarted daemon neither repeats a
//!   run nor reports a missed instant twice. A schedule with no stored instant counts from when
//!   the daemon started, or from when the schedule appeared if that was later.
//! - **Missed while down.** Instants that passed before the daemon started are reported as
//!   [`MissReason::DaemonDown`] and not run, unless the schedule says `catchUp: true`: then
//!   they get one run, for the latest of them, however late ([`RunKind::CatchUp`]).
//! - **Window.** An instant that passed while the daemon was running runs if it is at most
//!   `window` (default [`DEFAULT_WINDOW`](crate::spec::types::DEFAULT_WINDOW), one hour) old;
//!   otherwise (the machine slept, the daemon was busy) it is reported as
//!   [`MissReason::OutsideWindow`]. [`Run::start_by`] carries the same bound to whoever queues
//!   the run: a run that cannot start by then should be reported, not started.
//! - **One run at a time.** When several instants are due at once, one run stands for all of
//!   them ([`Run::coalesced`]), for the latest instant.

pub mod track;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::spec::types::{self, DEFAULT_WINDOW, ScheduleAction, Track};
use crate::spec::validate;

/// More pending instants than this (a minutely schedule and a daemon down for a week) are not
/// listed one by one: the oldest this many and the latest are, and [`Decision::truncated`] says so.
pub const PENDING_LIMIT: usize = 10_000;

/// The longest [`Scheduler::sleep_for`] asks the daemon to sleep. Timers run on the monotonic
/// clock, which stops while the machine is suspended and ignores changes to the wall clock; this
/// bounds how late either is noticed, at one wake-up a minute.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A spec schedule that cannot be evaluated. Validated specs never produce one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("schedule {schedule}: invalid cron expression `{cron}`: {reason}")]
    Cron {
        schedule: String,
        cron: String,
        reason: String,
    },
    #[error("schedule {schedule}: unknown time zone `{zone}`")]
    TimeZone { schedule: String, zone: String },
    #[error("schedule {schedule}: invalid window: {reason}")]
    Window { schedule: String, reason: String },
}

/// A spec schedule, parsed once, ready to answer when its instants are.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub action: ScheduleAction,
    pub track: Option<Track>,
    pub catch_up: bool,
    pub window: SignedDuration,
    cron: croner::Cron,
    zone: TimeZone,
    /// The entry it was built from, to tell whether a new spec changed its instants.
    source: types::Schedule,
}

impl Schedule {
    pub fn from_spec(spec: &types::Schedule) -> Result<Self, Error> {
        let cron = validate::parse_cron(&spec.cron).map_err(|reason| Error::Cron {
            schedule: spec.name.clone(),
            cron: spec.cron.clone(),
            reason,
        })?;
        let zone = match &spec.time_zone {
            None => TimeZone::UTC,
            Some(name) => validate::parse_time_zone(name).map_err(|_| Error::TimeZone {
                schedule: spec.name.clone(),
                zone: name.clone(),
            })?,
        };
        let window = validate::parse_window(spec.window.as_deref().unwrap_or(DEFAULT_WINDOW))
            .map_err(|reason| Error::Window {
                schedule: spec.name.clone(),
                reason,
            })?;
        Ok(Self {
            name: spec.name.clone(),
            action: spec.action,
            track: spec.track,
            catch_up: spec.catch_up,
            window,
            cron,
            zone,
            source: spec.clone(),
        })
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The first instant strictly after `ts`; `None` if the expression never matches again.
    pub fn next_after(&self, ts: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&ts.to_zoned(self.zone.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The first instant at or after `ts`.
    pub fn next_from(&self, ts: Timestamp) -> Option<Timestamp> {
        // Instants fall on whole seconds: searching after the nanosecond before `ts` includes
        // `ts` itself without croner's second-granular inclusive search landing before `ts`.
        let before = ts.checked_sub(SignedDuration::from_nanos(1)).ok()?;
        self.next_after(before)
    }

    /// The latest instant at or before `ts`.
    pub fn latest_at_or_before(&self, ts: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&ts.to_zoned(self.zone.clone()), true)
            .ok()
            .map(|z| z.timestamp())
            .filter(|t| *t <= ts)
    }

    /// Whether `other` has the same instants (same expression and time zone).
    fn same_instants(&self, other: &Schedule) -> bool {
        self.source.cron == other.source.cron && self.source.time_zone == other.source.time_zone
    }
}

/// What a schedule calls for at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Start the schedule's action now.
    pub run: Option<Run>,
    /// Instants that passed without a run and will not get one, by reason, oldest first.
    pub missed: Vec<Missed>,
    /// The latest instant at or before `now`, when any was pending: everything up to it is now
    /// decided. The daemon stores it and passes it back as `last`.
    pub decided: Option<Timestamp>,
    /// More than [`PENDING_LIMIT`] instants were pending; only the oldest of them and the latest
    /// are listed.
    pub truncated: bool,
    /// The schedule's next instant after `now`.
    pub next: Option<Timestamp>,
}

/// A run to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The instant the run is for.
    pub instant: Timestamp,
    pub kind: RunKind,
    /// The run should not start after this (the instant plus the schedule's window); `None`
    /// for a catch-up run, which is late by nature.
    pub start_by: Option<Timestamp>,
    /// Earlier pending instants this run stands for, oldest first.
    pub coalesced: Vec<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// The daemon was running at the instant, and it is within the window.
    OnTime,
    /// The daemon was down at the instant and the schedule says `catchUp: true`.
    CatchUp,
}

/// Instants that will not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub reason: MissReason,
    pub instants: Vec<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReason {
    /// The daemon was not running at these instants, or its spec did not have the schedule
    /// yet (and the schedule does not catch up).
    DaemonDown,
    /// The daemon was running, but the run could not start within the schedule's window.
    OutsideWindow,
}

/// Decide what `schedule` calls for at `now`.
///
/// `last` is the latest instant already decided, as stored from an earlier
/// [`Decision::decided`]; `None` for a schedule with no history, which then counts from
/// `daemon_started` (inclusive). Instants before `daemon_started` passed while the daemon was
/// down (the [`Scheduler`] passes when it started serving the schedule). Pure: the same
/// arguments always give the same decision.
pub fn due(
    schedule: &Schedule,
    last: Option<Timestamp>,
    daemon_started: Timestamp,
    now: Timestamp,
) -> Decision {
    let (pending, truncated) = pending(schedule, last, daemon_started, now);
    let next = schedule.next_after(last.map_or(now, |l| l.max(now)));
    let Some(&latest) = pending.last() else {
        return Decision {
            run: None,
            missed: Vec::new(),
            decided: None,
            truncated: false,
            next,
        };
    };
    let (down, up): (Vec<Timestamp>, Vec<Timestamp>) =
        pending.iter().partition(|i| **i < daemon_started);
    let start_by = |i: Timestamp| i.checked_add(schedule.window).unwrap_or(Timestamp::MAX);
    let on_time = up.last().copied().filter(|i| now <= start_by(*i));

    let mut missed = Vec::new();
    if !down.is_empty() && !schedule.catch_up {
        missed.push(Missed {
            reason: MissReason::DaemonDown,
            instants: down.clone(),
        });
    }
    let run = if let Some(instant) = on_time {
        let mut coalesced: Vec<Timestamp> = if schedule.catch_up { down } else { Vec::new() };
        coalesced.extend(up.iter().copied().filter(|i| *i != instant));
        Some(Run {
            instant,
            kind: RunKind::OnTime,
            start_by: Some(start_by(instant)),
            coalesced,
        })
    } else {
        if !up.is_empty() {
            missed.push(Missed {
                reason: MissReason::OutsideWindow,
                instants: up,
            });
        }
        match down.split_last() {
            Some((&instant, earlier)) if schedule.catch_up => Some(Run {
                instant,
                kind: RunKind::CatchUp,
                start_by: None,
                coalesced: earlier.to_vec(),
            }),
            _ => None,
        }
    };
    Decision {
        run,
        missed,
        decided: Some(latest),
        truncated,
        next,
    }
}

/// The instants after `last` (or from `daemon_started`) up to `now`, oldest first, and whether
/// the list stopped at [`PENDING_LIMIT`] (then the latest instant is appended).
fn pending(
    schedule: &Schedule,
    last: Option<Timestamp>,
    daemon_started: Timestamp,
    now: Timestamp,
) -> (Vec<Timestamp>, bool) {
    let mut pending = Vec::new();
    let mut cursor = match last {
        Some(l) => schedule.next_after(l),
        None => schedule.next_from(daemon_started),
    };
    while let Some(instant) = cursor.filter(|i| *i <= now) {
        if pending.len() == PENDING_LIMIT {
            if let Some(latest) = schedule
                .latest_at_or_before(now)
                .filter(|l| pending.last().is_none_or(|p| l > p))
            {
                pending.push(latest);
            }
            return (pending, true);
        }
        pending.push(instant);
        cursor = schedule.next_after(instant);
    }
    (pending, false)
}

/// Every schedule of every cluster the daemon serves, with how far each has been decided.
#[derive(Debug)]
pub struct Scheduler {
    started: Timestamp,
    entries: BTreeMap<(String, String), Entry>,
}

#[derive(Debug)]
struct Entry {
    schedule: Schedule,
    /// The latest decided instant.
    last: Option<Timestamp>,
    /// When the scheduler started serving the schedule: the daemon's start, or the schedule's
    /// appearance in a spec.
    since: Timestamp,
    /// The first instant not yet decided: the entry is polled when `now` reaches it.
    next: Option<Timestamp>,
}

impl Entry {
    fn new(schedule: Schedule, last: Option<Timestamp>, since: Timestamp) -> Self {
        let next = match last {
            Some(l) => schedule.next_after(l),
            None => schedule.next_from(since),
        };
        Self {
            schedule,
            last,
            since,
            next,
        }
    }
}

/// What one poll found for one schedule: a run to start, instants to report, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub cluster: String,
    pub schedule: String,
    pub action: ScheduleAction,
    pub track: Option<Track>,
    /// Its `decided` is what the daemon stores for this schedule.
    pub decision: Decision,
}

/// Where a schedule stands, for status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upcoming {
    pub cluster: String,
    pub schedule: String,
    pub last: Option<Timestamp>,
    pub next: Option<Timestamp>,
}

impl Scheduler {
    /// A scheduler for a daemon that started at `daemon_started`: instants before it passed
    /// while the daemon was down.
    pub fn new(daemon_started: Timestamp) -> Self {
        Self {
            started: daemon_started,
            entries: BTreeMap::new(),
        }
    }

    /// Set a cluster's schedules from its spec, replacing what it had. `stored` maps schedule
    /// names to the instants the daemon stored for them ([`Decision::decided`]). A schedule the
    /// scheduler already knows keeps its progress, unless its cron expression or time zone
    /// changed: then it counts from `now`. A schedule new to the scheduler counts from its
    /// stored instant, the instants from there to `now` having passed while it was not served
    /// (reported, or caught up), or from `now` when nothing is stored.
    pub fn set_cluster(
        &mut self,
        cluster: &str,
        schedules: &[types::Schedule],
        stored: &BTreeMap<String, Timestamp>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let parsed = schedules
            .iter()
            .map(Schedule::from_spec)
            .collect::<Result<Vec<_>, _>>()?;
        let keys: Vec<(String, String)> = self
            .entries
            .keys()
            .filter(|(c, _)| c == cluster)
            .cloned()
            .collect();
        let mut old: BTreeMap<String, Entry> = BTreeMap::new();
        for key in keys {
            if let Some(entry) = self.entries.remove(&key) {
                old.insert(key.1, entry);
            }
        }
        let since = now.max(self.started);
        for schedule in parsed {
            let key = (cluster.to_string(), schedule.name.clone());
            let entry = match old.remove(&schedule.name) {
                Some(e) if e.schedule.same_instants(&schedule) => {
                    Entry::new(schedule, e.last, e.since)
                }
                Some(_) => Entry::new(schedule, None, since),
                None => {
                    let last = stored.get(&key.1).copied();
                    Entry::new(schedule, last, since)
                }
            };
            self.entries.insert(key, entry);
        }
        Ok(())
    }

    /// Forget a cluster's schedules (its spec is gone).
    pub fn remove_cluster(&mut self, cluster: &str) {
        self.entries.retain(|(c, _), _| c != cluster);
    }

    /// Decide every schedule with an instant at or before `now`.
    pub fn poll(&mut self, now: Timestamp) -> Vec<Fire> {
        let mut fires = Vec::new();
        for ((cluster, name), entry) in &mut self.entries {
            if entry.next.is_none_or(|n| n > now) {
                continue;
            }
            // Instants before the schedule was served (the daemon's start, or its appearance
            // in a spec later) passed while nothing was running it.
            let decision = due(&entry.schedule, entry.last, entry.since, now);
            entry.next = decision.next;
            if let Some(decided) = decision.decided {
                entry.last = Some(decided);
                fires.push(Fire {
                    cluster: cluster.clone(),
                    schedule: name.clone(),
                    action: entry.schedule.action,
                    track: entry.schedule.track,
                    decision,
                });
            }
        }
        fires
    }

    /// The earliest instant any schedule waits for; `None` when no schedule will fire again.
    /// After [`poll`](Self::poll)`(now)` it is later than `now`.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.entries.values().filter_map(|e| e.next).min()
    }

    /// How long to sleep from `now` before polling again: until [`next_wake`](Self::next_wake),
    /// at most [`MAX_SLEEP`], zero when it has passed.
    pub fn sleep_for(&self, now: Timestamp) -> Duration {
        let Some(wake) = self.next_wake() else {
            return MAX_SLEEP;
        };
        let until = now.duration_until(wake);
        if until.is_negative() {
            return Duration::ZERO;
        }
        Duration::try_from(until)
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    /// Every schedule with its last decided and next instant, by cluster and name.
    pub fn upcoming(&self) -> Vec<Upcoming> {
        self.entries
            .iter()
            .map(|((cluster, schedule), e)| Upcoming {
                cluster: cluster.clone(),
                schedule: schedule.clone(),
                last: e.last,
                next: e.next,
            })
            .collect()
    }
}
