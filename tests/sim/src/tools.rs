//! The fake `k3d` and `helm` executables: the real tools' flags, exit codes, error texts and
//! JSON shapes (K3D.md) for the subset paddock uses. Both log each invocation to the sim home
//! and obey the tool faults and latencies in its knobs.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helm;
use crate::knobs::{FaultAction, Knobs};
use crate::world::{self, ClusterRecord, Invocation, RegistryRecord};

/// k3d's version, and the k3s version it defaults to.
pub const K3D_VERSION: &str = "v5.8.3";
pub const K3S_DEFAULT: &str = "v1.33.4-k3s1";

/// What a tool run printed and its exit code.
#[derive(Debug, Default)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn ok(stdout: impl Into<String>) -> Self {
        Self {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn k3d_fatal(msg: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            stdout: String::new(),
            stderr: format!("FATA[0000] {msg}\n"),
        }
    }

    fn helm_error(msg: impl std::fmt::Display) -> Self {
        Self {
            code: 1,
            stdout: String::new(),
            stderr: format!("Error: {msg}\n"),
        }
    }
}

/// Set to the real helm's path, `helm` runs it instead of the fake (see [`run`]).
pub const REAL_HELM: &str = "PADDOCK_SIM_REAL_HELM";

/// Run a fake tool as a process would: faults, latency, the work, the invocation log.
pub fn run(tool: &str, args: &[String]) -> i32 {
    let home = world::home();
    let started = Instant::now();
    let knobs = match Knobs::load(&home) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("paddock-sim: bad knobs: {e}");
            return 2;
        }
    };
    let now_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    };
    let started_at = now_ms(std::time::SystemTime::now());
    // `after` and `times` count the invocations since the knobs were last written.
    let knobs_at = std::fs::metadata(Knobs::path(&home))
        .and_then(|m| m.modified())
        .map(now_ms)
        .unwrap_or(0);
    let earlier: Vec<Invocation> = world::invocations(&home)
        .into_iter()
        .filter(|i| i.at_ms >= knobs_at)
        .collect();
    let fault = knobs
        .tool_faults
        .iter()
        .find(|f| {
            if !f.matches(tool, args) {
                return false;
            }
            let seen = earlier
                .iter()
                .filter(|i| f.matches(&i.tool, &i.args))
                .count();
            seen >= f.after && f.times.is_none_or(|t| seen < f.after + t)
        })
        .cloned();
    let log = |code: i32| {
        world::log_invocation(
            &home,
            &Invocation {
                tool: tool.to_string(),
                args: args.to_vec(),
                code,
                ms: started.elapsed().as_millis() as u64,
                at_ms: started_at,
            },
        );
    };
    let fault_outcome = |f: &crate::knobs::ToolFault| {
        let default = if tool == "k3d" {
            "FATA[0000] simulated failure\n".to_string()
        } else {
            "Error: simulated failure\n".to_string()
        };
        Outcome {
            code: f.exit_code.unwrap_or(1),
            stdout: String::new(),
            stderr: f
                .stderr
                .clone()
                .map(|s| if s.ends_with('\n') { s } else { s + "\n" })
                .unwrap_or(default),
        }
    };
    if let Some(f) = &fault {
        match f.action {
            FaultAction::Hang => {
                // Logged first, so tests can see the hung invocation.
                log(-1);
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            FaultAction::Fail => {
                let out = fault_outcome(f);
                eprint!("{}", out.stderr);
                log(out.code);
                return out.code;
            }
            FaultAction::FailAfter | FaultAction::DiePending => {}
        }
    }
    let command = if tool == "helm" {
        positionals(args, HELM_VALUE_FLAGS).into_iter().next()
    } else {
        args.first().cloned()
    };
    let latency = Duration::from_millis(knobs.latency_ms(tool, command.as_deref()));
    // The real helm behind the fake one's name: faults and latency as for the fake, the
    // work done by the real binary (same arguments, stdin and outputs), the run logged.
    if let Some(real) = std::env::var_os(REAL_HELM).filter(|_| tool == "helm") {
        if fault
            .as_ref()
            .is_some_and(|f| f.action == FaultAction::DiePending)
        {
            eprintln!("paddock-sim: diePending needs the fake helm (unset {REAL_HELM})");
            log(2);
            return 2;
        }
        std::thread::sleep(latency);
        let mut code = match std::process::Command::new(&real).args(args).status() {
            Ok(st) => st.code().unwrap_or(128 + 9),
            Err(e) => {
                eprintln!(
                    "paddock-sim: {}: {e}",
                    std::path::Path::new(&real).display()
                );
                127
            }
        };
        if let Some(f) = fault.filter(|f| f.action == FaultAction::FailAfter) {
            let failed = fault_outcome(&f);
            eprint!("{}", failed.stderr);
            code = failed.code;
        }
        log(code);
        return code;
    }
    // A mutating helm spends its time inside the operation, with the release pending.
    if !(tool == "helm" && helm_mutates(args)) {
        std::thread::sleep(latency);
    }
    let stdin_text = || {
        let mut s = String::new();
        let _ = std::io::stdin().read_to_string(&mut s);
        s
    };
    let mut out = match tool {
        "k3d" => k3d(&home, &knobs, args, stdin_text),
        _ => helm_cli(
            args,
            knobs.helm_major,
            fault
                .as_ref()
                .is_some_and(|f| f.action == FaultAction::DiePending),
            latency,
        ),
    };
    if let Some(f) = fault.filter(|f| f.action == FaultAction::FailAfter) {
        let failed = fault_outcome(&f);
        out.code = failed.code;
        out.stderr.push_str(&failed.stderr);
    }
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    let _ = std::io::stdout().flush();
    log(out.code);
    out.code
}

// ---------------------------------------------------------------- k3d

fn flag_value(args: &[String], names: &[&str]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        for n in names {
            if a == n {
                return it.next().cloned();
            }
            if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

fn flag_values(args: &[String], names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        for n in names {
            if a == n {
                if let Some(v) = it.next() {
                    out.push(v.clone());
                }
            } else if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// Positional arguments, skipping flags and the values of flags that take one.
fn positionals(args: &[String], with_value: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with('-') && a != "-" {
            if with_value.contains(&a.as_str()) {
                it.next();
            }
            continue;
        }
        out.push(a.clone());
    }
    out
}

fn k3d(home: &Path, knobs: &Knobs, args: &[String], stdin: impl FnOnce() -> String) -> Outcome {
    let client_cert = !knobs.kubeconfig_without_client_cert;
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["version", ..] => Outcome::ok(format!(
            "k3d version {K3D_VERSION}\nk3s version {K3S_DEFAULT} (default)\n"
        )),
        ["cluster", "create", rest @ ..] => cluster_create(home, rest, stdin),
        ["cluster", "list" | "ls" | "get", rest @ ..] => cluster_list(home, rest),
        ["cluster", "delete" | "del" | "rm", rest @ ..] => cluster_delete(home, rest),
        ["cluster", "stop", rest @ ..] => cluster_stop(home, rest),
        ["cluster", "start", rest @ ..] => cluster_start(home, rest),
        ["kubeconfig", "get", rest @ ..] => {
            let names = positionals(&to_strings(rest), &[]);
            let mut out = String::new();
            for n in names {
                match ClusterRecord::load(home, &n) {
                    Some(rec) => out.push_str(&rec.kubeconfig_with(client_cert)),
                    None => {
                        return Outcome::k3d_fatal(format!(
                            "Failed to get cluster '{n}': No nodes found for given cluster"
                        ));
                    }
                }
            }
            Outcome::ok(out)
        }
        ["kubeconfig", "write", rest @ ..] => {
            let rest = to_strings(rest);
            let names = positionals(&rest, &["-o", "--output"]);
            let Some(n) = names.first() else {
                return Outcome::k3d_fatal("requires at least 1 arg(s), only received 0");
            };
            let Some(rec) = ClusterRecord::load(home, n) else {
                return Outcome::k3d_fatal(format!(
                    "Failed to get cluster '{n}': No nodes found for given cluster"
                ));
            };
            let path = flag_value(&rest, &["-o", "--output"])
                .map(PathBuf::from)
                .unwrap_or_else(|| k3d_config_dir().join(format!("kubeconfig-{n}.yaml")));
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            match std::fs::write(&path, rec.kubeconfig_with(client_cert)) {
                Ok(()) => Outcome::ok(format!("{}\n", path.display())),
                Err(e) => Outcome::k3d_fatal(format!("failed to write kubeconfig: {e}")),
            }
        }
        ["image", "import" | "load", rest @ ..] => {
            let rest = to_strings(rest);
            let images = positionals(&rest, &["-c", "--cluster", "-m", "--mode"]);
            let cluster = flag_value(&rest, &["-c", "--cluster"]).unwrap_or("k3s-default".into());
            let Some(mut rec) = ClusterRecord::load(home, &cluster) else {
                return Outcome::k3d_fatal(format!(
                    "Failed to get cluster '{cluster}': No nodes found for given cluster"
                ));
            };
            if images.is_empty() {
                return Outcome::k3d_fatal("requires at least 1 arg(s), only received 0");
            }
            for i in images {
                if !rec.images.contains(&i) {
                    rec.images.push(i);
                }
            }
            let _ = rec.save(home);
            Outcome {
                code: 0,
                stdout: String::new(),
                stderr: format!(
                    "INFO[0000] Importing image(s) into cluster '{cluster}'\nINFO[0001] Successfully imported image(s)\n"
                ),
            }
        }
        ["registry", "create", rest @ ..] => registry_create(home, rest),
        ["registry", "list" | "ls" | "get", rest @ ..] => {
            let rest = to_strings(rest);
            let regs: Vec<Value> = RegistryRecord::list(home)
                .iter()
                .map(registry_node)
                .collect();
            if flag_value(&rest, &["-o", "--output"]).as_deref() == Some("json") {
                Outcome::ok(format!("{}\n", Value::Array(regs)))
            } else {
                let mut t = "NAME   ROLE   CLUSTER   STATUS\n".to_string();
                for r in regs {
                    t.push_str(&format!(
                        "{}   registry      running\n",
                        r["name"].as_str().unwrap_or_default()
                    ));
                }
                Outcome::ok(t)
            }
        }
        ["registry", "delete" | "del" | "rm", rest @ ..] => {
            for n in positionals(&to_strings(rest), &[]) {
                let bare = n.strip_prefix("k3d-").unwrap_or(&n).to_string();
                if crate::docker::enabled() {
                    crate::docker::delete_registry(&bare);
                }
                let _ = std::fs::remove_file(RegistryRecord::path(home, &bare));
            }
            Outcome::ok("")
        }
        _ => Outcome::k3d_fatal(format!("unknown command {:?} for \"k3d\"", args.join(" "))),
    }
}

fn to_strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn k3d_config_dir() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(std::env::temp_dir)
        .join("k3d")
}

/// k3d expands `$VAR` and `${VAR}` in the whole config before parsing.
fn expand_env(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(&std::env::var(&name).unwrap_or_default());
        }
    }
    out
}

static K3D_SCHEMA: std::sync::LazyLock<Option<jsonschema::Validator>> =
    std::sync::LazyLock::new(|| {
        let v: Value = serde_json::from_str(include_str!(
            "../../../src/spec/schemas/k3d-v1alpha5.schema.json"
        ))
        .ok()?;
        jsonschema::validator_for(&v).ok()
    });

/// Parse one YAML document into JSON.
pub fn yaml(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string())
}

/// `[HOST:][HOSTPORT:]CONTAINERPORT[/PROTO]` → (host port, container port).
fn parse_port(spec: &str) -> Option<(u16, u16)> {
    let spec = spec.split('/').next()?;
    let parts: Vec<&str> = spec.split(':').collect();
    let container = parts.last()?.parse().ok()?;
    let host = match parts.len() {
        1 => 0,
        _ => parts[parts.len() - 2].parse().ok()?,
    };
    Some((host, container))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn cluster_create(home: &Path, rest: &[&str], stdin: impl FnOnce() -> String) -> Outcome {
    let rest = to_strings(rest);
    let with_value = [
        "--config",
        "-c",
        "--timeout",
        "--image",
        "-i",
        "--servers",
        "-s",
        "--agents",
        "-a",
    ];
    let names = positionals(&rest, &with_value);
    let config_src = flag_value(&rest, &["--config", "-c"]);
    let mut config = match config_src.as_deref() {
        Some("-") => {
            let text = expand_env(&stdin());
            match yaml(&text) {
                Ok(v) => v,
                Err(e) => return Outcome::k3d_fatal(format!("Failed to read config file -: {e}")),
            }
        }
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) => match yaml(&expand_env(&t)) {
                Ok(v) => v,
                Err(e) => {
                    return Outcome::k3d_fatal(format!("Failed to read config file {path}: {e}"));
                }
            },
            Err(e) => return Outcome::k3d_fatal(format!("Failed to read config file {path}: {e}")),
        },
        None => json!({"apiVersion": "k3d.io/v1alpha5", "kind": "Simple"}),
    };
    if let Some(schema) = K3D_SCHEMA.as_ref() {
        let errors: Vec<String> = schema
            .iter_errors(&config)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!(
                    "- {}: {e}",
                    if at.is_empty() {
                        "(root)".into()
                    } else {
                        at.trim_start_matches('/').replace('/', ".")
                    }
                )
            })
            .collect();
        if !errors.is_empty() {
            return Outcome::k3d_fatal(format!(
                "Schema Validation failed for config file {}: {}",
                config_src.as_deref().unwrap_or("-"),
                errors.join("\n")
            ));
        }
    }
    let name = names
        .first()
        .cloned()
        .or_else(|| {
            config
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "k3s-default".to_string());
    config["metadata"]["name"] = json!(name);
    if !valid_name(&name) {
        return Outcome::k3d_fatal(format!(
            "Failed to create cluster '{name}': Invalid cluster name '{name}': must be a valid hostname of at most 32 characters"
        ));
    }
    if ClusterRecord::load(home, &name).is_some() {
        return Outcome::k3d_fatal(format!(
            "Failed to create cluster '{name}' because a cluster with that name already exists"
        ));
    }
    let servers = config["servers"].as_u64().unwrap_or(1) as usize;
    let agents = config["agents"].as_u64().unwrap_or(0) as usize;
    let mut lb_ports = Vec::new();
    for p in config["ports"].as_array().into_iter().flatten() {
        let spec = p["port"].as_str().unwrap_or_default();
        match parse_port(spec) {
            Some(pair) => lb_ports.push(pair),
            None => return Outcome::k3d_fatal(format!("Failed to parse port mapping '{spec}'")),
        }
    }
    let api_port = config
        .pointer("/kubeAPI/hostPort")
        .and_then(|p| {
            p.as_str()
                .map(str::to_string)
                .or(p.as_u64().map(|n| n.to_string()))
        })
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    labels.insert("app".into(), "k3d".into());
    labels.insert("k3d.cluster".into(), name.clone());
    labels.insert("k3d.version".into(), K3D_VERSION.into());
    labels.insert("k3d.cluster.network".into(), format!("k3d-{name}"));
    for l in config
        .pointer("/options/runtime/labels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some((k, v)) = l["label"].as_str().and_then(|s| s.split_once('=')) {
            labels.insert(k.into(), v.into());
        }
    }
    let registries: Vec<String> = config
        .pointer("/registries/use")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    for r in &registries {
        let bare = r.split(':').next().unwrap_or(r);
        let bare = bare.strip_prefix("k3d-").unwrap_or(bare);
        if !RegistryRecord::path(home, bare).exists() {
            return Outcome::k3d_fatal(format!(
                "Failed to create cluster '{name}': Failed to find registry '{r}' to use"
            ));
        }
    }
    let docker = crate::docker::enabled();
    let mut rec = ClusterRecord {
        name: name.clone(),
        pid: None,
        api_port,
        servers,
        agents,
        image: config["image"]
            .as_str()
            .unwrap_or(&format!("rancher/k3s:{K3S_DEFAULT}"))
            .to_string(),
        lb_ports,
        labels,
        images: Vec::new(),
        registries,
        running: false,
        created: crate::store::now_rfc3339(),
        config: config.clone(),
        docker,
        pki: None,
    };
    // k3s makes its CAs and certificates on first boot; a re-created cluster gets new ones.
    match crate::pki::Pki::generate(&rec.serving_names()) {
        Ok(p) => rec.pki = Some(p),
        Err(e) => return Outcome::k3d_fatal(format!("Failed to create cluster '{name}': {e}")),
    }
    let _ = std::fs::remove_file(ClusterRecord::snapshot_path(home, &name));
    let started = if docker {
        // Publish fixed ports: pick free ones for any left to chance.
        let pick = |p: u16| if p == 0 { world::free_port() } else { Ok(p) };
        let ports: Result<Vec<(u16, u16)>, String> = rec
            .lb_ports
            .iter()
            .map(|(h, c)| pick(*h).map(|h| (h, *c)))
            .collect();
        match (pick(rec.api_port), ports) {
            (Ok(api), Ok(ports)) => {
                rec.api_port = api;
                rec.lb_ports = ports;
                world::start_docker_cluster(home, &mut rec, true).map(|()| rec.clone())
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    } else {
        match rec.save(home) {
            Ok(()) => world::spawn_server(home, &name),
            Err(e) => Err(e.to_string()),
        }
    };
    let rec = match started {
        Ok(r) => r,
        Err(e) => {
            if docker {
                crate::docker::delete_cluster(home, &name);
            }
            let _ = std::fs::remove_file(ClusterRecord::path(home, &name));
            return Outcome::k3d_fatal(format!(
                "Failed to create cluster '{name}': {e}\nERRO[0001] Failed to create cluster >>> Rolling Back"
            ));
        }
    };
    let update = config
        .pointer("/options/kubeconfig/updateDefaultKubeconfig")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let switch = config
        .pointer("/options/kubeconfig/switchCurrentContext")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut log = format!(
        "INFO[0000] Prep: Network\nINFO[0000] Created network 'k3d-{name}'\nINFO[0000] Created image volume k3d-{name}-images\nINFO[0001] Creating node 'k3d-{name}-server-0'\nINFO[0001] Creating LoadBalancer 'k3d-{name}-serverlb'\nINFO[0002] Starting cluster '{name}'\n"
    );
    if update {
        match merge_default_kubeconfig(&rec, switch) {
            Ok(path) => log.push_str(&format!(
                "INFO[0003] Updating default kubeconfig with a new context for cluster {name}\nINFO[0003] Wrote kubeconfig to '{}'\n",
                path.display()
            )),
            Err(e) => log.push_str(&format!("WARN[0003] Failed to update default kubeconfig: {e}\n")),
        }
    }
    log.push_str(&format!(
        "INFO[0003] Cluster '{name}' created successfully!\n"
    ));
    Outcome {
        code: 0,
        stdout: String::new(),
        stderr: log,
    }
}

/// The default kubeconfig: `$KUBECONFIG`'s first path, else `~/.kube/config`.
fn default_kubeconfig() -> Result<PathBuf, String> {
    std::env::var("KUBECONFIG")
        .ok()
        .and_then(|k| k.split(':').next().map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
        .ok_or_else(|| "no HOME".to_string())
}

/// Remove a cluster's cluster, context and user from the default kubeconfig, as `k3d cluster
/// delete` does; a current-context that pointed there moves to another context, or is unset.
fn remove_from_default_kubeconfig(name: &str) -> Result<(), String> {
    let path = default_kubeconfig()?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("failed to get default kubeconfig file: {e}"))?;
    let mut cfg = if text.trim().is_empty() {
        json!({})
    } else {
        yaml(&text)?
    };
    let context = format!("k3d-{name}");
    let user = format!("admin@k3d-{name}");
    for (key, entry) in [
        ("clusters", &context),
        ("contexts", &context),
        ("users", &user),
    ] {
        if let Some(list) = cfg[key].as_array_mut() {
            list.retain(|e| e["name"].as_str() != Some(entry.as_str()));
        }
    }
    if cfg["current-context"].as_str() == Some(context.as_str()) {
        // k3d takes any other context (Go map order); the first is as good as any.
        let other = cfg["contexts"]
            .as_array()
            .and_then(|l| l.first())
            .and_then(|c| c["name"].as_str())
            .unwrap_or_default()
            .to_string();
        cfg["current-context"] = json!(other);
    }
    std::fs::write(&path, cfg.to_string()).map_err(|e| e.to_string())
}

/// Merge a cluster's entries into the default kubeconfig, as k3d does unless
/// `updateDefaultKubeconfig: false`.
fn merge_default_kubeconfig(rec: &ClusterRecord, switch: bool) -> Result<PathBuf, String> {
    let path = default_kubeconfig()?;
    let mut cfg = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => yaml(&t)?,
        _ => {
            json!({"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [], "users": []})
        }
    };
    let new = yaml(&rec.kubeconfig())?;
    for key in ["clusters", "contexts", "users"] {
        let mut list: Vec<Value> = cfg[key].as_array().cloned().unwrap_or_default();
        for entry in new[key].as_array().into_iter().flatten() {
            list.retain(|e| e["name"] != entry["name"]);
            list.push(entry.clone());
        }
        cfg[key] = Value::Array(list);
    }
    if switch || cfg["current-context"].as_str().is_none_or(str::is_empty) {
        cfg["current-context"] = json!(format!("k3d-{}", rec.name));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(&path, cfg.to_string()).map_err(|e| e.to_string())?;
    Ok(path)
}

fn node_json(rec: &ClusterRecord, name: &str, role: &str, running: bool, ports: Value) -> Value {
    let mut labels = rec.labels.clone();
    labels.insert("k3d.role".into(), role.into());
    labels.insert("k3d.server.api.port".into(), rec.api_port.to_string());
    labels.insert("k3d.server.api.host".into(), rec.api_host());
    labels.insert("k3d.server.api.hostIP".into(), rec.api_host_ip());
    json!({
        "name": name, "role": role, "File": "", "image": if role == "loadbalancer" { "ghcr.io/k3d-io/k3d-proxy:5.8.3".to_string() } else { rec.image.clone() },
        "volumes": null, "env": null, "cmd": null, "args": null, "ports": null,
        "restart": true, "created": rec.created, "runtimeLabels": labels,
        "networks": [format!("k3d-{}", rec.name)], "ExtraHosts": null,
        "serverOpts": if role == "server" { json!({"isInitializingServer": true, "kubeAPI": {"Host": rec.api_host(), "HostIP": rec.api_host_ip(), "Port": rec.api_port.to_string()}}) } else { json!({}) },
        "agentOpts": {}, "GPURequest": "", "HostPidMode": false,
        "State": {"Running": running, "Status": if running { "running" } else { "exited" }, "Started": ""},
        "IP": {"IP": "", "Static": false}, "HookActions": null, "portMappings": ports,
    })
}

fn cluster_json(home: &Path, rec: &ClusterRecord) -> Value {
    let running = rec.is_running(home);
    let mut nodes = Vec::new();
    for i in 0..rec.servers.max(1) {
        nodes.push(node_json(
            rec,
            &format!("k3d-{}-server-{i}", rec.name),
            "server",
            running,
            json!({}),
        ));
    }
    for i in 0..rec.agents {
        nodes.push(node_json(
            rec,
            &format!("k3d-{}-agent-{i}", rec.name),
            "agent",
            running,
            json!({}),
        ));
    }
    let mut ports = serde_json::Map::new();
    ports.insert(
        "6443/tcp".into(),
        json!([{"HostIp": "0.0.0.0", "HostPort": rec.api_port.to_string()}]),
    );
    for (host, container) in &rec.lb_ports {
        ports.insert(
            format!("{container}/tcp"),
            json!([{"HostIp": "0.0.0.0", "HostPort": host.to_string()}]),
        );
    }
    nodes.push(node_json(
        rec,
        &format!("k3d-{}-serverlb", rec.name),
        "loadbalancer",
        running,
        Value::Object(ports),
    ));
    let up = if running { 1 } else { 0 };
    json!({
        "name": rec.name,
        "network": {"name": format!("k3d-{}", rec.name), "ID": "", "External": false, "IPAM": {"IPPrefix": "172.18.0.0/16", "IPsUsed": null, "Managed": false}, "Members": null},
        "token": "sim", "nodes": nodes, "InitNode": null, "ExternalDatastore": null, "KubeAPI": null,
        "ServerLoadBalancer": null, "ImageVolume": format!("k3d-{}-images", rec.name), "Volumes": null,
        "imageVolume": format!("k3d-{}-images", rec.name),
        "serversRunning": up * rec.servers.max(1), "serversCount": rec.servers.max(1),
        "agentsRunning": up * rec.agents, "agentsCount": rec.agents, "hasLoadbalancer": true,
    })
}

fn cluster_list(home: &Path, rest: &[&str]) -> Outcome {
    let rest = to_strings(rest);
    let names = positionals(&rest, &["-o", "--output"]);
    let all = ClusterRecord::list(home);
    let mut picked = Vec::new();
    for n in &names {
        match all.iter().find(|r| &r.name == n) {
            Some(r) => picked.push(r.clone()),
            None => {
                return Outcome::k3d_fatal(format!(
                    "failed to get cluster '{n}': No nodes found for given cluster"
                ));
            }
        }
    }
    if names.is_empty() {
        picked = all;
    }
    match flag_value(&rest, &["-o", "--output"]).as_deref() {
        Some("json") => Outcome::ok(format!(
            "{}\n",
            Value::Array(picked.iter().map(|r| cluster_json(home, r)).collect())
        )),
        Some(other) if other != "yaml" => {
            Outcome::k3d_fatal(format!("Unknown output format '{other}'"))
        }
        _ => {
            let mut t = "NAME   SERVERS   AGENTS   LOADBALANCER\n".to_string();
            for r in &picked {
                let up = usize::from(r.is_running(home));
                t.push_str(&format!(
                    "{}   {}/{}   {}/{}   true\n",
                    r.name,
                    up * r.servers.max(1),
                    r.servers.max(1),
                    up * r.agents,
                    r.agents
                ));
            }
            Outcome::ok(t)
        }
    }
}

fn cluster_delete(home: &Path, rest: &[&str]) -> Outcome {
    let rest = to_strings(rest);
    let mut names = positionals(&rest, &[]);
    if rest.iter().any(|a| a == "--all" || a == "-a") {
        names = ClusterRecord::list(home)
            .into_iter()
            .map(|r| r.name)
            .collect();
    }
    let mut log = String::new();
    for n in names {
        let Some(rec) = ClusterRecord::load(home, &n) else {
            log.push_str("INFO[0000] No clusters found\n");
            continue;
        };
        log.push_str(&format!("INFO[0000] Deleting cluster '{n}'\n"));
        if rec.docker {
            crate::docker::delete_cluster(home, &n);
        } else if let Some(pid) = rec.pid.filter(|p| world::alive(*p)) {
            world::stop_server(pid);
        }
        let _ = std::fs::remove_file(ClusterRecord::ready_path(home, &n));
        let _ = std::fs::remove_file(ClusterRecord::path(home, &n));
        let _ = std::fs::remove_file(ClusterRecord::snapshot_path(home, &n));
        log.push_str("INFO[0001] Removing cluster details from default kubeconfig...\n");
        if let Err(e) = remove_from_default_kubeconfig(&n) {
            log.push_str(&format!(
                "WARN[0001] Failed to remove cluster details from default kubeconfig\nWARN[0001] {e}\n"
            ));
        }
        log.push_str("INFO[0001] Removing standalone kubeconfig file (if there is one)...\n");
        let _ = std::fs::remove_file(k3d_config_dir().join(format!("kubeconfig-{n}.yaml")));
        log.push_str(&format!("INFO[0001] Successfully deleted cluster {n}!\n"));
    }
    Outcome {
        code: 0,
        stdout: String::new(),
        stderr: log,
    }
}

fn cluster_stop(home: &Path, rest: &[&str]) -> Outcome {
    for n in positionals(&to_strings(rest), &[]) {
        let Some(mut rec) = ClusterRecord::load(home, &n) else {
            return Outcome::k3d_fatal(format!(
                "Failed to get cluster '{n}': No nodes found for given cluster"
            ));
        };
        if rec.docker {
            if let Err(e) = crate::docker::stop_cluster(home, &n) {
                return Outcome::k3d_fatal(format!("Failed to stop cluster '{n}': {e}"));
            }
        } else if let Some(pid) = rec.pid.filter(|p| world::alive(*p)) {
            world::stop_server(pid);
        }
        rec.running = false;
        rec.pid = None;
        let _ = rec.save(home);
    }
    Outcome::ok("")
}

fn cluster_start(home: &Path, rest: &[&str]) -> Outcome {
    for n in positionals(&to_strings(rest), &[]) {
        let Some(mut rec) = ClusterRecord::load(home, &n) else {
            return Outcome::k3d_fatal(format!(
                "Failed to get cluster '{n}': No nodes found for given cluster"
            ));
        };
        if rec.is_running(home) {
            continue;
        }
        let started = if rec.docker {
            world::start_docker_cluster(home, &mut rec, false)
        } else {
            world::spawn_server(home, &n).map(|_| ())
        };
        if let Err(e) = started {
            return Outcome::k3d_fatal(format!("Failed to start cluster '{n}': {e}"));
        }
    }
    Outcome::ok("")
}

fn registry_node(r: &RegistryRecord) -> Value {
    let mut labels = r.labels.clone();
    labels.insert("app".into(), "k3d".into());
    labels.insert("k3d.role".into(), "registry".into());
    labels.insert("k3d.registry.host".into(), String::new());
    labels.insert("k3d.registry.hostIP".into(), "0.0.0.0".into());
    labels.insert("k3d.registry.port".into(), r.host_port.to_string());
    json!({"name": format!("k3d-{}", r.name), "role": "registry", "image": "docker.io/library/registry:2",
        "runtimeLabels": labels, "State": {"Running": true, "Status": "running", "Started": ""},
        "portMappings": {"5000/tcp": [{"HostIp": "0.0.0.0", "HostPort": r.host_port.to_string()}]},
        "env": if r.proxy_remote_url.is_empty() { json!([]) } else { json!([format!("REGISTRY_PROXY_REMOTEURL={}", r.proxy_remote_url)]) },
        "volumes": r.volumes})
}

fn registry_create(home: &Path, rest: &[&str]) -> Outcome {
    let rest = to_strings(rest);
    let names = positionals(
        &rest,
        &[
            "-p",
            "--port",
            "--proxy-remote-url",
            "-v",
            "--volume",
            "-i",
            "--image",
            "--network",
        ],
    );
    let Some(name) = names.first() else {
        return Outcome::k3d_fatal("requires at least 1 arg(s), only received 0");
    };
    let bare = name.strip_prefix("k3d-").unwrap_or(name).to_string();
    if RegistryRecord::path(home, &bare).exists() {
        return Outcome::k3d_fatal(format!(
            "Failed to create registry: Failed to create node 'k3d-{bare}': Error response from daemon: Conflict. The container name \"/k3d-{bare}\" is already in use"
        ));
    }
    let port = flag_value(&rest, &["-p", "--port"])
        .and_then(|p| p.rsplit(':').next().and_then(|x| x.parse().ok()))
        .unwrap_or(5000);
    let rec = RegistryRecord {
        name: bare.clone(),
        host_port: port,
        proxy_remote_url: flag_value(&rest, &["--proxy-remote-url"]).unwrap_or_default(),
        volumes: flag_values(&rest, &["-v", "--volume"]),
        labels: BTreeMap::new(),
    };
    if crate::docker::enabled()
        && let Err(e) = crate::docker::create_registry(home, &rec)
    {
        return Outcome::k3d_fatal(format!("Failed to create registry: {e}"));
    }
    if let Err(e) = rec.save(home) {
        return Outcome::k3d_fatal(e);
    }
    Outcome {
        code: 0,
        stdout: String::new(),
        stderr: format!(
            "INFO[0000] Creating node 'k3d-{bare}'\nINFO[0000] Successfully created registry 'k3d-{bare}'\n"
        ),
    }
}

// ---------------------------------------------------------------- helm

/// helm's flags that take a value.
const HELM_VALUE_FLAGS: &[&str] = &[
    "-n",
    "--namespace",
    "--kube-context",
    "--kubeconfig",
    "--repo",
    "--version",
    "-f",
    "--values",
    "--set",
    "--set-string",
    "--set-json",
    "--timeout",
    "-o",
    "--output",
    "-s",
    "--show-only",
    "--description",
    "--max",
    "--template",
    "--revision",
];

const HELM_BOOL_FLAGS: &[&str] = &[
    "-i",
    "--install",
    "--create-namespace",
    "--wait-for-jobs",
    "--reuse-values",
    "--reset-values",
    "--reset-then-reuse-values",
    "-A",
    "--all-namespaces",
    "-a",
    "--all",
    "--keep-history",
    "--skip-crds",
    "--include-crds",
    "--take-ownership",
    "--deployed",
    "--failed",
    "--pending",
    "--superseded",
    "--uninstalled",
    "--uninstalling",
    "--short",
    "--no-hooks",
    "--debug",
    "--devel",
    "--dependency-update",
    "--cleanup-on-fail",
];

/// Flags each major version does not know (K3D.md, Helm 4 differences).
fn unknown_in(major: u8, flag: &str) -> bool {
    match major {
        3 => matches!(
            flag,
            "--rollback-on-failure" | "--force-replace" | "--server-side" | "--force-conflicts"
        ),
        // Helm 4 dropped `list --all` (`-a`) with `--atomic` and `--force`.
        _ => matches!(flag, "--atomic" | "--force" | "--all" | "-a"),
    }
}

/// Cobra's words for an unknown flag.
fn unknown_flag(flag: &str) -> String {
    match flag.strip_prefix('-') {
        Some(short) if !short.starts_with('-') => {
            format!("unknown shorthand flag: '{short}' in {flag}")
        }
        _ => format!("unknown flag: {flag}"),
    }
}

/// Does this helm command change a release (install, upgrade, rollback, uninstall)?
fn helm_mutates(args: &[String]) -> bool {
    let pos = positionals(args, HELM_VALUE_FLAGS);
    matches!(
        pos.first().map(String::as_str),
        Some("upgrade" | "install" | "rollback" | "uninstall" | "un" | "delete" | "del")
    ) && !args.iter().any(|a| a.starts_with("--dry-run"))
}

/// The two halves of a mutating operation: the first leaves the release pending; the helm
/// process works (`work`, then `until_done` such as `--wait`), then records the outcome.
fn two_halves(
    args: &[String],
    req: &helm::Request,
    work: Duration,
    until_done: impl FnOnce() -> Option<Outcome>,
) -> Outcome {
    let first = match call_response(args, req) {
        Ok(r) => r,
        Err(out) => return out,
    };
    let out = Outcome {
        code: first.code,
        stdout: first.stdout,
        stderr: first.stderr,
    };
    let Some(finish) = first.finish else {
        return out;
    };
    std::thread::sleep(work);
    if let Some(failed) = until_done() {
        return failed;
    }
    let done = call(
        args,
        &helm::Request {
            op: "finish".into(),
            finish: Some(finish),
            ..Default::default()
        },
    );
    if done.code != 0 { done } else { out }
}

/// Helm 4's `--server-side` (`true`, `false`, `auto`; bare means `true`): install defaults
/// to `true`, upgrade and rollback to `auto`. Helm 3 has no server-side apply.
fn server_side(major: u8, op: &str, args: &[String]) -> String {
    if major == 3 {
        return String::new();
    }
    let given = args.iter().find_map(|a| match a.split_once('=') {
        Some(("--server-side", v)) => Some(v.to_string()),
        _ if a == "--server-side" => Some("true".to_string()),
        _ => None,
    });
    given.unwrap_or_else(|| if op == "install" { "true" } else { "auto" }.to_string())
}

fn helm_cli(args: &[String], major: u8, die_pending: bool, work: Duration) -> Outcome {
    // Validate flags as cobra would.
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with('-') && a.len() > 1 {
            let bare = a.split('=').next().unwrap_or(a);
            if unknown_in(major, bare) {
                return Outcome::helm_error(unknown_flag(bare));
            }
            let known = HELM_VALUE_FLAGS.contains(&bare)
                || HELM_BOOL_FLAGS.contains(&bare)
                || matches!(
                    bare,
                    "--wait"
                        | "--dry-run"
                        | "--atomic"
                        | "--force"
                        | "--rollback-on-failure"
                        | "--force-replace"
                        | "--server-side"
                        | "--force-conflicts"
                );
            if !known {
                return Outcome::helm_error(format!("unknown flag: {bare}"));
            }
            if bare == "--wait" && a.contains('=') {
                let strategy = a.split_once('=').map(|x| x.1).unwrap_or_default();
                let ok = match major {
                    3 => matches!(strategy, "true" | "false"),
                    _ => matches!(
                        strategy,
                        "watcher" | "legacy" | "hookOnly" | "true" | "false"
                    ),
                };
                if !ok {
                    return Outcome::helm_error(format!(
                        "invalid argument \"{strategy}\" for \"--wait\" flag"
                    ));
                }
            }
            if HELM_VALUE_FLAGS.contains(&bare) && !a.contains('=') {
                i += 1;
                if i >= args.len() {
                    return Outcome::helm_error(format!("flag needs an argument: {bare}"));
                }
            }
        }
        i += 1;
    }
    let pos = positionals(args, HELM_VALUE_FLAGS);
    let words: Vec<&str> = pos.iter().map(String::as_str).collect();
    let has = |f: &[&str]| {
        args.iter()
            .any(|a| f.contains(&a.split('=').next().unwrap_or(a)))
    };
    let ns = flag_value(args, &["-n", "--namespace"]).unwrap_or_else(|| "default".into());
    let output_json = flag_value(args, &["-o", "--output"]).as_deref() == Some("json");
    match words.as_slice() {
        ["version"] => {
            let v = if major == 3 { "v3.19.0" } else { "v4.1.4" };
            if let Some(t) = flag_value(args, &["--template"]) {
                return Outcome::ok(t.replace("{{.Version}}", v).replace("{{ .Version }}", v));
            }
            if has(&["--short"]) {
                Outcome::ok(format!("{v}+gsim\n"))
            } else {
                Outcome::ok(format!(
                    "version.BuildInfo{{Version:\"{v}\", GitCommit:\"sim\", GitTreeState:\"clean\", GoVersion:\"go1.25.5\"}}\n"
                ))
            }
        }
        ["template", rest @ ..] => template(args, rest),
        ["upgrade" | "install", release, chart] => {
            let op = words[0];
            let (chart, version) = match chart_ref(args, chart) {
                Ok(c) => c,
                Err(e) => return Outcome::helm_error(e),
            };
            let values = match collect_values(args) {
                Ok(v) => v,
                Err(e) => return Outcome::helm_error(e),
            };
            let objects = match render_release(args, op, release, &chart, &version, &ns, &values) {
                Ok(o) => o,
                Err(out) => return out,
            };
            let req = helm::Request {
                op: op.into(),
                objects,
                release: release.to_string(),
                chart,
                version,
                namespace: ns.clone(),
                install: op == "install" || has(&["-i", "--install"]),
                create_namespace: has(&["--create-namespace"]),
                values,
                reuse_values: has(&["--reuse-values"]),
                take_ownership: has(&["--take-ownership"]),
                die_pending,
                server_side: server_side(major, op, args),
                force_conflicts: has(&["--force-conflicts"]),
                ..Default::default()
            };
            let dry = has(&["--dry-run"]);
            if dry {
                return Outcome::ok(format!(
                    "NAME: {release}\nSTATUS: pending-install\nREVISION: 1\n"
                ));
            }
            let wait = args.iter().any(|a| {
                a == "--wait" || a == "--wait=true" || a == "--wait=watcher" || a == "--wait=legacy"
            }) || has(&["--atomic", "--rollback-on-failure"]);
            let timeout =
                parse_duration(&flag_value(args, &["--timeout"]).unwrap_or("5m0s".into()))
                    .unwrap_or(Duration::from_secs(300));
            let upgrading = op == "upgrade";
            two_halves(args, &req, work, || {
                if !wait {
                    return None;
                }
                let deadline = Instant::now() + timeout;
                loop {
                    let r = call(
                        args,
                        &helm::Request {
                            op: "ready".into(),
                            release: release.to_string(),
                            namespace: ns.clone(),
                            ..Default::default()
                        },
                    );
                    if r.code != 0 {
                        return Some(r);
                    }
                    if r.stdout.trim() == "true" {
                        return None;
                    }
                    if Instant::now() > deadline {
                        let verb = if upgrading {
                            "UPGRADE FAILED"
                        } else {
                            "INSTALLATION FAILED"
                        };
                        return Some(Outcome::helm_error(format!(
                            "{verb}: context deadline exceeded"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        }
        ["upgrade" | "install", ..] => Outcome::helm_error(format!(
            "\"helm {}\" requires 2 arguments\n\nUsage:  helm {} [RELEASE] [CHART] [flags]",
            words[0], words[0]
        )),
        ["uninstall" | "un" | "delete" | "del", releases @ ..] if !releases.is_empty() => {
            let mut out = Outcome::ok("");
            for r in releases {
                let o = two_halves(
                    args,
                    &helm::Request {
                        op: "uninstall".into(),
                        release: r.to_string(),
                        namespace: ns.clone(),
                        keep_history: has(&["--keep-history"]),
                        ..Default::default()
                    },
                    work,
                    || None,
                );
                out.stdout.push_str(&o.stdout);
                out.stderr.push_str(&o.stderr);
                out.code = out.code.max(o.code);
            }
            out
        }
        ["rollback", release, rest @ ..] => two_halves(
            args,
            &helm::Request {
                op: "rollback".into(),
                release: release.to_string(),
                namespace: ns.clone(),
                revision: rest.first().and_then(|r| r.parse().ok()),
                server_side: server_side(major, "rollback", args),
                force_conflicts: has(&["--force-conflicts"]),
                ..Default::default()
            },
            work,
            || None,
        ),
        ["list" | "ls"] => {
            let mut statuses = Vec::new();
            for s in [
                "deployed",
                "failed",
                "pending",
                "superseded",
                "uninstalled",
                "uninstalling",
            ] {
                if has(&[&format!("--{s}")]) {
                    if s == "pending" {
                        statuses.extend(
                            ["pending-install", "pending-upgrade", "pending-rollback"]
                                .map(String::from),
                        );
                    } else {
                        statuses.push(s.to_string());
                    }
                }
            }
            let out = call(
                args,
                &helm::Request {
                    op: "list".into(),
                    namespace: ns.clone(),
                    all_namespaces: has(&["-A", "--all-namespaces"]),
                    // Helm 4 lists every status unless told which; Helm 3 only deployed
                    // and failed releases without `--all`.
                    all: has(&["-a", "--all"]) || major == 4,
                    statuses,
                    ..Default::default()
                },
            );
            if output_json || out.code != 0 {
                return out;
            }
            table(&out)
        }
        ["status", release] => json_only(
            output_json,
            call(
                args,
                &helm::Request {
                    op: "status".into(),
                    release: release.to_string(),
                    namespace: ns.clone(),
                    ..Default::default()
                },
            ),
        ),
        ["get", "values", release] => json_only(
            output_json,
            call(
                args,
                &helm::Request {
                    op: "get-values".into(),
                    release: release.to_string(),
                    namespace: ns.clone(),
                    all: has(&["-a", "--all"]),
                    ..Default::default()
                },
            ),
        ),
        ["history" | "hist", release] => json_only(
            output_json,
            call(
                args,
                &helm::Request {
                    op: "history".into(),
                    release: release.to_string(),
                    namespace: ns.clone(),
                    ..Default::default()
                },
            ),
        ),
        _ => Outcome::helm_error(format!(
            "unknown command \"{}\" for \"helm\"",
            words.first().unwrap_or(&"")
        )),
    }
}

fn json_only(json: bool, out: Outcome) -> Outcome {
    if json || out.code != 0 {
        return out;
    }
    // Human output is not simulated in detail; show the JSON pretty-printed.
    let pretty = serde_json::from_str::<Value>(&out.stdout)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or(out.stdout);
    Outcome::ok(pretty + "\n")
}

fn table(out: &Outcome) -> Outcome {
    let rows: Vec<Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
    let mut t = "NAME\tNAMESPACE\tREVISION\tUPDATED\tSTATUS\tCHART\tAPP VERSION\n".to_string();
    for r in rows {
        t.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            r["name"].as_str().unwrap_or_default(),
            r["namespace"].as_str().unwrap_or_default(),
            r["revision"].as_str().unwrap_or_default(),
            r["updated"].as_str().unwrap_or_default(),
            r["status"].as_str().unwrap_or_default(),
            r["chart"].as_str().unwrap_or_default(),
            r["app_version"].as_str().unwrap_or_default()
        ));
    }
    Outcome::ok(t)
}

fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'h' => n * 3_600_000,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n
            }
            'm' => n * 60_000,
            's' => n * 1000,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::from_millis(total))
}

/// Resolve the chart argument: `--repo URL NAME`, `oci://.../NAME`, or `alias/NAME` (which
/// needs `helm repo add`, unknown to the sim: the same error as an unadded alias).
fn chart_ref(args: &[String], chart: &str) -> Result<(String, String), String> {
    let version = flag_value(args, &["--version"]).unwrap_or_default();
    let name = if let Some(path) = chart.strip_prefix("oci://") {
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        if !path.starts_with("registry.istio.io/release/charts/") {
            return Err(format!(
                "failed to perform \"FetchReference\" on source: {chart}: not found"
            ));
        }
        name
    } else if let Some(repo) = flag_value(args, &["--repo"]) {
        let repo = repo.trim_end_matches('/');
        let known = crate::chart_repo::PUBLIC
            .iter()
            .any(|(_, r, _, _)| *r == repo)
            || repo.starts_with("http://127.0.0.1:");
        if !known {
            return Err(format!("chart \"{chart}\" not found in {repo} repository"));
        }
        chart.to_string()
    } else if let Some((alias, _)) = chart.split_once('/') {
        return Err(format!("repo {alias} not found"));
    } else {
        return Err(format!(
            "non-absolute URLs should be in form of repo_name/path_to_chart, got: {chart}"
        ));
    };
    Ok((name, version))
}

/// `-f` files in order, then `--set`/`--set-string`/`--set-json`, merged as Helm does.
fn collect_values(args: &[String]) -> Result<Value, String> {
    let mut values = json!({});
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if !matches!(
            flag,
            "-f" | "--values" | "--set" | "--set-string" | "--set-json"
        ) {
            continue;
        }
        let Some(arg) = inline.or_else(|| it.next().cloned()) else {
            continue;
        };
        match flag {
            "-f" | "--values" => {
                let text = if arg == "-" {
                    let mut s = String::new();
                    let _ = std::io::stdin().read_to_string(&mut s);
                    s
                } else {
                    std::fs::read_to_string(&arg)
                        .map_err(|_| format!("open {arg}: no such file or directory"))?
                };
                let v = if text.trim().is_empty() {
                    json!({})
                } else {
                    yaml(&text).map_err(|e| format!("failed to parse {arg}: {e}"))?
                };
                deep_merge(&mut values, &v);
            }
            _ => {
                for pair in split_top(&arg) {
                    let (path, raw) = pair.split_once('=').ok_or(format!(
                        "failed parsing --set data: key \"{pair}\" has no value"
                    ))?;
                    let v = match flag {
                        "--set-string" => json!(raw),
                        "--set-json" => serde_json::from_str(raw)
                            .map_err(|e| format!("failed parsing --set-json data {raw}: {e}"))?,
                        _ => typed(raw),
                    };
                    let mut cur = &mut values;
                    let parts: Vec<String> = split_path(path);
                    for (i, p) in parts.iter().enumerate() {
                        if i + 1 == parts.len() {
                            cur[p.as_str()] = v.clone();
                        } else {
                            if !cur[p.as_str()].is_object() {
                                cur[p.as_str()] = json!({});
                            }
                            cur = &mut cur[p.as_str()];
                        }
                    }
                }
            }
        }
    }
    Ok(values)
}

/// Split `a=1,b={x,y}` at top-level commas.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn split_path(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '.' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `--set` typing: true/false, integers, `{a,b}` lists, else strings.
fn typed(raw: &str) -> Value {
    if let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        return Value::Array(
            inner
                .split(',')
                .filter(|s| !s.is_empty())
                .map(typed)
                .collect(),
        );
    }
    match raw {
        "true" => json!(true),
        "false" => json!(false),
        "null" => Value::Null,
        _ => raw
            .parse::<i64>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| json!(raw)),
    }
}

fn deep_merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                deep_merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// The objects an install or upgrade applies, rendered by the real helm from the real chart;
/// with `--reuse-values` over the release's last values (asked of the cluster first).
fn render_release(
    args: &[String],
    op: &str,
    release: &str,
    chart: &str,
    version: &str,
    ns: &str,
    values: &Value,
) -> Result<Vec<Value>, Outcome> {
    let mut values = values.clone();
    if args.iter().any(|a| a == "--reuse-values") {
        let last = call(
            args,
            &helm::Request {
                op: "get-values".into(),
                release: release.to_string(),
                namespace: ns.to_string(),
                ..Default::default()
            },
        );
        if last.code == 0
            && let Ok(mut merged) = serde_json::from_str::<Value>(&last.stdout)
        {
            crate::store::merge_patch(&mut merged, &values);
            values = merged;
        }
    }
    let archive =
        crate::render::archive(chart, version, &repo_of(args)).map_err(Outcome::helm_error)?;
    let text = crate::render::template(release, &archive, ns, &values, &[]).map_err(|e| {
        let verb = if op == "install" {
            "INSTALLATION FAILED"
        } else {
            "UPGRADE FAILED"
        };
        Outcome::helm_error(format!("{verb}: {e}"))
    })?;
    crate::render::parse(&text).map_err(Outcome::helm_error)
}

fn template(args: &[String], rest: &[&str]) -> Outcome {
    let (release, chart) = match rest {
        [release, chart] => (release.to_string(), chart.to_string()),
        [chart] => ("release-name".to_string(), chart.to_string()),
        _ => return Outcome::helm_error("\"helm template\" requires at most 2 arguments"),
    };
    let (chart, version) = match chart_ref(args, &chart) {
        Ok(c) => c,
        Err(e) => return Outcome::helm_error(e),
    };
    let values = match collect_values(args) {
        Ok(v) => v,
        Err(e) => return Outcome::helm_error(e),
    };
    let ns = flag_value(args, &["-n", "--namespace"]).unwrap_or_else(|| "default".into());
    let archive = match crate::render::archive(&chart, &version, &repo_of(args)) {
        Ok(a) => a,
        Err(e) => return Outcome::helm_error(e),
    };
    let only = flag_values(args, &["-s", "--show-only"]);
    match crate::render::template(&release, &archive, &ns, &values, &only) {
        Ok(text) => Outcome::ok(text),
        Err(e) => Outcome::helm_error(e),
    }
}

/// The repository a chart comes from, as helm names it in errors.
fn repo_of(args: &[String]) -> String {
    flag_value(args, &["--repo"]).unwrap_or_else(|| "oci://registry.istio.io/release/charts".into())
}

/// Send a request to the cluster the kubeconfig names, as helm would reach the API server: over
/// TLS with the kubeconfig's CA and client certificate.
fn call(args: &[String], req: &helm::Request) -> Outcome {
    match call_response(args, req) {
        Ok(r) => Outcome {
            code: r.code,
            stdout: r.stdout,
            stderr: r.stderr,
        },
        Err(out) => out,
    }
}

/// The simulated helm's whole answer, or what helm prints when it cannot reach the cluster.
fn call_response(args: &[String], req: &helm::Request) -> Result<helm::Response, Outcome> {
    let client = kube_client(args).map_err(Outcome::helm_error)?;
    let body = serde_json::to_string(req).unwrap_or_default();
    match client.post_json("/sim/helm", &body) {
        Ok(r) if r.code == 200 => Ok(serde_json::from_str(&r.body).unwrap_or_default()),
        // client-go reports a Status body by its message: "Unauthorized" for a 401.
        Ok(r) => Err(Outcome::helm_error(format!(
            "Kubernetes cluster unreachable: {}",
            r.json()["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the server responded {}: {}", r.code, r.body.trim()))
        ))),
        Err(e) => Err(Outcome::helm_error(format!(
            "Kubernetes cluster unreachable: Get \"{}/version\": {e}",
            client.server
        ))),
    }
}

fn kube_client(args: &[String]) -> Result<crate::client::Client, String> {
    let path = flag_value(args, &["--kubeconfig"])
        .or_else(|| {
            std::env::var("KUBECONFIG")
                .ok()
                .and_then(|k| k.split(':').next().map(str::to_string))
        })
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| format!("{h}/.kube/config"))
        })
        .ok_or("Kubernetes cluster unreachable: no kubeconfig")?;
    let text = std::fs::read_to_string(&path).map_err(|_| {
        format!("Kubernetes cluster unreachable: stat {path}: no such file or directory")
    })?;
    let context = flag_value(args, &["--kube-context"]);
    crate::client::Client::from_kubeconfig(&text, context.as_deref())
        .map_err(|e| format!("Kubernetes cluster unreachable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_are_typed_and_nested() {
        let args: Vec<String> = [
            "--set",
            "a.b=1,c=true,d={x,y}",
            "--set-string",
            "e=2",
            "--set",
            "f\\.g=h",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let v = collect_values(&args).expect("values");
        assert_eq!(
            v,
            json!({"a": {"b": 1}, "c": true, "d": ["x", "y"], "e": "2", "f.g": "h"})
        );
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("5m0s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn env_is_expanded_in_k3d_configs() {
        // SAFETY-free: read an env var that is always set.
        let home = std::env::var("PATH").unwrap_or_default();
        assert_eq!(expand_env("a: $PATH"), format!("a: {home}"));
        assert_eq!(expand_env("a: ${PATH}!"), format!("a: {home}!"));
        assert_eq!(expand_env("cost: 5$"), "cost: 5$");
    }

    #[test]
    fn port_specs_parse() {
        assert_eq!(parse_port("8080:80@loadbalancer"), None);
        assert_eq!(parse_port("8080:80"), Some((8080, 80)));
        assert_eq!(parse_port("127.0.0.1:8443:443/tcp"), Some((8443, 443)));
        assert_eq!(parse_port("80"), Some((0, 80)));
    }

    #[test]
    fn helm_flag_sets_differ_by_major() {
        assert!(unknown_in(4, "--atomic"));
        assert!(!unknown_in(3, "--atomic"));
        assert!(unknown_in(3, "--rollback-on-failure"));
        let out = helm_cli(
            &["upgrade".into(), "--force".into()],
            4,
            false,
            Duration::ZERO,
        );
        assert_eq!(out.code, 1);
        assert_eq!(out.stderr, "Error: unknown flag: --force\n");
    }
}
