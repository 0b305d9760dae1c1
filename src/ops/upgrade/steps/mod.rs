//! What each upgrade step does, how it is re-checked and how it is undone: one file per
//! [`UpgradeStep`], holding both strategies' behaviour where they differ. What a step does in
//! words (the `--dry-run` text) is its `describe` in `plan::upgrade`.

mod base;
mod default_revision;
mod gateways;
mod istiod;
mod old_unused;
mod remove_old;
mod restart;
mod restart_canary;
mod save_values;
mod smoke;
mod tag_canary;
mod tags;
mod verify;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Ctx, Error};
use crate::plan::upgrade::UpgradeStep;

/// One step's behaviour. Futures are boxed so that the runner can hold any step as
/// `&dyn Step`.
pub(super) trait Step: Sync {
    /// Do the step. What it returns is journaled with `step-done`.
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<Value, Error>>;

    /// Is the step, journaled as done, still done? A killed upgrade resuming re-checks
    /// instead of redoing; `false` runs the step again. Steps that change nothing, or whose
    /// effect later steps already proved, trust the journal.
    fn check<'a>(&'a self, _ctx: &'a Ctx<'a>) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    /// Undo the step (also when it failed part-way). `Ok(false)`: it has nothing to undo.
    fn undo<'a>(&'a self, _ctx: &'a Ctx<'a>) -> BoxFuture<'a, Result<bool, Error>> {
        Box::pin(async { Ok(false) })
    }
}

/// The step id `step`'s events carry while it runs (`upgrade/istiod`), as the runner names it.
pub(super) fn run_id(step: UpgradeStep) -> String {
    format!("upgrade/{step}")
}

/// The step id `step`'s events carry while it is undone (`undo/istiod`).
pub(super) fn undo_id(step: UpgradeStep) -> String {
    format!("undo/{step}")
}

/// The behaviour of a step.
pub(super) fn of(step: UpgradeStep) -> &'static dyn Step {
    match step {
        UpgradeStep::SaveValues => &save_values::SaveValues,
        UpgradeStep::Base => &base::Base,
        UpgradeStep::Istiod => &istiod::Istiod,
        UpgradeStep::Smoke => &smoke::Smoke,
        UpgradeStep::TagCanary => &tag_canary::TagCanary,
        UpgradeStep::RestartCanary => &restart_canary::RestartCanary,
        UpgradeStep::Tags => &tags::Tags,
        UpgradeStep::Restart => &restart::Restart,
        UpgradeStep::Gateways => &gateways::Gateways,
        UpgradeStep::OldUnused => &old_unused::OldUnused,
        UpgradeStep::DefaultRevision => &default_revision::DefaultRevision,
        UpgradeStep::RemoveOld => &remove_old::RemoveOld,
        UpgradeStep::Verify => &verify::Verify,
    }
}
