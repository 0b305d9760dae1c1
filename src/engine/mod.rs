//! The engine every operation runs on: the journal that makes operations resumable, the
//! per-cluster locks that keep two of them apart, and the events they report (`events`).
//!
//! Uses: nothing above it; it is generic over what a step does.

pub mod events;
pub mod journal;
pub mod lock;
