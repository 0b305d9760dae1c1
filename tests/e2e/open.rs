//! `paddock open ci kiali` on a real machine: the URL it prints answers (Kiali's own page,
//! through the real API server's and kubelet's port forwarding), the pod it names is the one
//! kubectl sees, and Ctrl-C ends it with exit 0 and closes the port.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{CiCopy, enabled, machine, ok};

#[test]
fn open_reaches_kiali_on_a_real_machine() {
    if !enabled() {
        return;
    }
    let _machine = machine();
    let copy = CiCopy::new();
    copy.edit_ci(|text| format!("{text}addons: [prometheus, kiali]\n"));
    ok(&copy.run(&["up", "ci"]), "up with kiali");
    let mut child = copy
        .command(&["open", "ci", "kiali", "--no-browser", "-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("paddock open");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("a line");
    let v: Value = serde_json::from_str(&line).expect("one JSON object");
    let url = v["url"].as_str().expect("url").to_string();
    let kubeconfig = copy.kubeconfig();
    let pods = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "get",
            "pods",
            "-n",
            "istio-system",
            "-l",
            "app.kubernetes.io/name=kiali",
        ])
        .args(["-o", "jsonpath={.items[*].metadata.name}"])
        .output()
        .expect("kubectl");
    assert_eq!(
        String::from_utf8_lossy(&pods.stdout).trim(),
        v["pod"].as_str().expect("pod")
    );
    let code = Command::new("curl")
        .args(["-s", "-L", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&code.stdout), "200", "{url}");
    let st = Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "open did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0));
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("port");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
