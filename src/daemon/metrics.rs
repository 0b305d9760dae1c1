//! Placeholder until the metrics module lands.
use std::time::Duration;
#[derive(Debug, Default)]
pub struct Metrics;
impl Metrics {
    pub fn new() -> Self {
        Self
    }
    pub fn source_commit(&self, _c: &str, _t: jiff::Timestamp) {}
    pub fn operation_started(&self, _k: &str, _c: &str) {}
    pub fn operation_finished(&self, _k: &str, _c: &str, _s: &str, _d: Duration) {}
    pub fn step(&self, _s: &str, _d: Duration) {}
    pub fn drift(&self, _c: &str, _n: usize) {}
    pub fn next_schedule(&self, _c: &str, _s: &str, _t: jiff::Timestamp) {}
    pub fn encode(&self) -> String {
        String::new()
    }
}
