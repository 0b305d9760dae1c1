use super::*;

use crate::engine::clock::{Clock, ManualClock};

fn t(text: &str) -> Timestamp {
    text.parse().expect("a timestamp")
}

fn ts(texts: &[&str]) -> Vec<Timestamp> {
    texts.iter().map(|s| t(s)).collect()
}

/// A spec schedule with the given cron expression, built up by the methods below.
fn spec(cron: &str) -> types::Schedule {
    types::Schedule {
        name: "nightly".into(),
        cron: cron.into(),
        action: ScheduleAction::Reconcile,
        time_zone: None,
        catch_up: false,
        window: None,
        track: None,
    }
}

trait SpecExt {
    fn named(self, name: &str) -> Self;
    fn zone(self, zone: &str) -> Self;
    fn catch_up(self) -> Self;
    fn window(self, window: &str) -> Self;
    fn build(&self) -> Schedule;
}

impl SpecExt for types::Schedule {
    fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
    fn zone(mut self, zone: &str) -> Self {
        self.time_zone = Some(zone.into());
        self
    }
    fn catch_up(mut self) -> Self {
        self.catch_up = true;
        self
    }
    fn window(mut self, window: &str) -> Self {
        self.window = Some(window.into());
        self
    }
    fn build(&self) -> Schedule {
        Schedule::from_spec(self).expect("a valid schedule")
    }
}

/// The schedule's instants after `from`, up to and including `to`.
fn instants(s: &Schedule, from: &str, to: &str) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut cursor = s.next_after(t(from));
    while let Some(i) = cursor.filter(|i| *i <= t(to)) {
        out.push(i);
        cursor = s.next_after(i);
    }
    out
}

// Time zones and daylight saving time.

#[test]
fn without_a_time_zone_the_cron_fields_are_utc() {
    let s = spec("0 3 * * *").build();
    assert_eq!(
        s.next_after(t("2026-03-28T12:00:00Z")),
        Some(t("2026-03-29T03:00:00Z"))
    );
}

#[test]
fn a_daily_run_in_berlin_on_the_spring_forward_day_runs_when_the_clock_jumps() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    let s = spec("30 2 * * *").zone("Europe/Berlin").build();
    assert_eq!(
        instants(&s, "2026-03-27T12:00:00Z", "2026-03-30T12:00:00Z"),
        ts(&[
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 03:00 CEST, the first instant after the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ])
    );
}

#[test]
fn a_daily_run_in_berlin_on_the_fall_back_day_runs_once() {
    // 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice that day.
    let s = spec("30 2 * * *").zone("Europe/Berlin").build();
    assert_eq!(
        instants(&s, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
        ts(&[
            "2026-10-25T00:30:00Z", // 02:30 CEST, the first of the two
            "2026-10-26T01:30:00Z", // 02:30 CET
        ])
    );
    // Deciding from inside the repeated hour does not find the second 02:30 either.
    assert_eq!(
        s.next_after(t("2026-10-25T01:10:00Z")), // 02:10 CET, the second pass
        Some(t("2026-10-26T01:30:00Z"))
    );
}

#[test]
fn a_daily_run_in_new_york_across_both_changes() {
    let s = spec("30 2 * * *").zone("America/New_York").build();
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    assert_eq!(
        instants(&s, "2026-03-07T00:00:00Z", "2026-03-09T12:00:00Z"),
        ts(&[
            "2026-03-07T07:30:00Z", // 02:30 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT
            "2026-03-09T06:30:00Z", // 02:30 EDT
        ])
    );
    // 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
    let s = spec("30 1 * * *").zone("America/New_York").build();
    assert_eq!(
        instants(&s, "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z"),
        ts(&[
            "2026-11-01T05:30:00Z", // 01:30 EDT, once
            "2026-11-02T06:30:00Z", // 01:30 EST
        ])
    );
}

#[test]
fn an_hourly_run_keeps_its_spacing_in_elapsed_time_across_both_changes() {
    let s = spec("0 * * * *").zone("Europe/Berlin").build();
    // Spring forward: local 01:00 CET, then 03:00 CEST — an hour apart.
    assert_eq!(
        instants(&s, "2026-03-28T23:30:00Z", "2026-03-29T01:30:00Z"),
        ts(&["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"])
    );
    // Fall back: 02:00 CEST and 02:00 CET both run.
    assert_eq!(
        instants(&s, "2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z"),
        ts(&[
            "2026-10-25T00:00:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T02:00:00Z"
        ])
    );
}

// Crontab's day fields.

#[test]
fn sunday_is_zero_and_seven_as_in_crontab() {
    // 2026-03-23 is a Monday; 2026-03-29 a Sunday.
    for cron in ["0 3 * * 0", "0 3 * * 7", "0 3 * * SUN", "0 3 * * 6-7"] {
        let s = spec(cron).build();
        let sunday = s.next_after(t("2026-03-28T12:00:00Z"));
        assert_eq!(sunday, Some(t("2026-03-29T03:00:00Z")), "{cron}");
    }
    let monday = spec("0 3 * * 1").build();
    assert_eq!(
        monday.next_after(t("2026-03-23T12:00:00Z")),
        Some(t("2026-03-30T03:00:00Z"))
    );
    let weekdays = spec("0 3 * * 1-5").build();
    assert_eq!(
        weekdays.next_after(t("2026-03-27T12:00:00Z")), // a Friday
        Some(t("2026-03-30T03:00:00Z"))
    );
}

#[test]
fn day_of_month_and_day_of_week_together_match_either_as_in_crontab() {
    // Fridays, and the 13th (a Monday in April 2026).
    let s = spec("0 3 13 * 5").build();
    assert_eq!(
        instants(&s, "2026-04-01T00:00:00Z", "2026-04-18T00:00:00Z"),
        ts(&[
            "2026-04-03T03:00:00Z",
            "2026-04-10T03:00:00Z",
            "2026-04-13T03:00:00Z",
            "2026-04-17T03:00:00Z",
        ])
    );
}

// Deciding: missed runs, catch-up, the window.

const STARTED_AFTER_TWO_NIGHTS: &str = "2026-05-03T10:00:00Z";

/// The daemon ran the 1 May 03:00 run, stopped, and started again on 3 May at 10:00: the
/// instants of 2 and 3 May passed while it was down.
fn down_across_two_instants(s: &Schedule) -> Decision {
    let started = t(STARTED_AFTER_TWO_NIGHTS);
    due(s, Some(t("2026-05-01T03:00:00Z")), started, started)
}

#[test]
fn runs_missed_while_the_daemon_was_down_are_reported_not_run() {
    let d = down_across_two_instants(&spec("0 3 * * *").build());
    assert_eq!(d.run, None);
    assert_eq!(
        d.missed,
        vec![Missed {
            reason: MissReason::DaemonDown,
            instants: ts(&["2026-05-02T03:00:00Z", "2026-05-03T03:00:00Z"]),
        }]
    );
    assert_eq!(d.decided, Some(t("2026-05-03T03:00:00Z")));
    assert_eq!(d.next, Some(t("2026-05-04T03:00:00Z")));
}

#[test]
fn with_catch_up_the_missed_instants_get_one_run() {
    let d = down_across_two_instants(&spec("0 3 * * *").catch_up().build());
    assert_eq!(
        d.run,
        Some(Run {
            instant: t("2026-05-03T03:00:00Z"),
            kind: RunKind::CatchUp,
            start_by: None,
            coalesced: ts(&["2026-05-02T03:00:00Z"]),
        })
    );
    assert_eq!(d.missed, vec![]);
    assert_eq!(d.decided, Some(t("2026-05-03T03:00:00Z")));
}

#[test]
fn a_decided_instant_is_neither_run_nor_reported_again_after_a_restart() {
    for s in [
        spec("0 3 * * *").build(),
        spec("0 3 * * *").catch_up().build(),
    ] {
        let first = down_across_two_instants(&s);
        // The daemon stored `decided`, then restarted an hour later.
        let restarted = t("2026-05-03T11:00:00Z");
        let again = due(&s, first.decided, restarted, restarted);
        assert_eq!(
            (again.run, again.missed, again.decided),
            (None, vec![], None)
        );
        assert_eq!(again.next, Some(t("2026-05-04T03:00:00Z")));
    }
}

#[test]
fn a_run_starts_inside_its_window_and_is_reported_outside_it() {
    let started = t("2026-05-01T00:00:00Z");
    let last = Some(t("2026-05-01T03:00:00Z"));
    let instant = t("2026-05-02T03:00:00Z");
    let cases = [
        // (window, how late the daemon looks, runs)
        (None, "2026-05-02T03:00:00.2Z", true),
        (None, "2026-05-02T03:59:00Z", true),
        (None, "2026-05-02T04:00:00Z", true),
        (None, "2026-05-02T04:00:01Z", false),
        (Some("15m"), "2026-05-02T03:14:00Z", true),
        (Some("15m"), "2026-05-02T03:16:00Z", false),
    ];
    for (window, now, runs) in cases {
        let mut schedule = spec("0 3 * * *");
        if let Some(w) = window {
            schedule = schedule.window(w);
        }
        let s = schedule.build();
        let d = due(&s, last, started, t(now));
        let label = format!("window {window:?}, now {now}");
        assert_eq!(d.decided, Some(instant), "{label}");
        if runs {
            let run = d.run.expect(&label);
            assert_eq!(run.instant, instant, "{label}");
            assert_eq!(run.kind, RunKind::OnTime, "{label}");
            assert_eq!(run.start_by, instant.checked_add(s.window).ok(), "{label}");
            assert_eq!(d.missed, vec![], "{label}");
        } else {
            assert_eq!(d.run, None, "{label}");
            assert_eq!(
                d.missed,
                vec![Missed {
                    reason: MissReason::OutsideWindow,
                    instants: vec![instant],
                }],
                "{label}"
            );
        }
    }
}

#[test]
fn catch_up_is_not_bounded_by_the_window() {
    let d = down_across_two_instants(&spec("0 3 * * *").catch_up().window("5m").build());
    assert_eq!(d.run.map(|r| r.kind), Some(RunKind::CatchUp));
}

#[test]
fn several_instants_due_at_once_get_one_run_for_the_latest() {
    // The machine slept from 00:50 to 03:10 with the daemon running: three hourly instants.
    let s = spec("0 * * * *").window("3h").build();
    let d = due(
        &s,
        Some(t("2026-05-01T00:00:00Z")),
        t("2026-04-30T00:00:00Z"),
        t("2026-05-01T03:10:00Z"),
    );
    let run = d.run.expect("a run");
    assert_eq!(run.instant, t("2026-05-01T03:00:00Z"));
    assert_eq!(
        run.coalesced,
        ts(&["2026-05-01T01:00:00Z", "2026-05-01T02:00:00Z"])
    );
    assert_eq!(d.missed, vec![]);
}

#[test]
fn a_schedule_without_history_counts_from_the_daemon_start() {
    let s = spec("0 3 * * *").build();
    let started = t("2026-05-02T02:00:00Z");
    let early = due(&s, None, started, t("2026-05-02T02:30:00Z"));
    assert_eq!((early.run, early.decided), (None, None));
    assert_eq!(early.next, Some(t("2026-05-02T03:00:00Z")));
    let on_time = due(&s, None, started, t("2026-05-02T03:00:00Z"));
    assert_eq!(
        on_time.run.map(|r| r.instant),
        Some(t("2026-05-02T03:00:00Z"))
    );
    // Started exactly at an instant: that instant counts.
    let exact = due(
        &s,
        None,
        t("2026-05-02T03:00:00Z"),
        t("2026-05-02T03:00:01Z"),
    );
    assert_eq!(exact.decided, Some(t("2026-05-02T03:00:00Z")));
}

#[test]
fn a_long_outage_of_a_minutely_schedule_lists_a_bounded_number_of_instants() {
    let s = spec("* * * * *").build();
    let started = t("2026-05-10T00:00:30Z");
    let d = due(&s, Some(t("2026-05-01T00:00:00Z")), started, started);
    assert!(d.truncated);
    assert_eq!(d.decided, Some(t("2026-05-10T00:00:00Z")));
    let listed: usize = d.missed.iter().map(|m| m.instants.len()).sum();
    assert_eq!(listed, PENDING_LIMIT + 1);
    assert_eq!(d.next, Some(t("2026-05-10T00:01:00Z")));
}

// The scheduler over many clusters.

#[test]
fn the_scheduler_fires_each_instant_once_and_sleeps_until_the_next() {
    let clock = ManualClock::new(t("2026-04-30T23:50:00Z"));
    let mut scheduler = Scheduler::new(clock.now());
    let none = BTreeMap::new();
    scheduler
        .set_cluster(
            "dev",
            &[spec("0 3 * * *"), spec("*/30 * * * *").named("half-hourly")],
            &none,
            clock.now(),
        )
        .expect("valid");
    scheduler
        .set_cluster(
            "ci",
            &[spec("15 3 * * *").zone("Europe/Berlin")],
            &none,
            clock.now(),
        )
        .expect("valid");

    let mut wakes = 0;
    let mut fired: Vec<(String, String, Timestamp)> = Vec::new();
    while let Some(wake) = scheduler.next_wake() {
        if wake >= t("2026-05-02T00:00:00Z") {
            break;
        }
        assert!(wake > clock.now(), "wakes in the future, never busy");
        clock.set(wake);
        wakes += 1;
        for fire in scheduler.poll(clock.now()) {
            let run = fire.decision.run.expect("on time");
            assert_eq!(run.kind, RunKind::OnTime);
            assert!(fire.decision.missed.is_empty());
            fired.push((fire.cluster, fire.schedule, run.instant));
        }
    }
    // 48 half-hours, one 03:00 UTC and one 03:15 Berlin (01:15 UTC); 03:00 shares a wake.
    assert_eq!(fired.len(), 50);
    assert_eq!(wakes, 49);
    assert!(fired.contains(&(
        "ci".to_string(),
        "nightly".to_string(),
        t("2026-05-01T01:15:00Z")
    )));
    assert!(fired.contains(&(
        "dev".to_string(),
        "nightly".to_string(),
        t("2026-05-01T03:00:00Z")
    )));
}

#[test]
fn the_scheduler_sleeps_until_the_next_instant_at_most_a_minute_at_a_time() {
    let now = t("2026-05-01T02:59:30Z");
    let mut scheduler = Scheduler::new(now);
    scheduler
        .set_cluster("dev", &[spec("0 3 * * *")], &BTreeMap::new(), now)
        .expect("valid");
    assert_eq!(scheduler.sleep_for(now), Duration::from_secs(30));
    assert_eq!(scheduler.sleep_for(t("2026-05-01T01:00:00Z")), MAX_SLEEP);
    assert_eq!(
        scheduler.sleep_for(t("2026-05-01T03:00:01Z")),
        Duration::ZERO
    );
}

#[test]
fn the_scheduler_resumes_from_stored_instants_after_a_restart() {
    let started = t("2026-05-03T10:00:00Z");
    let mut scheduler = Scheduler::new(started);
    let stored = BTreeMap::from([("nightly".to_string(), t("2026-05-01T03:00:00Z"))]);
    scheduler
        .set_cluster("dev", &[spec("0 3 * * *")], &stored, started)
        .expect("valid");
    assert_eq!(scheduler.next_wake(), Some(t("2026-05-02T03:00:00Z")));
    let fires = scheduler.poll(started);
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].decision.run, None);
    assert_eq!(fires[0].decision.missed[0].reason, MissReason::DaemonDown);
    assert_eq!(fires[0].decision.decided, Some(t("2026-05-03T03:00:00Z")));
    assert!(scheduler.poll(started).is_empty());
    assert_eq!(scheduler.next_wake(), Some(t("2026-05-04T03:00:00Z")));
}

#[test]
fn a_schedule_added_or_changed_later_does_not_fire_for_instants_before_it() {
    let started = t("2026-05-01T00:00:00Z");
    let mut scheduler = Scheduler::new(started);
    let none = BTreeMap::new();
    scheduler
        .set_cluster("dev", &[], &none, started)
        .expect("valid");
    // Added at 03:30, half an hour after its 03:00 instant, inside the default window.
    let added = t("2026-05-01T03:30:00Z");
    scheduler
        .set_cluster("dev", &[spec("0 3 * * *")], &none, added)
        .expect("valid");
    assert!(scheduler.poll(added).is_empty());
    assert_eq!(scheduler.next_wake(), Some(t("2026-05-02T03:00:00Z")));

    // Changed to 02:00 at 02:30 the next day: the old progress no longer applies.
    let changed = t("2026-05-02T02:30:00Z");
    scheduler
        .set_cluster("dev", &[spec("0 2 * * *")], &none, changed)
        .expect("valid");
    assert!(scheduler.poll(changed).is_empty());
    assert_eq!(scheduler.next_wake(), Some(t("2026-05-03T02:00:00Z")));

    // A window change keeps the progress.
    scheduler
        .set_cluster("dev", &[spec("0 2 * * *").window("2h")], &none, changed)
        .expect("valid");
    assert_eq!(scheduler.next_wake(), Some(t("2026-05-03T02:00:00Z")));

    scheduler.remove_cluster("dev");
    assert_eq!(scheduler.next_wake(), None);
}

#[test]
fn a_fire_carries_the_action_and_track_of_its_schedule() {
    let started = t("2026-05-01T00:00:00Z");
    let mut scheduler = Scheduler::new(started);
    let mut upgrade = spec("0 3 * * 6").named("weekly-upgrade");
    upgrade.action = ScheduleAction::Upgrade;
    upgrade.track = Some(Track::Patch);
    scheduler
        .set_cluster("dev", &[upgrade], &BTreeMap::new(), started)
        .expect("valid");
    let wake = scheduler.next_wake().expect("a wake");
    assert_eq!(wake, t("2026-05-02T03:00:00Z")); // a Saturday
    let fires = scheduler.poll(wake);
    assert_eq!(fires.len(), 1);
    assert_eq!(
        (fires[0].action, fires[0].track),
        (ScheduleAction::Upgrade, Some(Track::Patch))
    );
}

#[test]
fn the_database_built_in_for_machines_without_one_knows_the_daylight_saving_rules() {
    let bundled = jiff::tz::TimeZoneDatabase::bundled();
    let mut s = spec("30 2 * * *").zone("Europe/Berlin").build();
    s.zone = bundled.get("Europe/Berlin").expect("Berlin is bundled");
    assert_eq!(
        s.next_after(t("2026-03-28T12:00:00Z")),
        Some(t("2026-03-29T01:00:00Z"))
    );
    let mut s = spec("30 1 * * *").zone("America/New_York").build();
    s.zone = bundled
        .get("America/New_York")
        .expect("New York is bundled");
    assert_eq!(
        s.next_after(t("2026-10-31T12:00:00Z")),
        Some(t("2026-11-01T05:30:00Z"))
    );
}

#[test]
fn invalid_specs_are_errors_not_panics() {
    let mut bad = spec("0 3 * *");
    assert!(matches!(Schedule::from_spec(&bad), Err(Error::Cron { .. })));
    bad = spec("0 3 * * *").zone("Mars/Olympus");
    assert!(matches!(
        Schedule::from_spec(&bad),
        Err(Error::TimeZone { .. })
    ));
    bad = spec("0 3 * * *").window("0s");
    assert!(matches!(
        Schedule::from_spec(&bad),
        Err(Error::Window { .. })
    ));
}

#[test]
fn a_schedule_served_again_reports_what_passed_while_it_was_gone() {
    let started = t("2026-05-01T00:00:00Z");
    let mut scheduler = Scheduler::new(started);
    // Removed from the spec after its 1 May run, back on 3 May at 10:00.
    let stored = BTreeMap::from([("nightly".to_string(), t("2026-05-01T03:00:00Z"))]);
    let back = t("2026-05-03T10:00:00Z");
    scheduler
        .set_cluster("dev", &[spec("0 3 * * *")], &stored, back)
        .expect("valid");
    let fires = scheduler.poll(back);
    assert_eq!(fires.len(), 1);
    assert_eq!(fires[0].decision.run, None);
    assert_eq!(
        fires[0].decision.missed,
        vec![Missed {
            reason: MissReason::DaemonDown,
            instants: ts(&["2026-05-02T03:00:00Z", "2026-05-03T03:00:00Z"]),
        }]
    );
}
