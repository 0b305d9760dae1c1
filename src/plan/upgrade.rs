//! The pure part of an Istio upgrade (ISTIO.md, "Canary upgrade" and "In-place upgrade"):
//! which steps a strategy has, in which order, and what each one does and how it is undone,
//! in words. `paddock upgrade --dry-run` prints these values; `ops::upgrade` runs them (each
//! step's do, check and undo live in `ops/upgrade/steps/<step>.rs`) and journals them by
//! [`UpgradeStep::name`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::ClusterSpec;

/// How the control plane is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// A second revision beside the old one; tags move, workloads restart onto it.
    Canary,
    /// The one revision is upgraded where it stands (a revision name that keeps its version).
    InPlace,
}

/// What an upgrade is: persisted in the journal when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Params {
    pub strategy: Strategy,
    pub from: String,
    pub to: String,
    pub from_rev: String,
    /// The revision serving afterwards (= `from_rev` in place).
    pub to_rev: String,
    pub grace_secs: u64,
}

/// One step of an upgrade. The kebab-case name is what the journal records, so it never
/// changes: a journal written by an older paddock must still resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeStep {
    /// In place only: every release's values, journaled.
    SaveValues,
    /// The `istio-base` release (CRDs, the default validator).
    Base,
    /// The new istiod (canary) or the upgraded one (in place).
    Istiod,
    /// A probe pod injected by the new revision.
    Smoke,
    /// Tag `canary` moves to the new revision (only with canary namespaces).
    TagCanary,
    /// Canary namespaces' workloads restart onto the new revision.
    RestartCanary,
    /// Every other tag moves.
    Tags,
    /// Every workload with a stale proxy restarts.
    Restart,
    /// The gateway releases move to the new version.
    Gateways,
    /// Nothing uses the old revision any more, and stays so for the grace period.
    OldUnused,
    /// `istio-base`'s default revision (the validator) moves.
    DefaultRevision,
    /// The old istiod goes. Nothing is undone past this step.
    RemoveOld,
    /// In place only: no pod runs an old proxy.
    Verify,
}

impl UpgradeStep {
    /// Every step, for parsing names.
    pub const ALL: [UpgradeStep; 13] = [
        Self::SaveValues,
        Self::Base,
        Self::Istiod,
        Self::Smoke,
        Self::TagCanary,
        Self::RestartCanary,
        Self::Tags,
        Self::Restart,
        Self::Gateways,
        Self::OldUnused,
        Self::DefaultRevision,
        Self::RemoveOld,
        Self::Verify,
    ];

    /// The name the journal, `--pause-after` and the output use.
    pub fn name(self) -> &'static str {
        match self {
            Self::SaveValues => "save-values",
            Self::Base => "base",
            Self::Istiod => "istiod",
            Self::Smoke => "smoke",
            Self::TagCanary => "tag-canary",
            Self::RestartCanary => "restart-canary",
            Self::Tags => "tags",
            Self::Restart => "restart",
            Self::Gateways => "gateways",
            Self::OldUnused => "old-unused",
            Self::DefaultRevision => "default-revision",
            Self::RemoveOld => "remove-old",
            Self::Verify => "verify",
        }
    }

    /// What the step does and how it is undone, for `--dry-run` and the docs.
    pub fn describe(self, p: &Params) -> String {
        let (old, new, to) = (&p.from_rev, &p.to_rev, &p.to);
        match (p.strategy, self) {
            (Strategy::Canary, Self::Base) => format!(
                "helm upgrade istio-base to {to} keeping defaultRevision={old}; wait: CRDs Established"
            ),
            (Strategy::Canary, Self::Istiod) => format!(
                "helm install istiod-{new} (revision {new}); wait: rollout, injector caBundle; undo: helm uninstall istiod-{new}"
            ),
            (_, Self::Smoke) => format!(
                "probe pod in a throwaway namespace on revision {new}: injected by {new} with the new proxy image; undo: delete the namespace"
            ),
            (_, Self::TagCanary) => format!(
                "tag canary → {new} (helm template revision-tags, server-side apply); wait: label and caBundle; undo: tag back to {old}"
            ),
            (_, Self::RestartCanary) => format!(
                "restart workloads in canary namespaces onto {new}; undo: tag canary back to {old} and restart them again"
            ),
            (_, Self::Tags) => {
                format!("tags stable/default (and the rest) → {new}; undo: move them back to {old}")
            }
            (Strategy::Canary, Self::Restart) => format!(
                "restart every remaining workload whose proxy is stale; undo: tags back to {old}, restart again"
            ),
            (_, Self::Gateways) => format!(
                "helm upgrade the gateways to {to}; wait: rollout, new proxy image; undo: helm rollback"
            ),
            (_, Self::OldUnused) => format!(
                "revision {old} provably unused (no namespace, tag or live pod), then a {}s grace period",
                p.grace_secs
            ),
            (_, Self::DefaultRevision) => format!(
                "helm upgrade istio-base --set defaultRevision={new}; wait: istiod-default-validator calls istiod-{new}; undo: back to {old}"
            ),
            (_, Self::RemoveOld) => format!(
                "helm uninstall istiod-{old}, delete tag objects still on {old} (no undo past here)"
            ),
            (_, Self::SaveValues) => {
                "save every release's values (helm get values) in the journal".into()
            }
            (Strategy::InPlace, Self::Base) => format!("helm upgrade istio-base to {to}"),
            (Strategy::InPlace, Self::Istiod) => format!(
                "helm upgrade istiod-{old} to {to} (same revision); wait: rollout, new injector image, caBundle; undo: helm rollback, restart again"
            ),
            (Strategy::InPlace, Self::Restart) => {
                "restart workloads whose proxy image differs from the injector's".into()
            }
            (_, Self::Verify) => "no pod runs an old proxy image".into(),
        }
    }
}

impl fmt::Display for UpgradeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no upgrade step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an upgrade step")]
pub struct UnknownStep(pub String);

impl FromStr for UpgradeStep {
    type Err = UnknownStep;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|step| step.name() == s)
            .ok_or_else(|| UnknownStep(s.to_string()))
    }
}

/// The steps of a strategy, in order. `canary_namespaces`: the spec has namespaces on tag
/// `canary`, which move and restart before the rest.
pub fn steps(strategy: Strategy, canary_namespaces: bool) -> Vec<UpgradeStep> {
    use UpgradeStep::{
        Base, DefaultRevision, Gateways, Istiod, OldUnused, RemoveOld, Restart, RestartCanary,
        SaveValues, Smoke, TagCanary, Tags, Verify,
    };
    match strategy {
        Strategy::Canary => {
            let mut v = vec![Base, Istiod, Smoke];
            if canary_namespaces {
                v.extend([TagCanary, RestartCanary]);
            }
            v.extend([
                Tags,
                Restart,
                Gateways,
                OldUnused,
                DefaultRevision,
                RemoveOld,
            ]);
            v
        }
        Strategy::InPlace => vec![SaveValues, Base, Istiod, Gateways, Restart, Verify],
    }
}

/// Namespaces the spec marks as canaries (on tag `canary`).
pub fn canary_namespaces(spec: &ClusterSpec) -> Vec<String> {
    spec.body
        .namespaces
        .iter()
        .filter(|n| n.effective_tag() == Some("canary"))
        .map(|n| n.name.clone())
        .collect()
}

/// The tags the `tags` step moves: all the spec's but `canary`.
pub fn main_tags(spec: &ClusterSpec) -> Vec<String> {
    spec.body
        .istio
        .as_ref()
        .map(crate::mesh::istio::tags_of)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t != "canary")
        .collect()
}

/// The throwaway namespace of the smoke test on revision `rev`.
pub fn smoke_namespace(rev: &str) -> String {
    format!("paddock-smoke-{rev}")
}

#[cfg(test)]
mod tests {
    use super::{Params, Strategy, UpgradeStep, steps};

    fn params(strategy: Strategy) -> Params {
        Params {
            strategy,
            from: "1.29.6".into(),
            to: "1.30.3".into(),
            from_rev: "1-29-6".into(),
            to_rev: "1-30-3".into(),
            grace_secs: 120,
        }
    }

    fn names(steps: &[UpgradeStep]) -> Vec<&'static str> {
        steps.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn a_canary_upgrade_moves_canary_namespaces_first_only_when_there_are_some() {
        assert_eq!(
            names(&steps(Strategy::Canary, false)),
            [
                "base",
                "istiod",
                "smoke",
                "tags",
                "restart",
                "gateways",
                "old-unused",
                "default-revision",
                "remove-old"
            ]
        );
        assert_eq!(
            names(&steps(Strategy::Canary, true))[3..5],
            ["tag-canary", "restart-canary"]
        );
    }

    #[test]
    fn an_in_place_upgrade_saves_values_first_and_verifies_last() {
        assert_eq!(
            names(&steps(Strategy::InPlace, true)),
            [
                "save-values",
                "base",
                "istiod",
                "gateways",
                "restart",
                "verify"
            ]
        );
    }

    #[test]
    fn step_names_are_the_journal_names_serde_and_parsing_agree_on() {
        for step in UpgradeStep::ALL {
            let json = serde_json::to_value(step).expect("serializes");
            assert_eq!(json, step.name(), "{step:?}");
            assert_eq!(step.name().parse::<UpgradeStep>(), Ok(step));
        }
        assert!("remove_old".parse::<UpgradeStep>().is_err());
    }

    #[test]
    fn descriptions_name_the_revisions_each_strategy_touches() {
        let canary = params(Strategy::Canary);
        assert!(
            UpgradeStep::Istiod
                .describe(&canary)
                .contains("helm install istiod-1-30-3")
        );
        let in_place = Params {
            to_rev: "1-29-6".into(),
            ..params(Strategy::InPlace)
        };
        assert!(
            UpgradeStep::Istiod
                .describe(&in_place)
                .contains("helm upgrade istiod-1-29-6 to 1.30.3")
        );
    }
}
