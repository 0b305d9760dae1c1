//! Operations: what a user (or, later, the daemon) asks paddock to do to a cluster. Each one
//! takes its context (drivers, timeouts, cancellation, state directory) and the event sink,
//! and returns a typed report; none prints, reads the environment or picks an exit code — the
//! CLI does that.
//!
//! Uses: `engine` (steps, journal, locks, events), `plan`, `mesh`, `spec`, `drivers`.

pub mod access;
mod context;
pub mod doctor;
pub mod open;
pub mod outcome;
pub mod restart;
pub mod status;
pub mod tags;
pub mod tools;
pub mod up;
pub mod upgrade;

pub use context::Context;
