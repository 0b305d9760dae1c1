//! The `schedules` of a cluster: unique names, five-field cron expressions, IANA time zones,
//! windows, and `track` only where it can work.

use std::collections::BTreeSet;
use std::str::FromStr;

use super::super::error::{Anchor, Diagnostic, suggest_with};
use super::super::types::{Body, ScheduleAction};
use super::super::yaml::Located;
use super::{at, parse_duration};

/// Parse a five-field crontab expression.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!("expected 5 fields, found {fields}"));
    }
    croner::Cron::from_str(expr).map_err(|e| e.to_string())
}

/// Look up an IANA time zone (`Europe/Berlin`) in the system's time zone database, or in the
/// copy built into paddock when the system has none. The error is the help text: the closest
/// known name, or how to write one.
pub fn parse_time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    let db = jiff::tz::db();
    db.get(name).map_err(|_| {
        let known: Vec<String> = db.available().map(|n| n.to_string()).collect();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        suggest_with(name, &known, |_| {
            "use an IANA time zone name such as `Europe/Berlin`, `America/New_York` or `UTC`"
                .to_string()
        })
    })
}

/// Parse a schedule's `window`: a duration longer than zero.
pub fn parse_window(text: &str) -> Result<jiff::SignedDuration, String> {
    let window = parse_duration(text)?;
    if window.is_zero() {
        return Err(format!(
            "`{text}` leaves no time to start a run; write e.g. `15m` or `2h`"
        ));
    }
    Ok(window)
}

pub(super) fn schedules(body: &Body, doc: &Located, problems: &mut Vec<Diagnostic>) {
    let mut names = BTreeSet::new();
    for (i, s) in body.schedules.iter().enumerate() {
        let field = |name: &str| format!("schedules[{i}].{name}");
        if !names.insert(&s.name) {
            problems.push(
                at(
                    doc,
                    &field("name"),
                    Anchor::Value,
                    format!("duplicate schedule `{}`", s.name),
                )
                .with_help("give each schedule a unique name"),
            );
        }
        if let Err(e) = parse_cron(&s.cron) {
            problems.push(at(doc, &field("cron"), Anchor::Value, format!("invalid cron expression `{}`: {e}", s.cron))
                .with_help("use five fields: minute hour day-of-month month day-of-week (Sunday = 0), e.g. `0 3 * * 6`"));
        }
        if let Some(zone) = &s.time_zone
            && let Err(help) = parse_time_zone(zone)
        {
            problems.push(
                at(
                    doc,
                    &field("timeZone"),
                    Anchor::Value,
                    format!("unknown time zone `{zone}`"),
                )
                .with_help(help),
            );
        }
        if let Some(window) = &s.window
            && let Err(help) = parse_window(window)
        {
            problems
                .push(at(doc, &field("window"), Anchor::Value, "invalid window").with_help(help));
        }
        if s.track.is_some() {
            let problem = if s.action != ScheduleAction::Upgrade {
                Some((
                    "`track` applies only to `action: upgrade`",
                    "remove `track`, or make the schedule's action `upgrade`",
                ))
            } else {
                match &body.istio {
                    None => Some((
                        "`track: patch` needs an `istio` section to track",
                        "pin the minor to track with `istio.version`, or remove `track`",
                    )),
                    Some(istio) if istio.repo.starts_with("oci://") => Some((
                        "`track: patch` reads the chart repository's `index.yaml`, which an oci:// repository does not have",
                        "point `istio.repo` at the https:// chart repository, or remove `track`",
                    )),
                    Some(_) => None,
                }
            };
            if let Some((message, help)) = problem {
                problems.push(at(doc, &field("track"), Anchor::Key, message).with_help(help));
            }
        }
    }
}
