//! A kubeconfig without a client certificate (the sim's `kubeconfigWithoutClientCert` knob: what
//! a broken or hand-edited kubeconfig gives) meets a 401 from the API server; paddock says that
//! its credentials were refused and what to do, rather than passing on a raw API error.

mod support;

use paddock_sim::knobs::Knobs;
use support::{World, result, stderr};

#[test]
fn status_and_up_explain_a_401_from_a_kubeconfig_without_client_certificate() {
    let w = World::new(false);
    let up = w.paddock(&["up", "ci", "-o", "json"]);
    assert_eq!(result(&up)["ok"], true, "{}", stderr(&up));

    w.set_knobs(&Knobs {
        kubeconfig_without_client_cert: true,
        ..Knobs::default()
    });
    for args in [&["status", "ci"][..], &["up", "ci"][..]] {
        let out = w.paddock(args);
        let err = stderr(&out);
        assert!(!out.status.success(), "paddock {args:?} failed: {err}");
        for words in [
            "the API server of cluster ci refused paddock's credentials (401 Unauthorized)",
            "the kubeconfig k3d gave has no client certificate",
            "`k3d kubeconfig get ci` should show client-certificate-data",
            "recreate the kubeconfig or the cluster",
        ] {
            assert!(
                err.contains(words),
                "paddock {args:?} says {words:?}: {err}"
            );
        }
    }

    // The cluster itself is fine: with k3d's kubeconfig whole again, status works.
    w.set_knobs(&Knobs::default());
    let status = w.paddock(&["status", "ci"]);
    assert!(status.status.success(), "{}", stderr(&status));
}
