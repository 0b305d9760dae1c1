//! The engine every operation runs on: the journal that makes operations resumable, the
//! per-cluster locks that keep two of them apart, and the events they report.
//!
//! Uses: nothing above it; it is generic over what a step does.

pub mod journal;
pub mod lock;
