//! Helm releases as values: what paddock installs, with which chart, version and values.

use serde::Serialize;
use serde_json::Value;

use crate::spec::types::Addon;

pub mod cli;

/// One Helm release paddock manages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub repo: String,
    pub chart: String,
    pub version: String,
    pub values: Value,
}

impl Release {
    pub fn new(
        name: &str,
        namespace: &str,
        repo: &str,
        chart: &str,
        version: &str,
        values: Value,
    ) -> Self {
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            repo: repo.to_string(),
            chart: chart.to_string(),
            version: version.to_string(),
            values,
        }
    }
}

/// The release an addon installs.
pub fn addon_release(addon: &Addon) -> Release {
    Release::new(
        addon.release_name(),
        &addon.namespace,
        &addon.chart.repo,
        &addon.chart.name,
        &addon.chart.version,
        Value::Object(addon.values.clone()),
    )
}
