//! The node's identity: a P-256 key whose public half names the node to the SuperLink, and
//! the signed headers every Fleet request carries.
//!
//! Flower's automatic node authentication is on even with `--insecure`: each request sends
//! the public key (base64 of its PEM SubjectPublicKeyInfo), a timezone-aware ISO-8601
//! timestamp and a DER ECDSA-SHA256 signature of that timestamp. The SuperLink accepts
//! timestamps from 5 s ahead to 305 s behind its clock, and ties the node id to the key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};

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
