//! `paddock.yaml`'s `serve:` section, and the same checks for the daemon's flags and
//! `PADDOCK_*` variables: each value parsed here, or refused with what to use instead.

use std::net::SocketAddr;
use std::time::Duration;

use super::super::error::{Anchor, Diagnostic};
use super::super::types::{ServeMode, ServeSettings};
use super::super::yaml::Located;
use super::{at, parse_duration};

/// How often a git source is fetched: a duration of at least 100 ms.
pub fn poll_interval(text: &str) -> Result<Duration, &'static str> {
    parse_duration(text)
        .ok()
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| *d >= Duration::from_millis(100))
        .ok_or("use a duration of at least 100ms, such as `30s` or `5m`")
}

pub fn mode(text: &str) -> Result<ServeMode, &'static str> {
    match text {
        "apply" => Ok(ServeMode::Apply),
        "report" => Ok(ServeMode::Report),
        _ => {
            Err("use `apply` (apply what `up` would change) or `report` (only report it as drift)")
        }
    }
}

/// Where metrics are also served: a loopback address and port.
pub fn metrics_address(text: &str) -> Result<SocketAddr, &'static str> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| "use an address and port, such as `127.0.0.1:9464`")?;
    if !addr.ip().is_loopback() {
        return Err("metrics are served on loopback only; use 127.0.0.1 or [::1]");
    }
    Ok(addr)
}

/// A git branch or remote given on the command line must not read as an option.
pub fn not_an_option(text: &str) -> Result<(), &'static str> {
    if text.is_empty() || text.starts_with('-') {
        return Err("give a name that does not start with `-`");
    }
    Ok(())
}

/// The `serve:` section of `paddock.yaml`, located.
pub(in crate::spec) fn settings(doc: &Located, s: &ServeSettings, problems: &mut Vec<Diagnostic>) {
    let mut check =
        |field: &str, value: Option<&String>, f: &dyn Fn(&str) -> Result<(), &'static str>| {
            if let Some(v) = value
                && let Err(help) = f(v)
            {
                problems.push(
                    at(
                        doc,
                        &format!("serve.{field}"),
                        Anchor::Value,
                        format!("invalid {field} `{v}`"),
                    )
                    .with_help(help),
                );
            }
        };
    check("pollInterval", s.poll_interval.as_ref(), &|v| {
        poll_interval(v).map(|_| ())
    });
    check("mode", s.mode.as_ref(), &|v| mode(v).map(|_| ()));
    check("metricsAddress", s.metrics_address.as_ref(), &|v| {
        metrics_address(v).map(|_| ())
    });
    check("branch", s.branch.as_ref(), &not_an_option);
    check("repo", s.repo.as_ref(), &not_an_option);
}
