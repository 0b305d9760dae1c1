//! paddock: source-controlled YAML → running k3d clusters with an Istio mesh.
//!
//! The folders are the layers, in the order data flows through them:
//!
//! - [`cli`]: arguments, rendering of events (terminal, plain lines, NDJSON), exit codes.
//! - [`daemon`]: `paddock serve` — what starts operations without a person typing a command
//!   (spec sources, schedules), over the same operations the CLI runs.
//! - [`spec`]: files → typed, merged, validated cluster specs with located errors.
//! - [`plan`]: pure planning — a spec and what was observed → a DAG of typed steps.
//! - [`ops`]: the operations (`up`, `down`, `upgrade`, `restart`, `status`, `doctor`), each an
//!   async function over a context and an event sink, returning a typed report.
//! - [`engine`]: what every operation runs on — the step runner, the journal, per-cluster locks,
//!   the events operations emit.
//! - [`mesh`]: Istio's rules — revisions, tags, injection resolution, staleness. Pure.
//! - [`drivers`]: the outside world — commands as values, k3d, helm, the Kubernetes API, Docker.
//!
//! A layer uses the layers below it in this list, never one above: `cli` uses `daemon` and
//! `ops`; `daemon` uses `ops`, `engine` and `spec`, and never `cli`; `ops` uses `engine`,
//! `mesh`, `plan`, `spec` and `drivers`; `engine` never uses `ops`, `daemon` or `cli`.
//! The one exception points at values, not actions: `drivers` take the value types of `spec`
//! and `plan` (a cluster's k3d config, a release, the in-cluster record) and `mesh`'s reading
//! of webhooks, and never use `ops`, `engine` or `cli`.

pub mod cli;
pub mod daemon;
pub mod drivers;
pub mod engine;
pub mod mesh;
pub mod ops;
pub mod plan;
pub mod spec;
