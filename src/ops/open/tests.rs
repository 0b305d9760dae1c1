use super::*;
use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

fn pod(name: &str, ready: bool, terminating: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("istio-system".into()),
            deletion_timestamp: terminating.then(|| Time(Default::default())),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "grafana".into(),
                ports: Some(vec![
                    ContainerPort {
                        name: Some("profiling".into()),
                        container_port: 6060,
                        ..Default::default()
                    },
                    ContainerPort {
                        name: Some("grafana".into()),
                        container_port: 3000,
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn port(port: i32, target: Option<IntOrString>) -> ServicePort {
    ServicePort {
        port,
        target_port: target,
        ..Default::default()
    }
}

#[test]
fn the_pod_is_ready_and_not_terminating() {
    let pods = [
        pod("a-old", true, true),
        pod("b-starting", false, false),
        pod("c-good", true, false),
    ];
    let name = |p: Option<&Pod>| p.and_then(|p| p.metadata.name.clone());
    assert_eq!(name(pick_pod(&pods)), Some("c-good".to_string()));
    assert_eq!(name(pick_pod(&pods[..2])), None);
}

#[test]
fn the_target_port_is_a_number_a_name_or_the_service_port() {
    let p = pod("g", true, false);
    let named = port(3000, Some(IntOrString::String("grafana".into())));
    assert_eq!(target_port(&named, &p, "grafana").expect("named"), 3000);
    let number = port(80, Some(IntOrString::Int(3000)));
    assert_eq!(target_port(&number, &p, "grafana").expect("number"), 3000);
    assert_eq!(
        target_port(&port(20001, None), &p, "kiali").expect("none"),
        20001
    );
    let missing = port(80, Some(IntOrString::String("http".into())));
    let e = target_port(&missing, &p, "grafana").expect_err("no such name");
    assert_eq!(
        e.to_string(),
        "pod istio-system/g has no container port named http (targetPort of Service grafana)"
    );
}

#[test]
fn every_known_ui_is_an_addon_paddock_ships() {
    for u in UIS {
        let file = format!("{}/addons/{}.yaml", env!("CARGO_MANIFEST_DIR"), u.addon);
        assert!(std::path::Path::new(&file).exists(), "{file}");
    }
}
