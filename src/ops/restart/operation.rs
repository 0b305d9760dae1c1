//! The restart operation as the CLI and the daemon ask for it: under the cluster's lock,
//! journaled (started with its options, then done with its report, or failed with its error).

use serde_json::json;

use super::{Error, Options, Report, run_until};
use crate::engine::chain;
use crate::ops::Context;
use crate::ops::up::connect_owned;

/// Restart the workloads of `cluster` that `opts` chooses.
pub async fn execute(cx: &Context, cluster: &str, opts: &Options) -> Result<Report, Error> {
    let journal = cx.journal(cluster)?;
    let op = cx.operation_id("restart");
    let (_lock, c) = connect_owned(&cx.tools, cluster, "restart")
        .await
        .map_err(|e| Error::Connect(Box::new(e)))?;
    journal.record(
        &op,
        "op-started",
        None,
        json!({"namespaces": opts.namespaces, "staleOnly": opts.stale_only}),
    )?;
    match run_until(&c.kube, opts, &cx.events, &cx.cancel).await {
        Ok(report) => {
            let event = if report.not_started.is_empty() {
                "op-done"
            } else {
                "op-interrupted"
            };
            journal.record(
                &op,
                event,
                None,
                serde_json::to_value(&report).unwrap_or_default(),
            )?;
            Ok(report)
        }
        Err(e) => {
            // The failure is what the user needs to hear; a journal that cannot say so too
            // is secondary.
            let _ = journal.record(&op, "op-failed", None, json!({"error": chain(&e)}));
            Err(e)
        }
    }
}
