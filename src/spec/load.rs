//! Reading a repository of specs: `paddock.yaml`, `profiles/`, `clusters/`, `addons/`, plus the
//! profile embedded in the binary. Files are parsed and typed here, once; nothing below this
//! module sees raw YAML.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::error::{Anchor, Diagnostic, SpecErrors, suggest};
use super::merge::merge;
use super::typed::typed;
use super::types::{Addon, Body, ClusterHeader, DEFAULT_PROFILE, ProfileHeader, RepoConfig};
use super::yaml::{FieldPath, Located, parse};

/// The profile built into the binary: a working single-node Istio cluster.
pub const EMBEDDED_DEFAULT_PROFILE: &str = include_str!("default-profile.yaml");
const EMBEDDED_FILE: &str = "<embedded>/profiles/default.yaml";

/// Name of the cluster `up` makes when the repository declares none.
pub const IMPLICIT_CLUSTER: &str = "paddock";

const BODY_FIELDS: &[&str] = &[
    "k3d",
    "istio",
    "addons",
    "namespaces",
    "workloads",
    "schedules",
    "caches",
    "images",
];
const PROFILE_FIELDS: &[&str] = &["name", "description", "extends"];
const CLUSTER_FIELDS: &[&str] = &["name", "description", "profile"];

#[derive(Debug, Clone)]
pub struct ProfileDoc {
    pub header: ProfileHeader,
    /// The profile's sections, without the header keys.
    pub body: Located,
    pub header_doc: Located,
}

#[derive(Debug, Clone)]
pub struct ClusterDoc {
    pub header: ClusterHeader,
    pub overrides: Located,
    pub header_doc: Located,
}

#[derive(Debug, Clone)]
pub struct AddonDoc {
    pub addon: Addon,
    pub doc: Located,
}

/// Every spec file of a repository, parsed and typed.
#[derive(Debug, Clone, Default)]
pub struct Repo {
    pub root: PathBuf,
    pub config: RepoConfig,
    pub profiles: BTreeMap<String, ProfileDoc>,
    pub clusters: BTreeMap<String, ClusterDoc>,
    pub addons: BTreeMap<String, AddonDoc>,
    /// Warnings `validate_repo` found in its clusters (refusing nothing).
    pub warnings: Vec<crate::spec::Diagnostic>,
}

/// The result of loading: what could be read, and every problem found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub repo: Repo,
    pub problems: Vec<Diagnostic>,
}

/// Load the repository at `root`. Problems in one file do not stop the others from loading.
pub fn load(root: &Path) -> Loaded {
    let mut repo = Repo {
        root: root.to_path_buf(),
        ..Repo::default()
    };
    let mut problems = Vec::new();

    let config_path = root.join("paddock.yaml");
    if config_path.exists()
        && let Some(doc) = read_doc(root, &config_path, &mut problems)
    {
        match typed::<RepoConfig>(&doc, &FieldPath::root(), &[]) {
            Ok(c) => {
                super::validate::serve::settings(&doc, &c.serve, &mut problems);
                super::validate::tools::settings(&doc, &c.tools, &mut problems);
                repo.config = c;
            }
            Err(d) => problems.push(d),
        }
    }

    for path in yaml_files(root, "profiles", &mut problems) {
        if let Some(doc) = read_doc(root, &path, &mut problems)
            && let Some(p) = profile_from(doc, &mut problems)
        {
            insert_unique(
                &mut repo.profiles,
                p.header.name.clone(),
                p,
                |p| &p.header_doc,
                &mut problems,
            );
        }
    }
    if !repo.profiles.contains_key(DEFAULT_PROFILE) {
        match parse(EMBEDDED_FILE, EMBEDDED_DEFAULT_PROFILE) {
            Ok(doc) => {
                if let Some(p) = profile_from(doc, &mut problems) {
                    repo.profiles.insert(DEFAULT_PROFILE.to_string(), p);
                }
            }
            Err(e) => problems.push(Diagnostic::syntax(EMBEDDED_FILE, &e)),
        }
    }

    for path in yaml_files(root, "clusters", &mut problems) {
        if let Some(doc) = read_doc(root, &path, &mut problems)
            && let Some(c) = cluster_from(doc, &mut problems)
        {
            insert_unique(
                &mut repo.clusters,
                c.header.name.clone(),
                c,
                |c| &c.header_doc,
                &mut problems,
            );
        }
    }

    for path in yaml_files(root, "addons", &mut problems) {
        if let Some(doc) = read_doc(root, &path, &mut problems) {
            match typed::<Addon>(&doc, &FieldPath::root(), &[]) {
                Ok(addon) => {
                    let name = addon.name.clone();
                    insert_unique(
                        &mut repo.addons,
                        name,
                        AddonDoc { addon, doc },
                        |a| &a.doc,
                        &mut problems,
                    );
                }
                Err(d) => problems.push(d),
            }
        }
    }

    Loaded { repo, problems }
}

fn insert_unique<T>(
    map: &mut BTreeMap<String, T>,
    name: String,
    item: T,
    doc_of: impl Fn(&T) -> &Located,
    problems: &mut Vec<Diagnostic>,
) {
    if let Some(existing) = map.get(&name) {
        let first = doc_of(existing)
            .origin(&FieldPath::root())
            .map(|o| o.file.clone())
            .unwrap_or_default();
        problems.push(
            Diagnostic::at(
                doc_of(&item),
                &FieldPath::parse("name"),
                Anchor::Value,
                format!("duplicate name `{name}`"),
            )
            .with_help(format!(
                "`{name}` is already defined in {first}; names must be unique"
            )),
        );
        return;
    }
    map.insert(name, item);
}

fn yaml_files(root: &Path, dir: &str, problems: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let full = root.join(dir);
    let entries = match std::fs::read_dir(&full) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(Diagnostic::file(dir, format!("cannot read directory: {e}")));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                )
        })
        .collect();
    files.sort();
    files
}

/// How a file is named in messages: relative to the repository root when it is inside it.
pub fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read_doc(root: &Path, path: &Path, problems: &mut Vec<Diagnostic>) -> Option<Located> {
    let name = display_path(root, path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Diagnostic::file(&name, format!("cannot read file: {e}")));
            return None;
        }
    };
    parse_doc(&name, &text, problems)
}

/// Parse one file's text; a document whose root is not a map is reported.
pub fn parse_doc(name: &str, text: &str, problems: &mut Vec<Diagnostic>) -> Option<Located> {
    match parse(name, text) {
        Ok(doc) if doc.value.is_object() => Some(doc),
        Ok(doc) => {
            problems.push(
                Diagnostic::at(
                    &doc,
                    &FieldPath::root(),
                    Anchor::Value,
                    "expected a map of fields at the top level",
                )
                .with_help("start the file with `name: ...`"),
            );
            None
        }
        Err(e) => {
            problems.push(Diagnostic::syntax(name, &e));
            None
        }
    }
}

/// Split a document into its header keys and the rest.
fn split(mut doc: Located, header_keys: &[&str]) -> (Located, Located) {
    let mut header = Located {
        value: Value::Object(Map::new()),
        origins: BTreeMap::new(),
    };
    if let Some(root) = doc.origins.get(&FieldPath::root()) {
        header.origins.insert(FieldPath::root(), root.clone());
    }
    for key in header_keys {
        if let Some(part) = doc.take_key(key) {
            let prefix = FieldPath::root().key(*key);
            for (p, o) in part.origins {
                header.origins.insert(p.under(&prefix), o);
            }
            if let Value::Object(m) = &mut header.value {
                m.insert(key.to_string(), part.value);
            }
        }
    }
    (header, doc)
}

fn profile_from(doc: Located, problems: &mut Vec<Diagnostic>) -> Option<ProfileDoc> {
    let (header_doc, body) = split(doc, PROFILE_FIELDS);
    let header = typed::<ProfileHeader>(&header_doc, &FieldPath::root(), BODY_FIELDS);
    let checked = typed::<Body>(&body, &FieldPath::root(), PROFILE_FIELDS);
    match (header, checked) {
        (Ok(header), Ok(_)) => Some(ProfileDoc {
            header,
            body,
            header_doc,
        }),
        (h, b) => {
            problems.extend(h.err());
            problems.extend(b.err());
            None
        }
    }
}

fn cluster_from(doc: Located, problems: &mut Vec<Diagnostic>) -> Option<ClusterDoc> {
    let (header_doc, overrides) = split(doc, CLUSTER_FIELDS);
    match typed::<ClusterHeader>(&header_doc, &FieldPath::root(), BODY_FIELDS) {
        Ok(header) => Some(ClusterDoc {
            header,
            overrides,
            header_doc,
        }),
        Err(d) => {
            problems.push(d);
            None
        }
    }
}

impl Repo {
    /// The merged document for a profile, following `extends` (root ancestor first).
    pub fn profile_chain(
        &self,
        name: &str,
        referenced_from: Option<(&Located, FieldPath)>,
    ) -> Result<Located, SpecErrors> {
        let mut chain: Vec<&ProfileDoc> = Vec::new();
        let mut next = Some((
            name.to_string(),
            referenced_from.map(|(d, p)| (d.clone(), p)),
        ));
        while let Some((n, from)) = next.take() {
            let Some(p) = self.profiles.get(&n) else {
                let names: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
                let d = match &from {
                    Some((doc, path)) => {
                        Diagnostic::at(doc, path, Anchor::Value, format!("unknown profile `{n}`"))
                    }
                    None => Diagnostic::file("profiles", format!("unknown profile `{n}`")),
                };
                return Err(d
                    .with_help(format!(
                        "{}; profiles live in profiles/NAME.yaml",
                        suggest(&n, "profiles", &names)
                    ))
                    .into());
            };
            if chain.iter().any(|c| c.header.name == n) {
                let cycle: Vec<&str> = chain
                    .iter()
                    .map(|c| c.header.name.as_str())
                    .chain([n.as_str()])
                    .collect();
                return Err(Diagnostic::at(
                    &p.header_doc,
                    &FieldPath::parse("extends"),
                    Anchor::Value,
                    format!("profile inheritance cycle: {}", cycle.join(" → ")),
                )
                .with_help("remove `extends` from one of these profiles")
                .into());
            }
            chain.push(p);
            next = p.header.extends.clone().map(|parent| {
                (
                    parent,
                    Some((p.header_doc.clone(), FieldPath::parse("extends"))),
                )
            });
        }
        let mut merged = Located {
            value: Value::Object(Map::new()),
            origins: BTreeMap::new(),
        };
        for p in chain.iter().rev() {
            merge(&mut merged, &p.body);
        }
        Ok(merged)
    }

    /// Names of the clusters a command may target, for messages.
    pub fn cluster_names(&self) -> Vec<&str> {
        self.clusters.keys().map(String::as_str).collect()
    }

    /// Pick the cluster a command means: the one named, else `paddock.yaml`'s `defaultCluster`,
    /// else the only cluster, else the implicit cluster when none is declared.
    pub fn choose_cluster(&self, requested: Option<&str>) -> Result<String, SpecErrors> {
        if let Some(name) = requested {
            if self.clusters.contains_key(name)
                || (name == IMPLICIT_CLUSTER && self.clusters.is_empty())
            {
                return Ok(name.to_string());
            }
            let names = self.cluster_names();
            return Err(
                Diagnostic::file("clusters", format!("unknown cluster `{name}`"))
                    .with_help(format!(
                        "{}; clusters live in clusters/NAME.yaml",
                        suggest(name, "clusters", &names)
                    ))
                    .into(),
            );
        }
        if let Some(name) = &self.config.default_cluster {
            return Ok(name.clone());
        }
        match self.clusters.len() {
            0 => Ok(IMPLICIT_CLUSTER.to_string()),
            1 => Ok(self.clusters.keys().next().cloned().unwrap_or_default()),
            _ => Err(Diagnostic::file(
                "clusters",
                "several clusters are declared and none was named",
            )
            .with_help(format!(
                "name one ({}) or set `defaultCluster` in paddock.yaml",
                self.cluster_names().join(", ")
            ))
            .into()),
        }
    }
}
