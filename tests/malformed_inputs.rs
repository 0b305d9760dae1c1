//! Every kind of bad input gets a diagnostic naming the right file, line and field.

use std::fs;
use std::path::Path;

use paddock::spec::{Diagnostic, validate_repo};

const PROFILE: &str = "\
name: p
k3d:
  servers: 1
  ports:
    - port: \"127.0.0.1:8080:80\"
      nodeFilters: [loadbalancer]
istio:
  version: 1.30.3
  gateways:
    - name: istio-ingress
";

const CLUSTER: &str = "\
name: c
profile: p
";

const ADDON_A: &str = "\
name: a
chart:
  repo: https://example.test/charts
  name: a
  version: 1.0.0
";

const ADDON_B: &str = "\
name: b
chart:
  repo: https://example.test/charts
  name: b
  version: 2.0.0
needs: [a]
";

struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    file: &'static str,
    line: u64,
    field: &'static str,
    message: &'static str,
    help: &'static str,
}

fn write_repo(dir: &Path, files: &[(&str, &str)]) {
    let base = [
        ("profiles/p.yaml", PROFILE),
        ("clusters/c.yaml", CLUSTER),
        ("addons/a.yaml", ADDON_A),
        ("addons/b.yaml", ADDON_B),
    ];
    for (path, text) in base.iter().chain(files.iter()) {
        let full = dir.join(path);
        fs::create_dir_all(full.parent().expect("has parent")).expect("mkdir");
        fs::write(full, text).expect("write");
    }
}

const CASES: &[Case] = &[
    Case {
        name: "unknown field with a close match",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  versoin: 1.30.3\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "istio.versoin",
        message: "unknown field `versoin`",
        help: "did you mean `version`?",
    },
    Case {
        name: "unknown top-level field in a profile",
        files: &[("profiles/p.yaml", "name: p\naddon: [a]\n")],
        file: "profiles/p.yaml",
        line: 2,
        field: "addon",
        message: "unknown field `addon`",
        help: "did you mean `addons`?",
    },
    Case {
        name: "unknown top-level field in a cluster header",
        files: &[("clusters/c.yaml", "name: c\nprofil: p\n")],
        file: "clusters/c.yaml",
        line: 2,
        field: "profil",
        message: "unknown field `profil`",
        help: "did you mean `profile`?",
    },
    Case {
        name: "wrong type: string where a list belongs",
        files: &[("clusters/c.yaml", "name: c\nprofile: p\naddons: a\n")],
        file: "clusters/c.yaml",
        line: 3,
        field: "addons",
        message: "wrong type: expected a list",
        help: "write a list here",
    },
    Case {
        name: "wrong type: boolean field given a word",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nnamespaces:\n  - name: web\n    canary: yes\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "namespaces[0].canary",
        message: "wrong type: expected a boolean",
        help: "write a boolean here",
    },
    Case {
        name: "version that is not semver",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  version: \"1.30\"\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "istio.version",
        message: "invalid Istio version `1.30`",
        help: "not a semantic version",
    },
    Case {
        name: "version written as a bare number",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  version: 1.30\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "istio.version",
        message: "wrong type: expected a string, found floating point",
        help: "put the value in quotes",
    },
    Case {
        name: "version with a leading v",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  version: v1.30.3\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "istio.version",
        message: "invalid Istio version `v1.30.3`",
        help: "without the leading `v`",
    },
    Case {
        name: "cron with four fields",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * *\"\n    action: reconcile\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "schedules[0].cron",
        message: "invalid cron expression `0 3 * *`: expected 5 fields",
        help: "five fields",
    },
    Case {
        name: "cron with an out-of-range minute",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"61 3 * * *\"\n    action: upgrade\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "schedules[0].cron",
        message: "invalid cron expression `61 3 * * *`",
        help: "five fields",
    },
    Case {
        name: "unknown schedule action",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * * *\"\n    action: reconcle\n",
        )],
        file: "clusters/c.yaml",
        line: 6,
        field: "schedules[0].action",
        message: "unknown value `reconcle`",
        help: "did you mean `reconcile`?",
    },
    Case {
        name: "schedule time zone with a typo",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * * *\"\n    action: reconcile\n    timeZone: Europe/Berln\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "schedules[0].timeZone",
        message: "unknown time zone `Europe/Berln`",
        help: "did you mean `Europe/Berlin`?",
    },
    Case {
        name: "schedule time zone that is no IANA name",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * * *\"\n    action: reconcile\n    timeZone: Mars/Olympus\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "schedules[0].timeZone",
        message: "unknown time zone `Mars/Olympus`",
        help: "use an IANA time zone name",
    },
    Case {
        name: "schedule window that is not a duration",
        files: &[(
            "profiles/p.yaml",
            "name: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * * *\"\n    action: restart\n    window: soon\n",
        )],
        file: "profiles/p.yaml",
        line: 6,
        field: "schedules[0].window",
        message: "invalid window",
        help: "`soon` is not a duration",
    },
    Case {
        name: "schedule window of zero",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * * *\"\n    action: reconcile\n    window: 0s\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "schedules[0].window",
        message: "invalid window",
        help: "leaves no time to start a run",
    },
    Case {
        name: "schedule catchUp that is not a boolean",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * * *\"\n    action: reconcile\n    catchUp: yes\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "schedules[0].catchUp",
        message: "wrong type: expected a boolean",
        help: "write a boolean here",
    },
    Case {
        name: "schedule track on an action that is not upgrade",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: nightly\n    cron: \"0 3 * * *\"\n    action: restart\n    track: patch\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "schedules[0].track",
        message: "`track` applies only to `action: upgrade`",
        help: "remove `track`",
    },
    Case {
        name: "schedule track with an unknown value",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nschedules:\n  - name: weekly\n    cron: \"0 3 * * 6\"\n    action: upgrade\n    track: minor\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "schedules[0].track",
        message: "unknown value `minor`",
        help: "use one of: `patch`",
    },
    Case {
        name: "schedule tracking patches of a cluster without Istio",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio: null\nk3d:\n  ports: []\nschedules:\n  - name: weekly\n    cron: \"0 3 * * 6\"\n    action: upgrade\n    track: patch\n",
        )],
        file: "clusters/c.yaml",
        line: 10,
        field: "schedules[0].track",
        message: "`track: patch` needs an `istio` section",
        help: "pin the minor to track with `istio.version`",
    },
    Case {
        name: "schedule tracking patches from an OCI chart repository",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  repo: oci://registry.example.test/istio\nschedules:\n  - name: weekly\n    cron: \"0 3 * * 6\"\n    action: upgrade\n    track: patch\n",
        )],
        file: "clusters/c.yaml",
        line: 9,
        field: "schedules[0].track",
        message: "an oci:// repository does not have",
        help: "point `istio.repo` at the https:// chart repository",
    },
    Case {
        name: "unknown profile reference",
        files: &[("clusters/c.yaml", "name: c\nprofile: q\n")],
        file: "clusters/c.yaml",
        line: 2,
        field: "profile",
        message: "unknown profile `q`",
        help: "profiles/NAME.yaml",
    },
    Case {
        name: "misspelt profile reference",
        files: &[
            ("clusters/c.yaml", "name: c\nprofile: minimall\n"),
            ("profiles/minimal.yaml", "name: minimal\n"),
        ],
        file: "clusters/c.yaml",
        line: 2,
        field: "profile",
        message: "unknown profile `minimall`",
        help: "did you mean `minimal`?",
    },
    Case {
        name: "unknown addon reference",
        files: &[("clusters/c.yaml", "name: c\nprofile: p\naddons: [a, bb]\n")],
        file: "clusters/c.yaml",
        line: 3,
        field: "addons[1]",
        message: "unknown addon `bb`",
        help: "did you mean `b`?",
    },
    Case {
        name: "addon dependency cycle",
        files: &[(
            "addons/a.yaml",
            "name: a\nchart:\n  repo: https://example.test/charts\n  name: a\n  version: 1.0.0\nneeds: [b]\n",
        )],
        file: "addons/b.yaml",
        line: 6,
        field: "needs[0]",
        message: "addon dependency cycle: a → b → a",
        help: "remove one of these `needs`",
    },
    Case {
        name: "addon needs one the cluster does not enable",
        files: &[("clusters/c.yaml", "name: c\nprofile: p\naddons: [b]\n")],
        file: "clusters/c.yaml",
        line: 3,
        field: "addons[0]",
        message: "addon `b` needs `a`, which is not enabled",
        help: "add `a` to `addons`",
    },
    Case {
        name: "tag named like the revision",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  tags: [stable, 1-30-3]\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "istio.tags[1]",
        message: "tag `1-30-3` clashes with a revision name",
        help: "stable",
    },
    Case {
        name: "two clusters claim the same host port",
        files: &[("clusters/d.yaml", "name: d\nprofile: p\n")],
        file: "profiles/p.yaml",
        line: 5,
        field: "k3d.ports[0].port",
        message: "host port 8080 is also claimed by cluster `c`",
        help: "own host ports",
    },
    Case {
        name: "one cluster publishes a host port twice",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nk3d:\n  kubeAPI:\n    hostPort: \"8080\"\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "k3d.kubeAPI.hostPort",
        message: "host port 8080 is published twice",
        help: "k3d.ports[0].port already publishes it",
    },
    Case {
        name: "k3d schema: servers below the minimum",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nk3d:\n  servers: 0\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "k3d.servers",
        message: "minimum",
        help: "k3d's config schema",
    },
    Case {
        name: "k3d schema: unknown key",
        files: &[("clusters/c.yaml", "name: c\nprofile: p\nk3d:\n  agent: 2\n")],
        file: "clusters/c.yaml",
        line: 4,
        field: "k3d.agent",
        message: "unknown field `agent`",
        help: "did you mean `agents`?",
    },
    Case {
        name: "k3d schema: nested wrong type",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nk3d:\n  options:\n    k3d:\n      wait: sometimes\n",
        )],
        file: "clusters/c.yaml",
        line: 6,
        field: "k3d.options.k3d.wait",
        message: "is not of type \"boolean\"",
        help: "k3d's config schema",
    },
    Case {
        name: "k3d name set by the user",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nk3d:\n  metadata:\n    name: other\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "k3d.metadata.name",
        message: "paddock sets the k3d cluster name",
        help: "remove `metadata.name`",
    },
    Case {
        name: "bad port mapping syntax",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nk3d:\n  ports:\n    - port: \"80:http\"\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "k3d.ports[0].port",
        message: "invalid port mapping",
        help: "CONTAINERPORT",
    },
    Case {
        name: "gateway values schema: wrong type",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  gateways:\n    - name: istio-ingress\n      values:\n        replicaCount: two\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "istio.gateways[0].values.replicaCount",
        message: "is not of type",
        help: "gateway chart's values schema",
    },
    Case {
        name: "gateway values schema: unknown key",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  gateways:\n    - name: istio-ingress\n      values:\n        replicas: 2\n",
        )],
        file: "clusters/c.yaml",
        line: 7,
        field: "istio.gateways[0].values.replicas",
        message: "unknown field `replicas`",
        help: "did you mean `replicaCount`?",
    },
    Case {
        name: "namespace with both a tag and injection enabled",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nnamespaces:\n  - name: web\n    tag: stable\n    injection: enabled\n",
        )],
        file: "clusters/c.yaml",
        line: 6,
        field: "namespaces[0].injection",
        message: "cannot have both `tag` and `injection: enabled`",
        help: "keep only `tag`",
    },
    Case {
        name: "namespace on an undeclared tag",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nnamespaces:\n  - name: web\n    tag: stabel\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "namespaces[0].tag",
        message: "unknown tag `stabel`",
        help: "did you mean `stable`?",
    },
    Case {
        name: "namespace name that is not a DNS label",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nnamespaces:\n  - name: Web_App\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "namespaces[0].name",
        message: "invalid namespace name `Web_App`",
        help: "lowercase",
    },
    Case {
        name: "missing required field",
        files: &[(
            "addons/a.yaml",
            "name: a\nchart:\n  repo: https://example.test/charts\n  name: a\n",
        )],
        file: "addons/a.yaml",
        line: 2,
        field: "chart",
        message: "missing required field `version`",
        help: "add `version:` here",
    },
    Case {
        name: "unpinned chart version",
        files: &[(
            "addons/a.yaml",
            "name: a\nchart:\n  repo: https://example.test/charts\n  name: a\n  version: \"^1.0\"\n",
        )],
        file: "addons/a.yaml",
        line: 5,
        field: "chart.version",
        message: "chart version `^1.0` is not pinned",
        help: "pin an exact chart version",
    },
    Case {
        name: "invalid YAML",
        files: &[("clusters/c.yaml", "name: c\nprofile: [p\n")],
        file: "clusters/c.yaml",
        line: 2,
        field: "(document)",
        message: "invalid YAML",
        help: "fix the YAML syntax",
    },
    Case {
        name: "duplicate key",
        files: &[("clusters/c.yaml", "name: c\nprofile: p\nname: d\n")],
        file: "clusters/c.yaml",
        line: 3,
        field: "(document)",
        message: "invalid YAML",
        help: "fix the YAML syntax",
    },
    Case {
        name: "top level is a list",
        files: &[("clusters/c.yaml", "- name: c\n")],
        file: "clusters/c.yaml",
        line: 1,
        field: "(document)",
        message: "expected a map of fields at the top level",
        help: "name:",
    },
    Case {
        name: "two files declare the same cluster",
        files: &[(
            "clusters/d.yaml",
            "name: c\nprofile: p\nk3d:\n  ports: []\n",
        )],
        file: "clusters/d.yaml",
        line: 1,
        field: "name",
        message: "duplicate name `c`",
        help: "already defined in clusters/c.yaml",
    },
    Case {
        name: "istiod values set what paddock owns",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  values:\n    istiod:\n      revision: canary\n",
        )],
        file: "clusters/c.yaml",
        line: 6,
        field: "istio.values.istiod.revision",
        message: "`revision` is managed by paddock",
        help: "remove it",
    },
    Case {
        name: "chart defaults passed as values",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  values:\n    istiod:\n      defaults:\n        pilot: {}\n",
        )],
        file: "clusters/c.yaml",
        line: 6,
        field: "istio.values.istiod.defaults",
        message: "`defaults` is managed by paddock",
        help: "internal since Istio 1.24",
    },
    Case {
        name: "misspelt upgrade strategy",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  upgrade:\n    strategy: inplace\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "istio.upgrade.strategy",
        message: "unknown value `inplace`",
        help: "did you mean `in-place`?",
    },
    Case {
        name: "bad grace period",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  upgrade:\n    gracePeriod: soon\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "istio.upgrade.gracePeriod",
        message: "invalid duration",
        help: "`90s`",
    },
    Case {
        name: "workload manifest missing",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nworkloads:\n  - manifests/nope.yaml\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "workloads[0]",
        message: "manifest `manifests/nope.yaml` not found",
        help: "relative to the repository root",
    },
    Case {
        name: "profile inheritance cycle",
        files: &[
            ("profiles/p.yaml", "name: p\nextends: q\n"),
            ("profiles/q.yaml", "name: q\nextends: p\n"),
        ],
        file: "profiles/p.yaml",
        line: 2,
        field: "extends",
        message: "profile inheritance cycle",
        help: "remove `extends`",
    },
    Case {
        name: "cluster name too long for k3d",
        files: &[(
            "clusters/c.yaml",
            "name: a-cluster-name-that-is-far-too-long-for-k3d\nprofile: p\n",
        )],
        file: "clusters/c.yaml",
        line: 1,
        field: "name",
        message: "invalid cluster name",
        help: "at most 32 characters",
    },
    Case {
        name: "daemon mode that is neither apply nor report",
        files: &[("paddock.yaml", "serve:\n  mode: yolo\n")],
        file: "paddock.yaml",
        line: 2,
        field: "serve.mode",
        message: "invalid mode `yolo`",
        help: "use `apply`",
    },
    Case {
        name: "daemon poll interval that is not a duration",
        files: &[(
            "paddock.yaml",
            "serve:\n  repo: /srv/clusters.git\n  pollInterval: often\n",
        )],
        file: "paddock.yaml",
        line: 3,
        field: "serve.pollInterval",
        message: "invalid pollInterval `often`",
        help: "at least 100ms",
    },
    Case {
        name: "daemon metrics address off loopback",
        files: &[("paddock.yaml", "serve:\n  metricsAddress: 0.0.0.0:9464\n")],
        file: "paddock.yaml",
        line: 2,
        field: "serve.metricsAddress",
        message: "invalid metricsAddress `0.0.0.0:9464`",
        help: "loopback only",
    },
    Case {
        name: "k3d version to download that paddock cannot drive",
        files: &[("paddock.yaml", "tools:\n  versions:\n    k3d: 4.4.8\n")],
        file: "paddock.yaml",
        line: 3,
        field: "tools.versions.k3d",
        message: "invalid k3d version `4.4.8`",
        help: "paddock drives k3d 5.x",
    },
    Case {
        name: "helm version to download that is not a version",
        files: &[("paddock.yaml", "tools:\n  versions:\n    helm: latest\n")],
        file: "paddock.yaml",
        line: 3,
        field: "tools.versions.helm",
        message: "invalid helm version `latest`",
        help: "such as `4.1.4`",
    },
    Case {
        name: "tool mirror that is not an http URL",
        files: &[(
            "paddock.yaml",
            "tools:\n  mirrors:\n    helm: get.helm.sh\n",
        )],
        file: "paddock.yaml",
        line: 3,
        field: "tools.mirrors.helm",
        message: "invalid helm mirror `get.helm.sh`",
        help: "http:// or https://",
    },
    Case {
        name: "tool downloads switched with a word",
        files: &[("paddock.yaml", "tools:\n  download: sometimes\n")],
        file: "paddock.yaml",
        line: 2,
        field: "tools.download",
        message: "wrong type: expected a boolean",
        help: "write a boolean here",
    },
    Case {
        name: "mirror of a tool paddock does not download",
        files: &[(
            "paddock.yaml",
            "tools:\n  mirrors:\n    hlem: https://get.helm.sh\n",
        )],
        file: "paddock.yaml",
        line: 3,
        field: "tools.mirrors.hlem",
        message: "unknown field `hlem`",
        help: "helm",
    },
    Case {
        name: "unknown daemon setting",
        files: &[("paddock.yaml", "serve:\n  pollIntervall: 5m\n")],
        file: "paddock.yaml",
        line: 2,
        field: "serve.pollIntervall",
        message: "unknown field `pollIntervall`",
        help: "pollInterval",
    },
    Case {
        name: "manifest: invalid YAML",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [a\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 4,
        field: "",
        message: "not valid YAML",
        help: "fix the YAML syntax",
    },
    Case {
        name: "manifest: a document that is a list",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n- a\n- b\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 5,
        field: "(document)",
        message: "must be one object",
        help: "one Kubernetes object per document",
    },
    Case {
        name: "manifest: no apiVersion",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "kind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: app\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 1,
        field: "(document)",
        message: "has no `apiVersion`",
        help: "add `apiVersion:`",
    },
    Case {
        name: "manifest: malformed apiVersion",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: apps/v1/beta\nkind: Deployment\nmetadata: {name: web, namespace: app}\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 1,
        field: "apiVersion",
        message: "is not an apiVersion",
        help: "GROUP/VERSION",
    },
    Case {
        name: "manifest: no kind",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nmetadata:\n  name: cfg\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 1,
        field: "(document)",
        message: "has no `kind`",
        help: "add `kind:`",
    },
    Case {
        name: "manifest: kind not CamelCase",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: configmap\nmetadata: {name: cfg, namespace: app}\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 2,
        field: "kind",
        message: "is not a kind",
        help: "CamelCase",
    },
    Case {
        name: "manifest: no metadata.name",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: cfg-\n  namespace: app\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 3,
        field: "metadata",
        message: "has no `metadata.name`",
        help: "generateName",
    },
    Case {
        name: "manifest: invalid object name",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Web_Config\n  namespace: app\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 4,
        field: "metadata.name",
        message: "invalid name `Web_Config`",
        help: "lowercase letters",
    },
    Case {
        name: "manifest: Service name starting with a digit",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: 1web\n  namespace: app\nspec:\n  ports: [{port: 80}]\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 4,
        field: "metadata.name",
        message: "invalid name `1web` for a Service",
        help: "start with a letter",
    },
    Case {
        name: "manifest: namespace the cluster will not have",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: shop\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 5,
        field: "metadata.namespace",
        message: "namespace `shop`, which the cluster will not have",
        help: "declare it in the cluster's `namespaces`",
    },
    Case {
        name: "manifest: the same object twice across files",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n  - manifests/n.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: app\n",
            ),
            (
                "manifests/n.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: app\n",
            ),
        ],
        file: "manifests/n.yaml",
        line: 4,
        field: "metadata.name",
        message: "ConfigMap/cfg is declared twice",
        help: "manifests/m.yaml:1 declares it first",
    },
    Case {
        name: "manifest: label key with a bad prefix",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: app\n  labels:\n    Example.COM/team: web\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 7,
        field: "metadata.labels.Example.COM/team",
        message: "is not a DNS subdomain",
        help: "fix the key",
    },
    Case {
        name: "manifest: label value that is a number",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: app\n  labels:\n    version: 2\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 7,
        field: "metadata.labels.version",
        message: "`version` must be a string",
        help: "quote the value",
    },
    Case {
        name: "manifest: label value with a space",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: app\n  labels:\n    team: web team\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 7,
        field: "metadata.labels.team",
        message: "label value `web team`",
        help: "shorten or simplify",
    },
    Case {
        name: "manifest: annotation value that is a number",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: app\n  annotations:\n    prometheus.io/port: 8080\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 7,
        field: "metadata.annotations.prometheus.io/port",
        message: "must be a string",
        help: "quote the value",
    },
    Case {
        name: "manifest: selector that does not match the template",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: app}\nspec:\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels: {app: webapp}\n    spec:\n      containers: [{name: web, image: web:1}]\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 7,
        field: "spec.selector.matchLabels.app",
        message: "does not match the template's labels",
        help: "select its own pods",
    },
    Case {
        name: "manifest: apps/v1 workload without a selector",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: app}\nspec:\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web, image: web:1}]\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 4,
        field: "spec",
        message: "has no `spec.selector`",
        help: "selector.matchLabels",
    },
    Case {
        name: "manifest: two containers with one name",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: app\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: web:1\n        - name: web\n          image: sidecar:1\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 16,
        field: "spec.template.spec.containers[1].name",
        message: "container name `web` is used twice",
        help: "its own name",
    },
    Case {
        name: "manifest: container without an image",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: app\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 14,
        field: "spec.template.spec.containers[0]",
        message: "has no `image`",
        help: "add `image:`",
    },
    Case {
        name: "manifest: image reference with capitals",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: app\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: web\n          image: Registry.example.com/Web:1\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 15,
        field: "spec.template.spec.containers[0].image",
        message: "must be lowercase",
        help: "lowercase",
    },
    Case {
        name: "manifest: invalid container name",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: app\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - name: Web_Server\n          image: web:1\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 14,
        field: "spec.template.spec.containers[0].name",
        message: "invalid container name",
        help: "DNS labels",
    },
    Case {
        name: "manifest: Service with unnamed ports",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: app}\nspec:\n  ports:\n    - port: 80\n    - port: 443\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 6,
        field: "spec.ports[0]",
        message: "must name each one",
        help: "Istio also reads the protocol",
    },
    Case {
        name: "manifest: Service port out of range",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: app}\nspec:\n  ports:\n    - name: http\n      port: 70000\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 7,
        field: "spec.ports[0].port",
        message: "from 1 to 65535",
        help: "set `port:`",
    },
    Case {
        name: "manifest: Service port names repeated",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: app}\nspec:\n  ports:\n    - {name: http, port: 80}\n    - {name: http, port: 8080}\n",
            ),
        ],
        file: "manifests/m.yaml",
        line: 7,
        field: "spec.ports[1].name",
        message: "port name `http` is used twice",
        help: "its own name",
    },
    Case {
        name: "workload manifest listed twice",
        files: &[
            (
                "clusters/c.yaml",
                "name: c\nprofile: p\nnamespaces:\n  - name: app\nworkloads:\n  - manifests/m.yaml\n  - manifests/m.yaml\n",
            ),
            (
                "manifests/m.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
            ),
        ],
        file: "clusters/c.yaml",
        line: 7,
        field: "workloads[1]",
        message: "manifest `manifests/m.yaml` is listed twice",
        help: "list each manifest file once",
    },
    Case {
        name: "namespace label key that Kubernetes refuses",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nnamespaces:\n  - name: app\n    labels:\n      -team: web\n",
        )],
        file: "clusters/c.yaml",
        line: 6,
        field: "namespaces[0].labels.-team",
        message: "the name part must be",
        help: "fix the label key",
    },
    Case {
        name: "local image that is no image reference",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nimages:\n  - my app:dev\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "images[0]",
        message: "is not an image reference",
        help: "as `docker images` lists it",
    },
    Case {
        name: "duplicate namespace",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nnamespaces:\n  - name: app\n  - name: app\n",
        )],
        file: "clusters/c.yaml",
        line: 5,
        field: "namespaces[1].name",
        message: "duplicate namespace `app`",
        help: "list each namespace once",
    },
    Case {
        name: "duplicate revision tag",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  tags: [stable, stable]\n",
        )],
        file: "clusters/c.yaml",
        line: 4,
        field: "istio.tags[1]",
        message: "duplicate tag `stable`",
        help: "list each tag once",
    },
    Case {
        name: "duplicate gateway",
        files: &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  gateways:\n    - name: istio-ingress\n    - name: istio-ingress\n",
        )],
        file: "clusters/c.yaml",
        line: 6,
        field: "istio.gateways[1].name",
        message: "duplicate gateway `istio-ingress`",
        help: "must be unique",
    },
    Case {
        name: "addon listed twice",
        files: &[("clusters/c.yaml", "name: c\nprofile: p\naddons: [a, a]\n")],
        file: "clusters/c.yaml",
        line: 3,
        field: "addons[1]",
        message: "addon `a` is listed twice",
        help: "list each addon once",
    },
];

fn find<'a>(problems: &'a [Diagnostic], case: &Case) -> Option<&'a Diagnostic> {
    problems
        .iter()
        .find(|d| d.file == case.file && d.field == case.field && d.message.contains(case.message))
}

#[test]
fn every_malformed_input_names_its_file_line_and_field() {
    assert!(CASES.len() >= 25);
    let mut failures = Vec::new();
    for case in CASES {
        let dir = tempfile::tempdir().expect("tempdir");
        write_repo(dir.path(), case.files);
        let problems = match validate_repo(dir.path()) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Err(e) => e.0,
        };
        let Some(d) = find(&problems, case) else {
            failures.push(format!(
                "{}: no diagnostic for {} {} {:?}; got:\n{}",
                case.name,
                case.file,
                case.field,
                case.message,
                problems
                    .iter()
                    .map(|p| format!("    {p}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
            continue;
        };
        if d.line != case.line {
            failures.push(format!(
                "{}: line {} != {}: {d}",
                case.name, d.line, case.line
            ));
        }
        if d.column == 0 {
            failures.push(format!("{}: no column: {d}", case.name));
        }
        if !d.help.as_deref().unwrap_or("").contains(case.help) {
            failures.push(format!("{}: help lacks {:?}: {d}", case.name, case.help));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn the_base_fixture_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_repo(dir.path(), &[]);
    if let Err(e) = validate_repo(dir.path()) {
        panic!("fixture should validate:\n{e}");
    }
}

#[test]
fn unknown_field_columns_point_at_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_repo(
        dir.path(),
        &[(
            "clusters/c.yaml",
            "name: c\nprofile: p\nistio:\n  versoin: 1.30.3\n",
        )],
    );
    let problems = validate_repo(dir.path()).expect_err("invalid").0;
    let d = problems
        .iter()
        .find(|d| d.field == "istio.versoin")
        .expect("diagnostic");
    assert_eq!((d.line, d.column), (4, 3));
}
