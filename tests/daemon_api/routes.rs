//! Every route answers as `docs/api/openapi.yaml` says, with the model's JSON.

use super::*;
use api_support::{Reply, call, send};

async fn checked(
    d: &Daemon,
    method: &str,
    template: &str,
    uri: &str,
    body: Option<Value>,
) -> Reply {
    let r = match body {
        Some(b) => post_json(&d.socket, uri, &b).await,
        None => call(&d.socket, method, uri, &[], Vec::new()).await,
    };
    openapi().check(template, method, &r);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_clusters_and_operations_answer_as_documented() {
    let d = Daemon::start();
    let r = checked(&d, "GET", "/v1/health", "/v1/health", None).await;
    assert_eq!(r.json()["ok"], true);

    let r = checked(&d, "GET", "/v1/clusters", "/v1/clusters", None).await;
    let clusters: Vec<ClusterView> = serde_json::from_slice(&r.body).expect("clusters");
    assert_eq!(clusters, d.backend.clusters);

    let r = checked(&d, "GET", "/v1/clusters/{name}", "/v1/clusters/ci", None).await;
    assert_eq!(r.status, 200);
    let ci: ClusterView = serde_json::from_slice(&r.body).expect("cluster");
    assert_eq!(ci, d.backend.clusters[1]);

    let r = checked(&d, "GET", "/v1/clusters/{name}", "/v1/clusters/nope", None).await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no cluster nope"), "{}", r.error());

    let r = checked(&d, "GET", "/v1/operations", "/v1/operations", None).await;
    let ids: Vec<Value> = r
        .json()
        .as_array()
        .expect("array")
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(ids, ["op-2", "op-1"], "newest first");

    let r = checked(
        &d,
        "GET",
        "/v1/operations/{id}",
        "/v1/operations/op-1",
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["outcomes"][0]["error"], serde_json::Value::Null);
    let r = checked(
        &d,
        "GET",
        "/v1/operations/{id}",
        "/v1/operations/op-9",
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "no operation op-9");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_operation_is_accepted_with_its_location() {
    let d = Daemon::start();
    let r = checked(
        &d,
        "POST",
        "/v1/operations",
        "/v1/operations",
        Some(json!({"cluster": "dev", "kind": "up"})),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("location"), Some("/v1/operations/op-3"));
    assert_eq!(r.json()["state"], "queued");
    let r = checked(
        &d,
        "GET",
        "/v1/operations/{id}",
        "/v1/operations/op-3",
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    let every_field = json!({"cluster": "ci", "kind": "upgrade", "to": "1.30.3", "strategy": "canary",
        "pauseAfter": "move-tags", "graceSecs": 30, "namespaces": ["shop"], "staleOnly": true});
    let r = checked(
        &d,
        "POST",
        "/v1/operations",
        "/v1/operations",
        Some(every_field),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["kind"], "upgrade");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_operation_request_gets_the_status_that_says_why() {
    let d = Daemon::start();
    let json = "application/json";
    let cases: &[(&str, Option<&str>, &str, u16, &str)] = &[
        (
            "truncated JSON",
            Some(json),
            r#"{"cluster": "dev", "kind": "#,
            400,
            "not valid JSON: EOF while parsing a value at line 1 column 27",
        ),
        (
            "not JSON",
            Some(json),
            "cluster=dev",
            400,
            "expected value at line 1 column 1",
        ),
        (
            "trailing garbage",
            Some(json),
            r#"{"cluster":"dev","kind":"up"} x"#,
            400,
            "trailing characters at line 1 column 31",
        ),
        ("empty body", Some(json), "", 400, "EOF while parsing"),
        (
            "unknown field",
            Some(json),
            r#"{"cluster":"dev","kind":"up","force":true}"#,
            422,
            "unknown field `force`",
        ),
        (
            "unknown kind",
            Some(json),
            r#"{"cluster":"dev","kind":"explode"}"#,
            422,
            "field kind: unknown variant `explode`, expected one of `up`, `upgrade`, `restart` at line 1",
        ),
        (
            "missing cluster",
            Some(json),
            r#"{"kind":"up"}"#,
            422,
            "missing field `cluster`",
        ),
        (
            "negative grace",
            Some(json),
            r#"{"cluster":"dev","kind":"up","graceSecs":-1}"#,
            422,
            "field graceSecs: invalid value",
        ),
        (
            "a namespace not a string",
            Some(json),
            r#"{"cluster":"dev","kind":"restart","namespaces":[1]}"#,
            422,
            "field namespaces[0]: invalid type",
        ),
        (
            "unknown cluster",
            Some(json),
            r#"{"cluster":"nope","kind":"up"}"#,
            404,
            "no cluster nope",
        ),
        (
            "impossible strategy",
            Some(json),
            r#"{"cluster":"dev","kind":"upgrade","strategy":"yolo"}"#,
            422,
            "strategy must be canary or in-place",
        ),
        (
            "text",
            Some("text/plain"),
            r#"{"cluster":"dev","kind":"up"}"#,
            415,
            "must be JSON with content-type application/json, not text/plain",
        ),
        (
            "no content type",
            None,
            r#"{"cluster":"dev","kind":"up"}"#,
            415,
            "not none",
        ),
        (
            "json with a charset",
            Some("application/json; charset=utf-8"),
            r#"{"cluster":"dev","kind":"up"}"#,
            202,
            "",
        ),
    ];
    for (what, content_type, body, status, message) in cases {
        let headers: Vec<(&str, &str)> =
            content_type.iter().map(|c| ("content-type", *c)).collect();
        let r = call(
            &d.socket,
            "POST",
            "/v1/operations",
            &headers,
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        openapi().check("/v1/operations", "POST", &r);
        if *status >= 400 {
            assert!(r.error().contains(message), "{what}: {}", r.error());
        }
    }
    d.backend.shutting_down.store(true, Ordering::SeqCst);
    let r = checked(
        &d,
        "POST",
        "/v1/operations",
        "/v1/operations",
        Some(json!({"cluster": "dev", "kind": "up"})),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(r.error().contains("shutting down"), "{}", r.error());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_answers_the_operation_or_why_not() {
    let d = Daemon::start();
    let cancel = "/v1/operations/{id}/cancel";
    let r = checked(&d, "POST", cancel, "/v1/operations/op-2/cancel", None).await;
    assert_eq!(
        (r.status, r.json()["state"].clone()),
        (200, json!("cancelled"))
    );
    let r = checked(&d, "POST", cancel, "/v1/operations/op-1/cancel", None).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error(), "operation op-1 has already finished");
    let r = checked(&d, "POST", cancel, "/v1/operations/op-7/cancel", None).await;
    assert_eq!(r.status, 404);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operations_events_are_replayed_then_followed_to_its_end() {
    let d = Daemon::start();
    let template = "/v1/operations/{id}/events";
    // A finished operation: its events, and the stream ends.
    let resp = send(&d.socket, "GET", "/v1/operations/op-1/events", &[], vec![]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let messages = SseReader::new(resp.into_body())
        .all(Duration::from_secs(5))
        .await;
    let events: Vec<StreamEvent> = messages
        .iter()
        .map(|m| {
            openapi().check_sse(template, m);
            serde_json::from_str(&m.data).expect("a stream event")
        })
        .collect();
    assert_eq!(events, d.backend.ops().events["op-1"]);

    // A running one: what happened so far, then what happens (its own events only), up to its end.
    let resp = send(&d.socket, "GET", "/v1/operations/op-2/events", &[], vec![]).await;
    let mut stream = SseReader::new(resp.into_body());
    let first = stream.next().await.expect("the replayed event");
    assert!(first.data.contains("restart/ns/a"), "{first:?}");
    d.backend.emit(step("op-1", "not-this-one", "started"));
    d.backend.emit(step("op-2", "restart/ns/b", "done"));
    d.backend.emit(end("op-2", false));
    d.backend.emit(step("op-2", "after-the-end", "started"));
    let rest = stream.all(Duration::from_secs(5)).await;
    let steps: Vec<Value> = rest
        .iter()
        .map(|m| {
            openapi().check_sse(template, m);
            serde_json::from_str::<Value>(&m.data).expect("json")["event"].clone()
        })
        .collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[0]["step"], "restart/ns/b");
    assert_eq!(steps[1]["event"], "end");

    let r = checked(&d, "GET", template, "/v1/operations/op-9/events", None).await;
    assert_eq!(r.status, 404);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_of_every_operation_is_live() {
    let d = Daemon::start();
    let resp = send(&d.socket, "GET", "/v1/events", &[], vec![]).await;
    assert_eq!(resp.status(), 200);
    let mut stream = SseReader::new(resp.into_body());
    d.backend.emit(step("op-1", "a", "started"));
    d.backend.emit(step("op-2", "b", "started"));
    for want in ["op-1", "op-2"] {
        let m = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("in time")
            .expect("a message");
        openapi().check_sse("/v1/events", &m);
        assert!(m.data.contains(want), "{m:?}");
    }
    d.stop().await;
}

/// Events sent faster than a stream is read overflow the broadcast channel; the stream takes
/// them again from the operation's record and misses none.
#[tokio::test(flavor = "current_thread")]
async fn a_stream_that_falls_behind_misses_no_event_of_its_operation() {
    let d = Daemon::start_with(Limits::default(), TestBackend::new(4));
    let resp = send(&d.socket, "GET", "/v1/operations/op-2/events", &[], vec![]).await;
    let mut stream = SseReader::new(resp.into_body());
    stream.next().await.expect("the replayed event");
    // One burst on this single thread: the stream cannot read between the sends.
    for i in 0..40 {
        d.backend.emit(step("op-2", &format!("s{i}"), "done"));
    }
    d.backend.emit(end("op-2", true));
    let rest = stream.all(Duration::from_secs(5)).await;
    let names: Vec<String> = rest
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&m.data).expect("json");
            v["event"]["step"].as_str().unwrap_or("end").to_string()
        })
        .collect();
    let want: Vec<String> = (0..40)
        .map(|i| format!("s{i}"))
        .chain(["end".to_string()])
        .collect();
    assert_eq!(names, want);

    // The stream of every operation says how many it missed.
    let resp = send(&d.socket, "GET", "/v1/events", &[], vec![]).await;
    let mut all = SseReader::new(resp.into_body());
    for i in 0..10 {
        d.backend.emit(step("op-1", &format!("x{i}"), "done"));
    }
    let m = all.next().await.expect("a message");
    assert_eq!(m.event.as_deref(), Some("lagged"), "{m:?}");
    assert_eq!(m.data, r#"{"missed":6}"#);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_json_404_and_405() {
    let d = Daemon::start();
    for (method, uri, status) in [
        ("GET", "/v2/clusters", 404),
        ("GET", "/v1/clusters/", 404),
        ("GET", "/", 404),
        ("DELETE", "/v1/health", 405),
        ("POST", "/v1/clusters", 405),
        ("GET", "/v1/operations/op-1/cancel", 405),
        ("PUT", "/metrics", 405),
    ] {
        let r = call(&d.socket, method, uri, &[], vec![]).await;
        assert_eq!(r.status, status, "{method} {uri}: {}", r.text());
        openapi().check_unrouted(&r);
    }
    let r = call(&d.socket, "DELETE", "/v1/health", &[], vec![]).await;
    assert_eq!(r.error(), "method DELETE is not allowed on /v1/health");
    assert_eq!(r.header("allow"), Some("GET,HEAD"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_in_the_openapi_document_is_served() {
    let d = Daemon::start();
    for (template, method) in openapi().operations() {
        let uri = template.replace("{name}", "dev").replace("{id}", "op-1");
        let body = if method == "POST" && uri == "/v1/operations" {
            json!({"cluster": "dev", "kind": "up"})
                .to_string()
                .into_bytes()
        } else {
            vec![]
        };
        let resp = send(
            &d.socket,
            &method,
            &uri,
            &[("content-type", "application/json")],
            body,
        )
        .await;
        let status = resp.status().as_u16();
        // Documented, and not the answer of a path the router lacks.
        assert!(
            matches!(status, 200 | 202 | 409),
            "{method} {template}: {status}"
        );
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_or_openmetrics_when_asked() {
    let d = Daemon::start();
    let r = checked(&d, "GET", "/metrics", "/metrics", None).await;
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.text().contains("paddock_start_time_seconds 1777000000"),
        "{}",
        r.text()
    );
    let accept = [(
        "accept",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )];
    let r = call(&d.socket, "GET", "/metrics", &accept, vec![]).await;
    openapi().check("/metrics", "GET", &r);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    d.stop().await;
}

/// The schemas are the model's types exactly: each type, with every field set and with none of
/// its optional ones, validates; a field the type lacks does not.
#[test]
fn the_model_types_match_their_schemas() {
    let b = TestBackend::new(1);
    let ops = b.ops();
    let cases: Vec<(&str, Value)> = vec![
        ("Health", serde_json::to_value(b.health()).expect("json")),
        (
            "ClusterView",
            serde_json::to_value(&b.clusters[0]).expect("json"),
        ),
        (
            "ClusterView",
            serde_json::to_value(&b.clusters[1]).expect("json"),
        ),
        (
            "OperationView",
            serde_json::to_value(&ops.list[0]).expect("json"),
        ),
        (
            "OperationView",
            serde_json::to_value(&ops.list[1]).expect("json"),
        ),
        (
            "StreamEvent",
            serde_json::to_value(end("op-1", true)).expect("json"),
        ),
        ("ApiError", json!({"error": "e"})),
        (
            "OperationRequest",
            json!({"cluster": "dev", "kind": "restart"}),
        ),
        (
            "OperationRequest",
            serde_json::to_value(OperationRequest {
                cluster: "dev".into(),
                kind: OperationKind::Upgrade,
                to: Some("1.30.3".into()),
                strategy: Some("canary".into()),
                pause_after: Some("x".into()),
                grace_secs: Some(5),
                namespaces: vec!["a".into()],
                stale_only: true,
                adopt: false,
            })
            .expect("json"),
        ),
    ];
    for (name, value) in &cases {
        let v = openapi().schema(name);
        let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{value:#}");
        let mut extra = value.clone();
        extra["notInTheModel"] = json!(1);
        assert!(!v.is_valid(&extra), "{name} takes a field the model lacks");
    }
    // What the schema allows for a request, the model reads (and the other way round).
    let minimal: OperationRequest =
        serde_json::from_value(json!({"cluster": "dev", "kind": "up"})).expect("minimal request");
    assert_eq!(minimal.namespaces, Vec::<String>::new());
    assert!(
        !openapi()
            .schema("OperationRequest")
            .is_valid(&json!({"kind": "up"}))
    );
}
