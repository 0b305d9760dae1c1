//! Preflight (ISTIO.md, canary step 0): the jump and the cluster are checked before anything
//! changes. Every problem found is reported at once, each saying what to do.

use super::{Ctx, Error};
use crate::mesh::istio;
use crate::ops::restart::Mesh;
use crate::plan::upgrade::{Params, Strategy};

/// Check the jump and the cluster. `Err(Error::Refused)` lists every problem found.
pub async fn check(ctx: &Ctx<'_>) -> Result<(), Error> {
    let p = &ctx.params;
    let (from, to) = match (istio::parse_version(&p.from), istio::parse_version(&p.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            return Err(Error::Refused {
                problems: vec![e.to_string()],
            });
        }
    };
    let mut problems = jump_problems(p, &from, &to);
    let server = ctx
        .kube
        .client
        .apiserver_version()
        .await
        .map_err(Error::ServerVersion)?;
    let minor: u64 = server.minor.trim_end_matches('+').parse().unwrap_or(0);
    let need = kubernetes_minimum(to.minor);
    if minor < need {
        problems.push(format!("Istio {} needs Kubernetes 1.{need} or newer; the cluster runs {}: replace the cluster first (`paddock switchover`)", p.to, server.git_version));
    }
    problems.extend(release_problems(ctx).await);
    problems.extend(namespace_problems(ctx).await);
    problems.extend(overlap_problems(ctx).await);
    if from.minor <= 23 && to.minor >= 24 {
        ctx.reporter.note(
            "crossing 1.23 → 1.24: existing Istio CRDs will be adopted by the istio-base release",
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Refused { problems })
    }
}

/// A canary may jump two minor versions, an in-place upgrade one; the target must differ.
fn jump_problems(p: &Params, from: &semver::Version, to: &semver::Version) -> Vec<String> {
    let mut problems = Vec::new();
    let jump = (to.minor as i64 - from.minor as i64).unsigned_abs();
    let canary = p.strategy == Strategy::Canary;
    let limit = if canary { 2 } else { 1 };
    if jump > limit {
        problems.push(format!(
            "{} → {} jumps {jump} minor versions; {} allows at most {limit}: upgrade in steps (e.g. to 1.{}.x first){}",
            p.from,
            p.to,
            if canary { "a canary upgrade" } else { "an in-place upgrade" },
            from.minor + limit,
            if !canary && jump <= 2 { ", or use --strategy canary" } else { "" }
        ));
    }
    if from == to {
        problems.push(format!("Istio is already at {}", p.to));
    }
    problems
}

/// The oldest Kubernetes minor an Istio minor supports (istioctl precheck).
fn kubernetes_minimum(istio_minor: u64) -> u64 {
    match istio_minor {
        30.. => 32,
        26..=29 => 29,
        24..=25 => 28,
        _ => 0,
    }
}

/// Every Helm release must be `deployed` (or `superseded`): helm refuses to upgrade the rest.
async fn release_problems(ctx: &Ctx<'_>) -> Vec<String> {
    match ctx.helm.list(ctx.kubeconfig).await {
        Ok(list) => list
            .iter()
            .filter(|r| r.status != "deployed" && r.status != "superseded")
            .map(|r| {
                format!(
                    "release {}/{} is `{}`: finish or roll it back first (`helm rollback {} -n {}` or `helm history {} -n {}`)",
                    r.namespace, r.name, r.status, r.name, r.namespace, r.name, r.namespace
                )
            })
            .collect(),
        Err(e) => vec![format!("could not list Helm releases: {e}")],
    }
}

/// No namespace may carry both injection labels.
async fn namespace_problems(ctx: &Ctx<'_>) -> Vec<String> {
    match Mesh::read(ctx.kube).await {
        Ok(mesh) => mesh
            .namespaces
            .iter()
            .filter(|(_, l)| l.contains_key("istio-injection") && l.contains_key("istio.io/rev"))
            .map(|(n, _)| {
                format!(
                    "namespace {n} has both istio-injection and istio.io/rev: remove one (`kubectl label ns {n} istio-injection-`)"
                )
            })
            .collect(),
        Err(e) => vec![crate::engine::chain(&e)],
    }
}

/// Every combination of namespace and pod labels matches at most one injector.
async fn overlap_problems(ctx: &Ctx<'_>) -> Vec<String> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    match ctx.kube.list::<MutatingWebhookConfiguration>().await {
        Ok(hooks) => crate::mesh::overlaps(&hooks),
        Err(e) => vec![e.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::{jump_problems, kubernetes_minimum};
    use crate::plan::upgrade::{Params, Strategy};

    fn jump(strategy: Strategy, from: &str, to: &str) -> Vec<String> {
        let p = Params {
            strategy,
            from: from.into(),
            to: to.into(),
            from_rev: String::new(),
            to_rev: String::new(),
            grace_secs: 0,
        };
        let v = |s: &str| semver::Version::parse(s).expect("version");
        jump_problems(&p, &v(from), &v(to))
    }

    #[test]
    fn a_canary_may_jump_two_minors_and_in_place_one() {
        assert!(jump(Strategy::Canary, "1.28.0", "1.30.3").is_empty());
        assert!(jump(Strategy::InPlace, "1.29.6", "1.30.3").is_empty());
        let in_place = jump(Strategy::InPlace, "1.28.0", "1.30.3");
        assert!(
            in_place[0].contains("at most 1") && in_place[0].contains("--strategy canary"),
            "{in_place:?}"
        );
        let canary = jump(Strategy::Canary, "1.27.0", "1.30.3");
        assert!(canary[0].contains("jumps 3 minor versions"), "{canary:?}");
    }

    #[test]
    fn the_same_version_is_no_upgrade() {
        assert_eq!(
            jump(Strategy::Canary, "1.30.3", "1.30.3"),
            ["Istio is already at 1.30.3"]
        );
    }

    #[test]
    fn istio_1_30_needs_kubernetes_1_32() {
        assert_eq!(kubernetes_minimum(30), 32);
        assert_eq!(kubernetes_minimum(26), 29);
        assert_eq!(kubernetes_minimum(23), 0);
    }
}
