//! `track: patch`: which Istio version a scheduled upgrade moves to. The chart repository's
//! `index.yaml` (Helm's repository index) lists every published version of each chart; the
//! target is the newest `istiod` release of the minor `istio.version` pins.
//!
//! The fetch is a plain HTTP/1.1 GET ([`crate::drivers::http`]); redirects and proxies are not
//! followed.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::drivers::http;
use semver::Version;
use serde::Deserialize;

/// The chart whose versions are Istio's releases.
pub const CHART: &str = "istiod";

/// How long fetching an index may take, from connecting to the last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest index accepted (Istio's is a few hundred kilobytes).
pub const MAX_INDEX_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error("failed to fetch {url} within {}s", FETCH_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("failed to read {url} as a chart repository index")]
    Parse {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The index of a chart repository (`REPO/index.yaml`).
pub fn index_url(repo: &str) -> String {
    format!("{}/index.yaml", repo.trim_end_matches('/'))
}

/// The newest release of the `istiod` chart in `index_yaml` with `pinned`'s major and minor,
/// never lower than `pinned`: `Some(pinned)` means it is current, `None` that the index lists no
/// release of that minor at or above it. Pre-releases and versions that are not semver are
/// ignored.
pub fn newest_patch(index_yaml: &str, pinned: &Version) -> Result<Option<Version>, IndexError> {
    let versions = chart_versions(index_yaml, CHART)?;
    Ok(versions
        .into_iter()
        .filter(|v| v.major == pinned.major && v.minor == pinned.minor)
        .filter(|v| v.pre.is_empty() && v >= pinned)
        .max())
}

/// An index that is not a chart repository index.
#[derive(Debug, thiserror::Error)]
#[error("not a chart repository index")]
pub struct IndexError(#[source] serde_saphyr::Error);

/// Every version of `chart` listed in a repository index, in index order; entries whose
/// version is not semver are skipped.
pub fn chart_versions(index_yaml: &str, chart: &str) -> Result<Vec<Version>, IndexError> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        entries: BTreeMap<String, Vec<Entry>>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        version: Option<serde_json::Value>,
    }
    let index: Index = serde_saphyr::from_str(index_yaml).map_err(IndexError)?;
    Ok(index
        .entries
        .get(chart)
        .into_iter()
        .flatten()
        .filter_map(|e| e.version.as_ref()?.as_str().map(str::to_string))
        .filter_map(|v| Version::parse(v.strip_prefix('v').unwrap_or(&v)).ok())
        .collect())
}

/// Fetch `repo`'s index and pick the newest patch of `pinned`'s minor ([`newest_patch`]).
pub async fn newest_patch_in_repo(repo: &str, pinned: &Version) -> Result<Option<Version>, Error> {
    let url = index_url(repo);
    let text = fetch(&url).await?;
    newest_patch(&text, pinned).map_err(|e| Error::Parse {
        url,
        source: Box::new(e),
    })
}

/// GET `url` and return its body as text.
pub async fn fetch(url: &str) -> Result<String, Error> {
    let limits = http::Limits {
        stall: FETCH_TIMEOUT,
        max_bytes: MAX_INDEX_BYTES as u64,
        redirects: 0,
    };
    let body = tokio::time::timeout(FETCH_TIMEOUT, http::get_bytes(url, &limits))
        .await
        .map_err(|_| Error::Timeout {
            url: url.to_string(),
        })??;
    String::from_utf8(body).map_err(|e| Error::Parse {
        url: url.to_string(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const INDEX: &str = "\
apiVersion: v1
entries:
  base:
    - name: base
      version: 1.29.9
  istiod:
    - name: istiod
      version: 1.29.4
      urls: [https://example.test/istiod-1.29.4.tgz]
    - name: istiod
      version: 1.29.6
    - name: istiod
      version: 1.30.0
    - name: istiod
      version: 1.29.7-beta.1
generated: \"2026-05-01T00:00:00Z\"
";

    fn v(text: &str) -> Version {
        Version::parse(text).expect("a version")
    }

    #[test]
    fn the_newest_patch_of_the_pinned_minor_skips_other_minors_charts_and_pre_releases() {
        let cases = [
            ("1.29.4", Some("1.29.6")),
            ("1.29.0", Some("1.29.6")),
            ("1.29.6", Some("1.29.6")),
            ("1.30.0", Some("1.30.0")),
            // Never lower than what is pinned, and nothing from another minor.
            ("1.29.8", None),
            ("1.28.1", None),
        ];
        for (pinned, want) in cases {
            let got = newest_patch(INDEX, &v(pinned)).expect("parses");
            assert_eq!(got, want.map(v), "pinned {pinned}");
        }
    }

    #[test]
    fn an_index_without_the_chart_has_no_patch_and_garbage_is_an_error() {
        assert_eq!(
            newest_patch("apiVersion: v1\nentries: {}\n", &v("1.29.4")).expect("parses"),
            None
        );
        assert!(newest_patch("entries: [1, 2", &v("1.29.4")).is_err());
    }

    #[test]
    fn the_index_sits_under_the_repository_url() {
        assert_eq!(
            index_url("https://istio-release.storage.googleapis.com/charts/"),
            "https://istio-release.storage.googleapis.com/charts/index.yaml"
        );
        assert_eq!(
            index_url("http://127.0.0.1:1/charts"),
            "http://127.0.0.1:1/charts/index.yaml"
        );
    }

    /// Serve `body` with `status` to every request on a loopback port; returns the repository
    /// URL and the request lines the server saw.
    async fn serve(
        status: &'static str,
        body: &'static str,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let request = http::tests::read_request(&mut socket).await;
                let text = String::from_utf8_lossy(&request);
                let _ = tx.send(text.lines().next().unwrap_or_default().to_string());
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/x-yaml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (format!("http://{addr}/charts"), rx)
    }

    #[tokio::test]
    async fn a_tracking_upgrade_reads_the_newest_patch_from_the_repository_index() {
        let (repo, mut requests) = serve("200 OK", INDEX).await;
        let got = newest_patch_in_repo(&repo, &v("1.29.4"))
            .await
            .expect("fetched");
        assert_eq!(got, Some(v("1.29.6")));
        assert_eq!(
            requests.recv().await.as_deref(),
            Some("GET /charts/index.yaml HTTP/1.1")
        );
    }

    #[tokio::test]
    async fn a_missing_index_names_the_url_and_the_status() {
        let (repo, _requests) = serve("404 Not Found", "no such file").await;
        let err = newest_patch_in_repo(&repo, &v("1.29.4"))
            .await
            .expect_err("404");
        assert!(
            matches!(err, Error::Http(http::Error::Status { status, .. }) if status == hyper::StatusCode::NOT_FOUND)
        );
        assert_eq!(
            err.to_string(),
            format!(
                "failed to fetch {}: the server answered 404 Not Found",
                index_url(&repo)
            )
        );
    }

    #[tokio::test]
    async fn an_oci_repository_has_no_index_to_fetch() {
        let err = fetch("oci://registry.example.test/istio/index.yaml")
            .await
            .expect_err("not http");
        assert!(matches!(err, Error::Http(http::Error::Url { .. })));
    }
}
