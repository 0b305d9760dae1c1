//! `cargo bench --bench up`: paddock's `up` against the sim (clusters as local processes).
//!
//! 1. A no-op `up` on a converged cluster: wall time over 20 runs, API requests and mutating
//!    requests per run (target: under 1 s, zero mutating calls).
//! 2. `up` from nothing of the `dev` cluster (Istio + four addons) with the sim's realistic
//!    latencies and the real helm and charts (no latency added to helm): wall time, the critical path through the step DAG, and the sum of all step
//!    times (what running the steps one by one would take).
//!
//! Prints numbers; asserts nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{World, result};

fn main() {
    let w = World::new(false);
    let out = w.paddock(&["up", "ci", "-o", "json"]);
    assert_eq!(result(&out)["ok"], true, "{}", support::stderr(&out));
    let mut walls = Vec::new();
    let (mut requests, mut mutating) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let (before, mut_before) = w.requests("ci");
        let t = Instant::now();
        let out = w.paddock(&["up", "ci", "-o", "json"]);
        walls.push(t.elapsed());
        assert_eq!(result(&out)["upToDate"], true);
        let (after, mut_after) = w.requests("ci");
        requests.push(after - before);
        mutating.push(mut_after.len() - mut_before.len());
    }
    walls.sort();
    println!(
        "no-op up (ci): median {:.0} ms, p90 {:.0} ms, max {:.0} ms over 20 runs; {} API requests and {} mutating requests per run",
        ms(walls[10]),
        ms(walls[18]),
        ms(walls[19]),
        requests[0],
        mutating.iter().max().copied().unwrap_or(0)
    );
    let helm_tool_runs = w
        .invocations()
        .iter()
        .rev()
        .take(4)
        .map(|i| format!("{} {}", i.tool, i.args.first().cloned().unwrap_or_default()))
        .collect::<Vec<_>>();
    println!("  tool runs of the last no-op: {helm_tool_runs:?}");

    for run in 1..=2 {
        let w = World::new(false);
        // Realistic nodes, pods and k3d; the real helm takes its own time, so none is added.
        let mut knobs = paddock_sim::knobs::Knobs::realistic();
        if w.real_helm.is_some() {
            knobs.tool_latency_ms.remove("helm");
        }
        w.set_knobs(&knobs);
        let t = Instant::now();
        let out = w.paddock(&["up", "dev", "-o", "json"]);
        let wall = t.elapsed();
        let r = result(&out);
        assert_eq!(r["ok"], true, "{}", support::stderr(&out));
        println!(
            "up from nothing (dev, realistic latencies, run {run}): wall {:.1} s, of which paddock's run (observing steps and the plan's steps) {:.1} s; critical path {:.1} s; sum of step times {:.1} s ({} planned steps, {:.1}x from running independent steps together)",
            wall.as_secs_f64(),
            r["wallMs"].as_f64().unwrap_or(0.0) / 1000.0,
            r["criticalPathMs"].as_f64().unwrap_or(0.0) / 1000.0,
            r["sumMs"].as_f64().unwrap_or(0.0) / 1000.0,
            r["stepsRun"],
            r["sumMs"].as_f64().unwrap_or(0.0) / r["wallMs"].as_f64().unwrap_or(1.0).max(1.0)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
