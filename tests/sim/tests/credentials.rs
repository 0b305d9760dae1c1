//! The credentials the fake `k3d` hands out and the API server checks (KUBERNETES.md, "TLS and
//! credentials in k3d kubeconfigs"): kubeconfigs with `https://<host>:<port>`, the server CA and
//! an admin client certificate with a SEC1 key; the serving certificate's names; certificates
//! that survive stop/start but not delete/create; `cluster delete` cleaning the default
//! kubeconfig; and a kubeconfig without client certificate meeting 401.

use base64::Engine;
use paddock_sim::client::Client;
use paddock_sim::knobs::Knobs;
use paddock_sim::world::ClusterRecord;
use serde_json::Value;

mod common;

use common::Home;

impl Home {
    fn ok(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(tool, args, stdin);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Create a cluster from a config whose top level ends with `extra` (YAML).
    fn create(&self, name: &str, extra: &str) {
        let cfg = format!(
            "apiVersion: k3d.io/v1alpha5\nkind: Simple\nmetadata:\n  name: {name}\n{extra}"
        );
        self.ok(
            "k3d",
            &["cluster", "create", name, "--config", "-"],
            Some(&cfg),
        );
    }

    fn kubeconfig(&self, name: &str) -> String {
        self.ok("k3d", &["kubeconfig", "get", name], None)
    }

    fn record(&self, name: &str) -> ClusterRecord {
        ClusterRecord::load(self.path(), name).expect("cluster record")
    }
}

const NO_MERGE: &str = "options:\n  kubeconfig:\n    updateDefaultKubeconfig: false\n";

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("kubeconfig yaml")
}

fn decoded(v: &Value) -> String {
    let b64 = v.as_str().expect("base64 data");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64"),
    )
    .expect("utf-8")
}

fn version(kubeconfig: &str) -> Result<u16, String> {
    Client::from_kubeconfig(kubeconfig, None)?
        .get("/version")
        .map(|r| r.code)
}

#[test]
fn k3d_kubeconfigs_carry_the_cluster_ca_and_an_admin_certificate_with_a_sec1_key() {
    let h = Home::new();
    h.create("creds", NO_MERGE);
    let text = h.kubeconfig("creds");
    let kc = yaml(&text);
    let port = h.record("creds").api_port;
    // No kubeAPI in the config: k3d writes its default host.
    assert_eq!(
        kc["clusters"][0]["cluster"]["server"],
        format!("https://0.0.0.0:{port}")
    );
    assert_eq!(kc["clusters"][0]["name"], "k3d-creds");
    assert_eq!(kc["contexts"][0]["name"], "k3d-creds");
    assert_eq!(kc["contexts"][0]["context"]["user"], "admin@k3d-creds");
    assert_eq!(kc["current-context"], "k3d-creds");
    let ca = decoded(&kc["clusters"][0]["cluster"]["certificate-authority-data"]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let user = &kc["users"][0];
    assert_eq!(user["name"], "admin@k3d-creds");
    let cert = decoded(&user["user"]["client-certificate-data"]);
    assert_eq!(
        cert.matches("-----BEGIN CERTIFICATE-----").count(),
        2,
        "the admin certificate and the client CA, as k3s writes them: {cert}"
    );
    let key = decoded(&user["user"]["client-key-data"]);
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{key}");
    assert!(!text.contains("token:"), "{text}");
    // 0.0.0.0 reaches loopback, and the serving certificate lists it.
    assert_eq!(version(&text), Ok(200));
}

#[test]
fn the_kubeconfig_host_is_kube_api_host_else_host_ip_else_0_0_0_0() {
    let h = Home::new();
    for (name, api, host) in [
        ("bare", "", "0.0.0.0"),
        ("hostip", "kubeAPI:\n  hostIP: \"127.0.0.1\"\n", "127.0.0.1"),
        (
            "host",
            "kubeAPI:\n  host: localhost\n  hostIP: \"127.0.0.1\"\n",
            "localhost",
        ),
    ] {
        h.create(name, &format!("{api}{NO_MERGE}"));
        let text = h.kubeconfig(name);
        let port = h.record(name).api_port;
        assert_eq!(
            yaml(&text)["clusters"][0]["cluster"]["server"],
            format!("https://{host}:{port}"),
            "{name}"
        );
        let list: Value =
            serde_json::from_str(&h.ok("k3d", &["cluster", "list", name, "-o", "json"], None))
                .expect("json");
        assert_eq!(
            list[0]["nodes"][0]["runtimeLabels"]["k3d.server.api.host"], host,
            "{name}"
        );
        assert_eq!(version(&text), Ok(200), "{name} answers at {host}");
    }
}

#[test]
fn the_serving_certificate_lists_k3s_names_node_ips_and_tls_sans() {
    use rustls::pki_types::{CertificateDer, ServerName};
    let h = Home::new();
    h.create(
        "names",
        "servers: 2\nagents: 1\noptions:\n  k3s:\n    extraArgs:\n      - arg: --tls-san=paddock.test,10.9.8.7\n        nodeFilters: ['server:*']\n      - arg: --tls-san=agents-only.test\n        nodeFilters: ['agent:*']\n  kubeconfig:\n    updateDefaultKubeconfig: false\n",
    );
    let pki = h.record("names").pki.expect("certificates in the record");
    let der = paddock_sim::tls::certs(&pki.serving_cert).expect("pem")[0].clone();
    let cert = webpki::EndEntityCert::try_from(&der as &CertificateDer).expect("parse");
    let valid = |name: &str| {
        let n = ServerName::try_from(name.to_string()).expect("name");
        cert.verify_is_valid_for_subject_name(&n).is_ok()
    };
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "0.0.0.0",
        "172.18.0.2",
        "172.18.0.3",
        "k3d-names-serverlb",
        "paddock.test",
        "10.9.8.7",
    ] {
        assert!(valid(name), "the serving certificate lists {name}");
    }
    for name in ["agents-only.test", "172.18.0.4", "example.com", "10.9.8.8"] {
        assert!(!valid(name), "the serving certificate does not list {name}");
    }
}

#[test]
fn stop_and_start_keep_the_kubeconfig_valid_and_a_new_cluster_gets_a_new_ca() {
    let h = Home::new();
    let port = paddock_sim::world::free_port().expect("port");
    let cfg = format!("kubeAPI:\n  hostIP: \"127.0.0.1\"\n  hostPort: \"{port}\"\n{NO_MERGE}");
    h.create("keep", &cfg);
    let before = h.kubeconfig("keep");
    assert_eq!(version(&before), Ok(200));
    h.ok("k3d", &["cluster", "stop", "keep"], None);
    assert!(
        version(&before).is_err(),
        "a stopped cluster does not answer"
    );
    h.ok("k3d", &["cluster", "start", "keep"], None);
    assert_eq!(version(&before), Ok(200), "the old kubeconfig still works");
    assert_eq!(
        h.kubeconfig("keep"),
        before,
        "same certificates after start"
    );

    h.ok("k3d", &["cluster", "delete", "keep"], None);
    h.create("keep", &cfg);
    let after = h.kubeconfig("keep");
    let ca = |t: &str| yaml(t)["clusters"][0]["cluster"]["certificate-authority-data"].clone();
    assert_ne!(ca(&after), ca(&before), "a re-created cluster has a new CA");
    assert_eq!(version(&after), Ok(200));
    let refused = version(&before).expect_err("the old CA does not verify the new server");
    assert!(
        refused.contains("certificate") || refused.contains("UnknownIssuer"),
        "{refused}"
    );
}

#[test]
fn cluster_delete_removes_its_entries_from_the_default_kubeconfig() {
    let h = Home::new();
    let other = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\ncurrent-context: other\nusers:\n- name: other\n  user: {}\n";
    std::fs::write(h.kubeconfig_path(), other).expect("seed");
    h.create("first", "");
    h.create("second", "");
    h.ok("k3d", &["kubeconfig", "write", "second"], None);
    let standalone = h.path().join(".config/k3d/kubeconfig-second.yaml");
    assert!(standalone.is_file());
    let names = |key: &str| -> Vec<String> {
        let cfg = yaml(&std::fs::read_to_string(h.kubeconfig_path()).expect("read"));
        cfg[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    };
    let current = || {
        yaml(&std::fs::read_to_string(h.kubeconfig_path()).expect("read"))["current-context"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(names("contexts"), ["other", "k3d-first", "k3d-second"]);
    assert_eq!(current(), "k3d-second");

    h.ok("k3d", &["cluster", "delete", "second"], None);
    assert_eq!(names("clusters"), ["other", "k3d-first"]);
    assert_eq!(names("contexts"), ["other", "k3d-first"]);
    assert_eq!(names("users"), ["other", "admin@k3d-first"]);
    assert_ne!(
        current(),
        "k3d-second",
        "current-context moved to another context"
    );
    assert!(!standalone.exists(), "the standalone kubeconfig went too");

    h.ok("k3d", &["cluster", "delete", "first"], None);
    assert_eq!(names("contexts"), ["other"]);
    assert_eq!(names("users"), ["other"]);
    assert_eq!(current(), "other");
}

#[test]
fn a_kubeconfig_without_client_certificate_gets_401_everywhere() {
    let h = Home::new();
    h.create("anon", NO_MERGE);
    Knobs {
        kubeconfig_without_client_cert: true,
        ..Knobs::default()
    }
    .save(h.path())
    .expect("knobs");
    let text = h.kubeconfig("anon");
    let kc = yaml(&text);
    assert!(
        kc["users"][0]["user"]["client-certificate-data"].is_null(),
        "{text}"
    );
    assert!(
        kc["users"][0]["user"]["client-key-data"].is_null(),
        "{text}"
    );
    assert!(!kc["clusters"][0]["cluster"]["certificate-authority-data"].is_null());
    let client = Client::from_kubeconfig(&text, None).expect("client");
    for path in ["/version", "/api/v1/namespaces", "/sim/requests"] {
        let r = client.get(path).expect("an answer");
        assert_eq!(r.code, 401, "{path}: {}", r.body);
        let status = r.json();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Unauthorized");
        assert_eq!(status["message"], "Unauthorized");
        assert_eq!(status["code"], 401);
    }
    let path = h.path().join("anon.kubeconfig");
    std::fs::write(&path, &text).expect("write");
    let path = path.display().to_string();
    let helm = h.run(
        "helm",
        &["list", "-A", "-o", "json", "--kubeconfig", &path],
        None,
    );
    assert_eq!(helm.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&helm.stderr),
        "Error: Kubernetes cluster unreachable: Unauthorized\n"
    );
    // The record's own credentials are whole: the knob only changes what k3d prints.
    assert_eq!(version(&h.record("anon").kubeconfig()), Ok(200));
}
