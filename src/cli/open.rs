//! `paddock open [CLUSTER] ADDON`: print the URL, open a browser, forward until Ctrl-C.

use super::*;

impl From<crate::ops::open::Error> for Failure {
    fn from(e: crate::ops::open::Error) -> Self {
        Failure::Op {
            message: chain(&e),
            hint: e.what_to_do(),
            code: if e.bad_input() {
                exit::BAD_INPUT
            } else {
                exit::FAILED
            },
        }
    }
}

pub(super) fn open(
    args: &Args,
    names: &[String],
    port: Option<u16>,
    no_browser: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let (cluster, addon) = match names {
        [addon] => (None, addon),
        [cluster, addon] => (Some(cluster.as_str()), addon),
        _ => {
            return Err(Failure::Other(
                "`paddock open` takes [CLUSTER] ADDON".to_string(),
            ));
        }
    };
    let req = crate::ops::open::Request {
        addon: addon.clone(),
        port,
    };
    with_spec(args, cluster, |spec| {
        let cx = context(args, crate::engine::events::Events::discard());
        runtime()?.block_on(async {
            let forward = crate::ops::open::prepare(&cx, spec, &req).await?;
            announce(args, &spec.name, &forward, out)?;
            if !no_browser {
                browser(&forward.url);
            }
            let cancel = tokio_util::sync::CancellationToken::new();
            tokio::select! {
                () = forward.serve(cancel.clone()) => {}
                _ = tokio::signal::ctrl_c() => cancel.cancel(),
            }
            Ok(())
        })
    })
}

/// The URL (and the pod), as text or one JSON object.
fn announce(
    args: &Args,
    cluster: &str,
    f: &crate::ops::open::Forward,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    if let Some(usual) = f.usual_port_taken {
        eprintln!(
            "note: port {usual} on 127.0.0.1 is taken; {} listens on a free port instead",
            f.addon
        );
    }
    if args.output == Output::Json {
        let r =
            json!({"ok": true, "cluster": cluster, "addon": f.addon, "url": f.url, "pod": f.pod});
        writeln!(out, "{r}")?;
    } else {
        writeln!(out, "{} of cluster {cluster}: {}", f.addon, f.url)?;
        writeln!(
            out,
            "forwarding to pod {} through the API server; Ctrl-C stops",
            f.pod
        )?;
    }
    out.flush()?;
    Ok(())
}

/// Open the URL in a browser when there is one to see: a terminal on stdout and a display
/// (or macOS).
fn browser(url: &str) {
    use std::io::IsTerminal;
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if display {
        "xdg-open"
    } else {
        return;
    };
    if !std::io::stdout().is_terminal() {
        return;
    }
    let mut command = std::process::Command::new(opener);
    command
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Ok(mut child) = command.spawn() {
        std::thread::spawn(move || child.wait());
    }
}
