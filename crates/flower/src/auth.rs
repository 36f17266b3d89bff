//! The node's identity: a P-256 key whose public half names the node to the SuperLink, and
//! the signed headers every Fleet request carries.
//!
//! Flower's automatic node authentication is on even with `--insecure`: each request sends
//! the public key (base64 of its PEM SubjectPublicKeyInfo), a timezone-aware ISO-8601
//! timestamp and a DER ECDSA-SHA256 signature of that timestamp. The SuperLink accepts
//! timestamps from 5 s ahead to 305 s behind its clock, and ties the node id to the key.
//!
//! A node started without a key file makes a fresh key per process. A SuperLink started with
//! `--enable-supernode-auth` admits only keys registered with `flwr supernode register
//! KEY.pub`, so an admitted node keeps its key in a file ([`NodeKey::create_file`] writes one
//! and its OpenSSH public half, which is what that command reads; [`NodeKey::load_file`]
//! refuses a key file other users can read).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::error::{FlowerError, Result};

/// Header carrying the node's public key.
pub const PUBLIC_KEY_HEADER: &str = "flwr-public-key";
/// Header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "flwr-timestamp";
/// Header carrying the signature of the timestamp.
pub const SIGNATURE_HEADER: &str = "flwr-signature";

/// A freshly generated node key (one per process: the node registers itself).
pub struct NodeKey {
    signing: SigningKey,
    public_pem: Vec<u8>,
    public_b64: String,
}

impl NodeKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> NodeKey {
        NodeKey::from_signing_key(SigningKey::random(&mut rand_core::OsRng))
    }

    fn from_signing_key(signing: SigningKey) -> NodeKey {
        let public_pem = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("a P-256 public key always encodes as SPKI PEM")
            .into_bytes();
        let public_b64 = B64.encode(&public_pem);
        NodeKey {
            signing,
            public_pem,
            public_b64,
        }
    }

    /// The public key as PEM SubjectPublicKeyInfo bytes: what RegisterNode/ActivateNode carry.
    /// Writes a new key to `path` (PKCS#8 PEM, readable by its owner only) and its public half
    /// to `path.pub` (OpenSSH format, for `flwr supernode register`). Never replaces a file.
    pub fn create_file(path: &Path) -> Result<(NodeKey, PathBuf)> {
        let key = NodeKey::generate();
        let public = pub_path(path);
        for p in [path, public.as_path()] {
            if p.exists() {
                return Err(FlowerError::Config(format!(
                    "{}: already exists; a node key is never replaced (delete it first if you mean to)",
                    p.display()
                )));
            }
        }
        let pem = key
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| FlowerError::Config(format!("encoding the node key: {e}")))?;
        write_new(path, pem.as_bytes(), 0o600)?;
        write_new(&public, key.openssh_public().as_bytes(), 0o644)?;
        Ok((key, public))
    }

    /// Reads a node key file: PKCS#8 (`BEGIN PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`) PEM
    /// of a P-256 key. A file that group or others may read is refused: whoever reads it can
    /// join the federation as this organisation.
    pub fn load_file(path: &Path) -> Result<NodeKey> {
        let io = |e: std::io::Error| FlowerError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(FlowerError::Config(format!(
                    "{}: the node key can be read by other users (mode {:03o}); run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )));
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let signing = SigningKey::from_pkcs8_pem(&text)
            .ok()
            .or_else(|| p256::SecretKey::from_sec1_pem(&text).ok().map(SigningKey::from))
            .ok_or_else(|| {
                FlowerError::Config(format!(
                    "{}: not a P-256 private key in PEM (PKCS#8 `BEGIN PRIVATE KEY` or SEC1 `BEGIN EC PRIVATE \
                     KEY`); make one with `privpkt flower-key FILE`",
                    path.display()
                ))
            })?;
        Ok(NodeKey::from_signing_key(signing))
    }

    /// The public key as one OpenSSH line (RFC 5656 §3.1: `ecdsa-sha2-nistp256`, the curve
    /// name and the uncompressed point, each length-prefixed).
    pub fn openssh_public(&self) -> String {
        let point = self.signing.verifying_key().to_encoded_point(false);
        let mut blob = Vec::new();
        for part in [&b"ecdsa-sha2-nistp256"[..], b"nistp256", point.as_bytes()] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        format!("ecdsa-sha2-nistp256 {} privpkt-node\n", B64.encode(blob))
    }

    pub fn public_key_pem(&self) -> &[u8] {
        &self.public_pem
    }

    /// The three authentication headers for a request sent now.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        self.headers_at(&now_iso())
    }

    /// The authentication headers for a request stamped `timestamp`.
    pub fn headers_at(&self, timestamp: &str) -> [(&'static str, String); 3] {
        let sig: DerSignature = self.signing.sign(timestamp.as_bytes());
        [
            (PUBLIC_KEY_HEADER, self.public_b64.clone()),
            (TIMESTAMP_HEADER, timestamp.to_string()),
            (SIGNATURE_HEADER, B64.encode(sig.as_bytes())),
        ]
    }
}

/// Now as Python's `datetime.now(timezone.utc).isoformat()` writes it
/// (`2026-11-21T21:45:30.605123+00:00`), the form the SuperLink parses.
/// `FILE.pub` beside `FILE`.
pub fn pub_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Creates `path` (failing if it exists) with `mode` from the start, so no other user ever sees
/// the key in it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let io = |e: std::io::Error| FlowerError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    opts.open(path).map_err(io)?.write_all(bytes).map_err(io)
}

pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn key_files_round_trip_and_are_private() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("node.key");
        let (key, public) = NodeKey::create_file(&path).unwrap();
        assert_eq!(public, d.path().join("node.key.pub"));
        let back = NodeKey::load_file(&path).unwrap();
        assert_eq!(back.public_key_pem(), key.public_key_pem());
        // Never replaced.
        let e = NodeKey::create_file(&path).err().unwrap().to_string();
        assert!(e.contains("already exists"), "{e}");
        // The OpenSSH line decodes to the same point the PEM holds.
        let line = std::fs::read_to_string(&public).unwrap();
        let b64 = line.split_whitespace().nth(1).unwrap();
        let blob = B64.decode(b64).unwrap();
        let (mut parts, mut i) = (Vec::new(), 0);
        while i < blob.len() {
            let n = u32::from_be_bytes(blob[i..i + 4].try_into().unwrap()) as usize;
            parts.push(blob[i + 4..i + 4 + n].to_vec());
            i += 4 + n;
        }
        assert_eq!(parts[0], b"ecdsa-sha2-nistp256");
        assert_eq!(parts[1], b"nistp256");
        let vk = VerifyingKey::from_public_key_pem(std::str::from_utf8(key.public_key_pem()).unwrap()).unwrap();
        assert_eq!(parts[2], vk.to_encoded_point(false).as_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = NodeKey::load_file(&path).err().unwrap().to_string();
            assert!(
                e.contains("can be read by other users (mode 644)") && e.contains("chmod 600"),
                "{e}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        // SEC1 PEM (what `openssl ecparam -genkey` writes) is read too; anything else is refused.
        let sec1 = d.path().join("sec1.key");
        let sk = p256::SecretKey::from(key.signing.clone());
        let pem = sk.to_sec1_pem(LineEnding::LF).unwrap();
        write_new(&sec1, pem.as_bytes(), 0o600).unwrap();
        assert_eq!(
            NodeKey::load_file(&sec1).unwrap().public_key_pem(),
            key.public_key_pem()
        );
        let junk = d.path().join("junk.key");
        write_new(&junk, b"not a key", 0o600).unwrap();
        let e = NodeKey::load_file(&junk).err().unwrap().to_string();
        assert!(e.contains("not a P-256 private key in PEM"), "{e}");
        assert!(NodeKey::load_file(&d.path().join("missing")).is_err());
    }

    #[test]
    fn headers_verify_with_the_advertised_key() {
        let key = NodeKey::generate();
        let ts = now_iso();
        assert!(ts.ends_with("+00:00") && ts.len() == 32, "{ts}");
        let h = key.headers_at(&ts);
        assert_eq!(h[0].0, "flwr-public-key");
        assert_eq!(h[1], (TIMESTAMP_HEADER, ts.clone()));
        let pem = String::from_utf8(B64.decode(&h[0].1).unwrap()).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n") && pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert_eq!(pem.as_bytes(), key.public_key_pem());
        let vk = VerifyingKey::from_public_key_pem(&pem).unwrap();
        let sig = DerSignature::from_bytes(&B64.decode(&h[2].1).unwrap()).unwrap();
        vk.verify(ts.as_bytes(), &sig).unwrap();
        // The signature covers the timestamp: another one does not verify.
        assert!(vk.verify(b"2026-01-01T00:00:00.000000+00:00", &sig).is_err());
        // Two keys are two identities.
        assert_ne!(NodeKey::generate().public_key_pem(), key.public_key_pem());
    }
}
