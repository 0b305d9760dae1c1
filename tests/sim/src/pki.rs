//! A cluster's credentials, made as k3s makes them on its first boot: a server CA
//! (`k3s-server-ca@<unix time>`, EC P-256) that signs the API's serving certificate, and a client
//! CA (`k3s-client-ca@<unix time>`) that signs the admin's client certificate (CN
//! `system:admin`, O `system:masters`) whose key is a SEC1 `EC PRIVATE KEY`. `k3d cluster
//! create` makes them once and keeps them in the cluster record (`world`), so a stopped and
//! started cluster serves the same ones and old kubeconfigs stay valid; the API server (`tls`)
//! serves with them and the kubeconfig (`api::kubeconfig`) carries them.

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

/// How long certificates live: k3s's CAs ten years, its leaf certificates one.
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 365;

/// The PEM texts a cluster serves and hands out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Pki {
    /// The server CA: the kubeconfig's `certificate-authority-data`.
    pub server_ca: String,
    /// The client CA: the API server accepts client certificates it signed.
    pub client_ca: String,
    /// The serving certificate followed by the server CA, as k3s writes its cert files.
    pub serving_cert: String,
    /// The serving certificate's key (PKCS#8).
    pub serving_key: String,
    /// The admin certificate followed by the client CA: `client-certificate-data`.
    pub admin_cert: String,
    /// The admin key as SEC1 `EC PRIVATE KEY`: `client-key-data`.
    pub admin_key: String,
}

/// The names k3s's serving certificate always carries; `extra` adds node IPs, node names and
/// `--tls-san` values.
pub fn serving_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "::1",
        "0.0.0.0",
        // The `kubernetes` Service's cluster IP.
        "10.43.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for e in extra {
        if !e.is_empty() && !names.contains(e) {
            names.push(e.clone());
        }
    }
    names
}

impl Pki {
    /// New CAs and certificates; the serving certificate lists `names` (DNS names or IPs).
    pub fn generate(names: &[String]) -> Result<Self, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let (server_ca, server_issuer) = ca(&format!("k3s-server-ca@{now}"), now)?;
        let (client_ca, client_issuer) = ca(&format!("k3s-client-ca@{now}"), now)?;

        let mut serving = CertificateParams::new(names.to_vec()).map_err(err)?;
        serving.distinguished_name = dn("k3s", Some("k3s"));
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf(&mut serving, now)?;
        let serving_key = KeyPair::generate().map_err(err)?;
        let serving_cert = serving
            .signed_by(&serving_key, &server_issuer)
            .map_err(err)?;

        let mut admin = CertificateParams::default();
        admin.distinguished_name = dn("system:admin", Some("system:masters"));
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf(&mut admin, now)?;
        let admin_key = KeyPair::generate().map_err(err)?;
        let admin_cert = admin.signed_by(&admin_key, &client_issuer).map_err(err)?;

        Ok(Self {
            serving_cert: format!("{}{server_ca}", serving_cert.pem()),
            serving_key: serving_key.serialize_pem(),
            admin_cert: format!("{}{client_ca}", admin_cert.pem()),
            admin_key: pem(
                "EC PRIVATE KEY",
                &sec1_from_pkcs8(&admin_key.serialize_der())?,
            ),
            server_ca,
            client_ca,
        })
    }
}

fn err(e: rcgen::Error) -> String {
    format!("cannot make the cluster's certificates: {e}")
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn validity(params: &mut CertificateParams, now: i64, days: i64) -> Result<(), String> {
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map_err(|e| format!("cannot make the cluster's certificates: {e}"))
    };
    // A minute of slack for clocks that disagree a little (a container's, say).
    params.not_before = at(now - 60)?;
    params.not_after = at(now + days * 86_400)?;
    Ok(())
}

fn leaf(params: &mut CertificateParams, now: i64) -> Result<(), String> {
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(params, now, LEAF_DAYS)
}

/// A self-signed CA: its PEM and the issuer that signs with it.
fn ca(cn: &str, now: i64) -> Result<(String, Issuer<'static, KeyPair>), String> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn, None);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    validity(&mut params, now, CA_DAYS)?;
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// One PEM block, 64 characters a line.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// ring makes PKCS#8 keys; k3s writes SEC1 (`x509.MarshalECPrivateKey`): the inner
/// `ECPrivateKey` with the curve named in `[0]`, which Go's parser needs.
fn sec1_from_pkcs8(pkcs8: &[u8]) -> Result<Vec<u8>, String> {
    use yasna::Tag;
    let bad = |e: yasna::ASN1Error| format!("cannot convert the admin key to SEC1: {e}");
    let (curve, inner) = yasna::parse_der(pkcs8, |r| {
        r.read_sequence(|r| {
            r.next().read_u8()?;
            let curve = r.next().read_sequence(|r| {
                r.next().read_oid()?;
                r.next().read_oid()
            })?;
            let inner = r.next().read_bytes()?;
            Ok((curve, inner))
        })
    })
    .map_err(bad)?;
    let (scalar, public) = yasna::parse_der(&inner, |r| {
        r.read_sequence(|r| {
            r.next().read_u8()?;
            let scalar = r.next().read_bytes()?;
            r.read_optional(|r| r.read_tagged(Tag::context(0), |r| r.read_oid()))?;
            let public =
                r.read_optional(|r| r.read_tagged(Tag::context(1), |r| r.read_bitvec_bytes()))?;
            Ok((scalar, public))
        })
    })
    .map_err(bad)?;
    let (public, bits) = public.ok_or("cannot convert the admin key to SEC1: no public key")?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(1);
            w.next().write_bytes(&scalar);
            w.next()
                .write_tagged(Tag::context(0), |w| w.write_oid(&curve));
            w.next()
                .write_tagged(Tag::context(1), |w| w.write_bitvec_bytes(&public, bits));
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_key_is_sec1_with_the_curve_named() {
        let pki = Pki::generate(&serving_names(&[])).expect("pki");
        assert!(
            pki.admin_key
                .starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
            "{}",
            pki.admin_key
        );
        let b64: String = pki
            .admin_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        // SEQUENCE { 1, OCTET STRING(32), [0] prime256v1, [1] BIT STRING(65) }: 121 bytes,
        // as `openssl ec` and Go write a P-256 key.
        assert_eq!(der.len(), 121);
        assert_eq!(
            &der[..7],
            &[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20],
            "{der:02x?}"
        );
        let prime256v1 = [
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ];
        assert_eq!(&der[39..51], &prime256v1, "{der:02x?}");
    }

    #[test]
    fn certificate_files_carry_their_ca() {
        let pki = Pki::generate(&serving_names(&[])).expect("pki");
        assert!(pki.admin_cert.ends_with(&pki.client_ca));
        assert!(pki.serving_cert.ends_with(&pki.server_ca));
        assert_eq!(pki.admin_cert.matches("BEGIN CERTIFICATE").count(), 2);
        assert_ne!(pki.server_ca, pki.client_ca);
    }
}
