//! The metrics page as Prometheus reads it, and the optional loopback TCP listener.

use std::net::SocketAddr;
use std::process::Command;

use paddock::daemon::metrics::{bind_metrics, serve_metrics, serve_metrics_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Python with Prometheus' client library (`scripts/install-tools` puts it in
/// `.tools/python`): the `PYTHONPATH` to run it with, or `None` (after saying why) to skip.
fn prometheus_parser() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = root.join(".tools/python");
    let works = || {
        Command::new("python3")
            .args([
                "-c",
                "import prometheus_client.parser, prometheus_client.openmetrics.parser",
            ])
            .env("PYTHONPATH", &lib)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works() {
        let _ = Command::new(root.join("scripts/install-tools")).status();
    }
    if works() {
        return Some(lib);
    }
    assert!(
        !paddock_sim::real_tools::required(),
        "python3 with prometheus_client is required (PADDOCK_REQUIRE_TOOLS=1); run scripts/install-tools"
    );
    eprintln!(
        "skipping: python3 with prometheus_client not found; run scripts/install-tools to enable this test"
    );
    None
}

/// Every family and sample as one of Prometheus' Python parsers reads the page: `text` (the
/// Prometheus text format) or `openmetrics` (the strict OpenMetrics parser).
fn parse(lib: &std::path::Path, parser: &str, page: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, page).expect("write");
    let module = match parser {
        "text" => "prometheus_client.parser",
        _ => "prometheus_client.openmetrics.parser",
    };
    let script = format!(
        "import json, sys\nfrom {module} import text_string_to_metric_families as parse\n\
         out = {{f.name: {{'type': f.type, 'samples': [[s.name, s.labels, s.value] for s in f.samples]}}\n\
                for f in parse(open(sys.argv[1]).read())}}\nprint(json.dumps(out))"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .arg(&file)
        .env("PYTHONPATH", lib)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "the {parser} parser rejects the page: {}\n{page}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_parses_with_prometheus_own_parsers() {
    let Some(lib) = prometheus_parser() else {
        return;
    };
    let d = Daemon::start();
    let text = get(&d.socket, "/metrics").await.text();
    let accept = [("accept", "application/openmetrics-text; version=1.0.0")];
    let openmetrics = api_support::call(&d.socket, "GET", "/metrics", &accept, vec![])
        .await
        .text();
    d.stop().await;
    let expected = [
        ("paddock_operations_started", "counter"),
        ("paddock_operations_finished", "counter"),
        ("paddock_operation_duration_seconds", "histogram"),
        ("paddock_step_duration_seconds", "histogram"),
        ("paddock_cluster_drift_steps", "gauge"),
        ("paddock_schedule_next_run_timestamp_seconds", "gauge"),
        ("paddock_source_commit_info", "gauge"),
        ("paddock_source_commit_taken_timestamp_seconds", "gauge"),
        ("paddock_start_time_seconds", "gauge"),
    ];
    for (parser, page) in [("text", &text), ("openmetrics", &openmetrics)] {
        let families = parse(&lib, parser, page);
        for (name, kind) in expected {
            let family = &families[name];
            assert_eq!(family["type"], kind, "{parser}: {name} in {families:#}");
            assert!(
                !family["samples"].as_array().expect("samples").is_empty(),
                "{parser}: {name} has samples"
            );
        }
    }
    let families = parse(&lib, "openmetrics", &openmetrics);
    let sample = |family: &str, sample: &str| -> Vec<(Value, f64)> {
        families[family]["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .filter(|s| s[0] == sample)
            .map(|s| (s[1].clone(), s[2].as_f64().expect("value")))
            .collect()
    };
    assert_eq!(
        sample(
            "paddock_operations_finished",
            "paddock_operations_finished_total"
        ),
        [(
            json!({"kind": "up", "cluster": "dev", "state": "succeeded"}),
            1.0
        )]
    );
    assert_eq!(
        sample(
            "paddock_step_duration_seconds",
            "paddock_step_duration_seconds_count"
        ),
        [(json!({"step": "restart"}), 1.0)],
        "step names cut to their first segment"
    );
    assert_eq!(
        sample(
            "paddock_operation_duration_seconds",
            "paddock_operation_duration_seconds_sum"
        ),
        [(json!({"kind": "up"}), 8.0)]
    );
    let drift = sample("paddock_cluster_drift_steps", "paddock_cluster_drift_steps");
    assert!(
        drift.contains(&(json!({"cluster": "we\"ird\\name"}), 0.0)),
        "label values escaped: {drift:?}"
    );
    assert_eq!(
        sample(
            "paddock_schedule_next_run_timestamp_seconds",
            "paddock_schedule_next_run_timestamp_seconds"
        ),
        [(
            json!({"cluster": "ci", "schedule": "nightly"}),
            1_777_680_000.0
        )]
    );
    assert_eq!(
        sample("paddock_source_commit_info", "paddock_source_commit_info"),
        [(json!({"commit": "4b825dc"}), 1.0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_on_loopback_only() {
    let backend: Arc<dyn Backend> = TestBackend::new(8);
    for addr in ["0.0.0.0:9464", "192.0.2.1:9464", "[::]:9464"] {
        let addr: SocketAddr = addr.parse().expect("address");
        let e = serve_metrics(addr, backend.clone(), CancellationToken::new())
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            format!(
                "refusing to serve metrics on {addr}: not a loopback address; use 127.0.0.1 or ::1"
            )
        );
    }

    let listener = bind_metrics("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_metrics_on(listener, backend, shutdown.clone()));
    let fetch = |path: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    };
    let page = fetch("/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("content-type: text/plain; version=0.0.4"),
        "{page}"
    );
    assert!(page.contains("paddock_start_time_seconds"), "{page}");
    let other = fetch("/v1/health").await;
    assert!(
        other.starts_with("HTTP/1.1 404"),
        "only the metrics are served there: {other}"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ends")
        .expect("join")
        .expect("ok");
}
