//! paddock: source-controlled YAML → running k3d clusters with an Istio mesh.
//!
//! Data flows one way: [`spec`] (files → typed, validated, merged) → [`observe`] (what exists)
//! → [`plan`] (desired vs observed → a DAG of steps) → execution → drivers.

pub mod cli;
pub mod converge;
pub mod docker;
pub mod doctor;
pub mod exec;
pub mod execute;
pub mod helm;
pub mod istio;
pub mod journal;
pub mod k3d;
pub mod kubeapi;
pub mod lock;
pub mod mesh;
pub mod observe;
pub mod output;
pub mod plan;
pub mod restart;
pub mod spec;
pub mod status;
pub mod tags;
pub mod toolchain;
pub mod upgrade;
