use std::collections::BTreeMap;

use super::*;
use crate::spec::types::PerTool;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

#[test]
fn defaults_are_the_pinned_releases_from_their_sites_into_the_home_cache() {
    let s = Settings::resolve(&ToolPaths::default(), false, &env(&[("HOME", "/h")])).expect("ok");
    assert_eq!(s.off_by, None);
    assert_eq!(s.cache_dir, PathBuf::from("/h/.cache/paddock"));
    assert_eq!(s.stall, STALL);
    assert_eq!(
        s.dest(Tool::K3d),
        PathBuf::from("/h/.cache/paddock/tools/k3d/5.9.0/k3d")
    );
    let (os, arch) = platform().expect("a supported platform");
    let k3d = s.source(Tool::K3d).expect("k3d");
    assert_eq!(
        k3d.url,
        format!("https://github.com/k3d-io/k3d/releases/download/v5.9.0/k3d-{os}-{arch}")
    );
    assert_eq!(
        k3d.checksum_url,
        "https://github.com/k3d-io/k3d/releases/download/v5.9.0/checksums.txt"
    );
    let helm = s.source(Tool::Helm).expect("helm");
    assert_eq!(
        helm.url,
        format!("https://get.helm.sh/helm-v4.1.4-{os}-{arch}.tar.gz")
    );
    assert_eq!(helm.checksum_url, format!("{}.sha256sum", helm.url));
    assert_eq!(helm.member, Some(format!("{os}-{arch}/helm")));
}

#[test]
fn the_environment_overrides_the_file_and_the_flag_overrides_both() {
    let config = ToolPaths {
        download: Some(true),
        versions: PerTool {
            k3d: Some("5.8.3".into()),
            helm: Some("v3.19.0".into()),
        },
        mirrors: PerTool {
            k3d: Some("https://file.test/k3d".into()),
            helm: Some("https://file.test/helm/".into()),
        },
        ..ToolPaths::default()
    };
    let s = Settings::resolve(&config, false, &env(&[])).expect("ok");
    assert_eq!(s.k3d.version, "5.8.3");
    assert_eq!(s.helm.version, "3.19.0");
    assert_eq!(s.helm.mirror, "https://file.test/helm");
    let vars = env(&[
        ("PADDOCK_K3D_MIRROR", "http://127.0.0.1:1/k3d"),
        ("PADDOCK_HELM_VERSION", "4.0.0"),
        ("PADDOCK_TOOLS_DOWNLOAD", "0"),
        ("PADDOCK_CACHE_DIR", "/c"),
        ("XDG_CACHE_HOME", "/x"),
        ("PADDOCK_DOWNLOAD_STALL_TIMEOUT", "1s"),
    ]);
    let s = Settings::resolve(&config, false, &vars).expect("ok");
    assert_eq!(s.k3d.mirror, "http://127.0.0.1:1/k3d");
    assert_eq!(s.helm.version, "4.0.0");
    assert_eq!(s.off_by, Some("PADDOCK_TOOLS_DOWNLOAD=0"));
    assert_eq!(s.cache_dir, PathBuf::from("/c"));
    assert_eq!(s.stall, Duration::from_secs(1));
    let s = Settings::resolve(&config, true, &env(&[("PADDOCK_TOOLS_DOWNLOAD", "1")])).expect("ok");
    assert_eq!(s.off_by, Some("--no-download"));
    let off = ToolPaths {
        download: Some(false),
        ..ToolPaths::default()
    };
    let s = Settings::resolve(&off, false, &env(&[("XDG_CACHE_HOME", "/x")])).expect("ok");
    assert_eq!(s.off_by, Some("`tools.download: false` in paddock.yaml"));
    assert_eq!(s.cache_dir, PathBuf::from("/x/paddock"));
}

#[test]
fn bad_variables_name_themselves_and_what_to_use() {
    for (var, value, help) in [
        ("PADDOCK_TOOLS_DOWNLOAD", "maybe", "use 1 or 0"),
        ("PADDOCK_K3D_VERSION", "4.4.8", "k3d 5.x"),
        ("PADDOCK_HELM_MIRROR", "get.helm.sh", "http:// or https://"),
        ("PADDOCK_DOWNLOAD_STALL_TIMEOUT", "soon", "such as `30s`"),
    ] {
        let err = Settings::resolve(&ToolPaths::default(), false, &env(&[(var, value)]))
            .expect_err(var)
            .to_string();
        assert!(
            err.starts_with(&format!("{var}=`{value}` is not valid")),
            "{err}"
        );
        assert!(err.contains(help), "{err}");
    }
}
