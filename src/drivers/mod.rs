//! Drivers: the outside world paddock talks to, each behind a typed interface — commands as
//! values with one way to run them (`exec`), the `k3d` and `helm` command lines, the Kubernetes
//! API (`kube`), the Docker engine, which tools are on this machine (`toolchain`), downloading k3d and helm when missing
//! (`provision`, over `http`).
//!
//! Uses: the value types of `spec` and `plan` (what a driver is asked to create) and `mesh`'s
//! reading of webhooks; never `ops`, `engine` or `cli`. JSON from the tools becomes typed values
//! here.

pub mod docker;
pub mod exec;
pub mod helm;
pub mod http;
pub mod k3d;
pub mod kube;
pub mod provision;
pub mod toolchain;
