//! `paddock serve`: the daemon that keeps clusters in line with their repository. It sits on
//! top of `ops` and `engine` — it runs the same operations the CLI runs, with its own event
//! sinks (the API's streams, the logs) — and adds what only a long-running process needs:
//! sources it follows, schedules, an API on a unix socket, metrics.
//!
//! Uses: `ops`, `engine`, `plan`, `spec`, `drivers`; never `cli`.

pub mod api;
pub mod backend;
pub mod client;
pub mod config;
pub mod core;
pub mod instance;
pub mod metrics;
pub mod model;
pub mod schedule;
pub mod serve;
pub mod source;
pub mod timetable;
