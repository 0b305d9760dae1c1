//! The spec layer: files → typed, validated, merged cluster specs. Pure apart from reading the
//! files; everything after this layer works on [`ClusterSpec`].

pub mod error;
pub mod load;
pub mod manifests;
pub mod merge;
pub mod schema;
pub mod typed;
pub mod types;
pub mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use error::{Diagnostic, Severity, SpecErrors};
pub use load::{Repo, load};
use merge::merge;
use typed::typed;
use types::{Addon, Body, DEFAULT_PROFILE};
use yaml::{FieldPath, Located};

/// A cluster's complete, merged and validated spec.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSpec {
    pub name: String,
    pub profile: String,
    pub body: Body,
    /// The enabled addons, in dependency order.
    pub addons: Vec<Addon>,
    /// The merged document, for positioning diagnostics.
    #[serde(skip)]
    pub doc: Located,
    /// What validation found worth saying that does not refuse the spec.
    #[serde(skip)]
    pub warnings: Vec<Diagnostic>,
}

impl Repo {
    /// Merge a cluster onto its profile chain and validate the result.
    pub fn resolve(&self, cluster: &str) -> Result<ClusterSpec, SpecErrors> {
        let (profile, mut doc) = match self.clusters.get(cluster) {
            Some(c) => {
                let mut doc = self.profile_chain(
                    &c.header.profile,
                    Some((&c.header_doc, FieldPath::parse("profile"))),
                )?;
                merge(&mut doc, &c.overrides);
                (c.header.profile.clone(), doc)
            }
            None if cluster == load::IMPLICIT_CLUSTER && self.clusters.is_empty() => (
                DEFAULT_PROFILE.to_string(),
                self.profile_chain(DEFAULT_PROFILE, None)?,
            ),
            None => {
                return Err(self.choose_cluster(Some(cluster)).err().unwrap_or_else(|| {
                    SpecErrors(vec![Diagnostic::file(
                        "clusters",
                        format!("unknown cluster `{cluster}`"),
                    )])
                }));
            }
        };
        if doc.origins.is_empty() {
            doc = Located::synthetic(&format!("clusters/{cluster}.yaml"), doc.value);
        }
        self.finish(cluster.to_string(), profile, doc)
    }

    /// Validate a profile on its own, as if a cluster used it unchanged.
    pub fn resolve_profile(&self, profile: &str) -> Result<ClusterSpec, SpecErrors> {
        let doc = self.profile_chain(profile, None)?;
        self.finish(format!("profile-{profile}"), profile.to_string(), doc)
    }

    fn finish(
        &self,
        name: String,
        profile: String,
        doc: Located,
    ) -> Result<ClusterSpec, SpecErrors> {
        // Header fields of both file kinds, suggested when a typo lands among the sections.
        let body: Body = typed(
            &doc,
            &FieldPath::root(),
            &["name", "description", "profile", "extends"],
        )?;
        let mut problems = Vec::new();
        let addons = validate::addons_in_order(self, &body, &doc, &mut problems);
        let mut spec = ClusterSpec {
            name,
            profile,
            body,
            addons,
            doc,
            warnings: Vec::new(),
        };
        validate::cluster(self, &spec, &mut problems);
        // Errors first, then warnings: all of them are reported when the spec is refused.
        problems.sort_by_key(|d| d.severity);
        if problems.iter().any(|d| d.severity == Severity::Error) {
            Err(SpecErrors(problems))
        } else {
            spec.warnings = problems;
            Ok(spec)
        }
    }
}

/// Check a whole repository: every file, every profile, every cluster, and what clusters share
/// (host ports). Returns every problem found, deduplicated, in file order.
pub fn validate_repo(root: &Path) -> Result<Repo, SpecErrors> {
    let loaded = load(root);
    let mut repo = loaded.repo;
    let mut warnings: Vec<Diagnostic> = Vec::new();
    let mut problems = loaded.problems;
    for addon in repo.addons.values() {
        validate::addon_file(addon, &mut problems);
    }
    validate::addon_cycles(&repo, &mut problems);
    let mut specs = Vec::new();
    for name in repo.profiles.keys() {
        if let Err(e) = repo.resolve_profile(name) {
            problems.extend(e.0);
        }
    }
    let clusters: Vec<String> = if repo.clusters.is_empty() {
        vec![load::IMPLICIT_CLUSTER.to_string()]
    } else {
        repo.clusters.keys().cloned().collect()
    };
    for name in clusters {
        match repo.resolve(&name) {
            Ok(spec) => {
                warnings.extend(spec.warnings.iter().cloned());
                specs.push(spec)
            }
            Err(e) => problems.extend(e.0),
        }
    }
    validate::shared_host_ports(&specs, &mut problems);
    if let Some(name) = &repo.config.default_cluster
        && !repo.clusters.contains_key(name)
    {
        let names = repo.cluster_names();
        problems.push(
            Diagnostic::file(
                "paddock.yaml",
                format!("defaultCluster `{name}` is not a declared cluster"),
            )
            .with_help(error::suggest(name, "clusters", &names)),
        );
    }
    let mut seen = BTreeMap::new();
    for p in problems {
        seen.entry((p.file.clone(), p.line, p.column, p.message.clone()))
            .or_insert(p);
    }
    if seen.is_empty() {
        let mut unique = BTreeMap::new();
        for w in warnings {
            unique
                .entry((w.file.clone(), w.line, w.column, w.message.clone()))
                .or_insert(w);
        }
        repo.warnings = unique.into_values().collect();
        Ok(repo)
    } else {
        Err(SpecErrors(seen.into_values().collect()))
    }
}
