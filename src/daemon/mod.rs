//! `paddock serve`: the daemon layer, on top of [`crate::ops`] and [`crate::engine`]. It decides
//! when operations run (sources, schedules) and hands them to the same operations the CLI runs.

pub mod schedule;
