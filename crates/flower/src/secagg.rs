//! Flower's SecAgg+ on the node side: what `flwr.client.mod.secaggplus_mod` does on a Python
//! node, byte-compatible with flwr 1.40–1.42 (pinned by the test vectors in
//! `tests/vectors/secaggplus.json`, made by flwr's own code).
//!
//! Four train messages make one round, each carrying the ConfigRecord [`SECAGGPLUS_RECORD`]:
//! 1. **setup**: the parameters; the node makes two SECP384R1 key pairs and sends both public
//!    keys (PEM, SubjectPublicKeyInfo);
//! 2. **share-keys**: its neighbours' public keys; it draws a 32-byte mask seed, Shamir-shares
//!    the seed and its first private key (PKCS#8 PEM) among the neighbours (pycryptodome's
//!    GF(2¹²⁸) scheme over 16-byte chunks), and sends each share Fernet-encrypted under the
//!    ECDH(sk2, pk2) key (HKDF-SHA256, 32 bytes, URL-safe base64);
//! 3. **collect-masked-vectors**: the global model and the neighbours' encrypted shares; it
//!    trains, weights the new parameters by `num_examples / max_weight`, quantises them
//!    (stochastic rounding into `[0, target_range]` after clipping to ±`clipping_range`), and
//!    adds its own mask (from the seed) and one pairwise mask per neighbour (from
//!    ECDH(sk1, pk1), added or subtracted by node id), modulo `mod_range`; masks come from
//!    numpy's legacy MT19937 `randint`, which the server regenerates;
//! 4. **unmask**: it sends its shares of the survivors' seeds and of the dropped nodes' keys.
//!
//! The server thus sees the sum of the masked vectors, from which only the sum of the updates
//! comes out, and recovers the masks of nodes that dropped after share-keys from the threshold
//! of shares. Key material and mask seeds come from the operating system's generator, never
//! from a run's seed: a reproducible key would be a known key.

use std::collections::HashMap;

use base64::Engine;
use hkdf::Hkdf;
use p384::ecdh::diffie_hellman;
use p384::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use p384::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use rand_mt::Mt;
use sha2::Sha256;

use crate::proto;
use crate::proto::config_record_value::Value as ConfigValue;
use crate::records::{config_record, config_value, ConfigRecord};

/// Record key of Flower's SecAgg+ stage configuration (`secaggplus_constants.RECORD_KEY_CONFIGS`).
pub const SECAGGPLUS_RECORD: &str = "secaggplus_configs";

/// The stages, in protocol order (`secaggplus_constants.Stage`).
pub const STAGES: [&str; 4] = ["setup", "share_keys", "collect_masked_vectors", "unmask"];

/// Shared key of `sk` and the PEM public key `pk`, as flwr's `generate_shared_key`: ECDH's
/// x-coordinate through HKDF-SHA256 (no salt, no info) to 32 bytes, URL-safe base64 (it is a
/// Fernet key, and the seed of a pairwise mask).
pub fn shared_key(sk: &SecretKey, pk_pem: &[u8]) -> Result<String, String> {
    let pem = std::str::from_utf8(pk_pem).map_err(|_| "a public key is not PEM text".to_string())?;
    let pk = PublicKey::from_public_key_pem(pem).map_err(|e| format!("a public key is not a P-384 PEM key: {e}"))?;
    let secret = diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
    let mut okm = [0u8; 32];
    Hkdf::<Sha256>::new(None, secret.raw_secret_bytes())
        .expand(&[], &mut okm)
        .map_err(|e| format!("HKDF: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE.encode(okm))
}

/// Fernet encryption under a [`shared_key`].
pub fn encrypt(key: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
    let f = fernet::Fernet::new(key).ok_or("not a Fernet key")?;
    Ok(f.encrypt(plaintext).into_bytes())
}

/// Fernet decryption (authenticated: a token made under another key or altered is refused).
pub fn decrypt(key: &str, token: &[u8]) -> Result<Vec<u8>, String> {
    let f = fernet::Fernet::new(key).ok_or("not a Fernet key")?;
    let token = std::str::from_utf8(token).map_err(|_| "a ciphertext is not a Fernet token".to_string())?;
    f.decrypt(token)
        .map_err(|_| "a ciphertext does not decrypt under the shared key (altered, or not for this node)".into())
}

/// `src ‖ dst ‖ len(seed share) ‖ seed share ‖ key share` (`share_keys_plaintext_concat`).
pub fn share_plaintext(src: u64, dst: u64, seed_share: &[u8], key_share: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + seed_share.len() + key_share.len());
    v.extend_from_slice(&src.to_le_bytes());
    v.extend_from_slice(&dst.to_le_bytes());
    v.extend_from_slice(&(seed_share.len() as u32).to_le_bytes());
    v.extend_from_slice(seed_share);
    v.extend_from_slice(key_share);
    v
}

/// The inverse of [`share_plaintext`].
pub fn split_plaintext(p: &[u8]) -> Result<(u64, u64, Vec<u8>, Vec<u8>), String> {
    if p.len() < 20 {
        return Err(format!("a share message of {} bytes, at least 20 expected", p.len()));
    }
    let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
    let n = u32::from_le_bytes(p[16..20].try_into().expect("4 bytes")) as usize;
    if p.len() < 20 + n {
        return Err(format!(
            "a share message claims a {n}-byte seed share in {} bytes",
            p.len()
        ));
    }
    Ok((u64_at(0), u64_at(8), p[20..20 + n].to_vec(), p[20 + n..].to_vec()))
}

/// Shamir's secret sharing as flwr's `create_shares` / `combine_shares` (pycryptodome's
/// `Shamir`, no "ssss" diffusion): the secret PKCS#7-padded to 16-byte chunks, each chunk
/// the constant term of a random polynomial of degree `threshold − 1` over GF(2¹²⁸)
/// (x¹²⁸ + x⁷ + x² + x + 1, big-endian, LSB the constant coefficient); share i (1-based) is
/// `i` as 4 little-endian bytes, then the polynomials' values at i.
pub mod shamir {
    const REDUCTION: u128 = 0x87;

    /// Product in GF(2¹²⁸).
    pub fn mul(a: u128, b: u128) -> u128 {
        let (mut v, mut z, mut b) = (a, 0u128, b);
        while b != 0 {
            if b & 1 == 1 {
                z ^= v;
            }
            let carry = v >> 127;
            v <<= 1;
            if carry == 1 {
                v ^= REDUCTION;
            }
            b >>= 1;
        }
        z
    }

    /// Inverse in GF(2¹²⁸): a^(2¹²⁸ − 2).
    pub fn inverse(a: u128) -> u128 {
        let (mut result, mut base) = (1u128, a);
        // 2¹²⁸ − 2: every bit set but the lowest.
        for bit in 0..128 {
            if bit != 0 {
                result = mul(result, base);
            }
            base = mul(base, base);
        }
        result
    }

    /// Splits `secret` into `num` shares, any `threshold` of which recover it; `coeff` yields
    /// each chunk's random coefficients, 16 bytes at a time (the OS generator in use, a fixed
    /// stream in tests).
    pub fn create_shares(
        secret: &[u8],
        threshold: usize,
        num: usize,
        coeff: &mut dyn FnMut() -> [u8; 16],
    ) -> Vec<Vec<u8>> {
        let pad = 16 - secret.len() % 16;
        let mut padded = secret.to_vec();
        padded.extend(std::iter::repeat_n(pad as u8, pad));
        let mut shares: Vec<Vec<u8>> = (1..=num as u32).map(|i| i.to_le_bytes().to_vec()).collect();
        for chunk in padded.chunks_exact(16) {
            // Highest degree first, the chunk last (pycryptodome's Horner order).
            let mut coeffs: Vec<u128> = (1..threshold).map(|_| u128::from_be_bytes(coeff())).collect();
            coeffs.push(u128::from_be_bytes(chunk.try_into().expect("16 bytes")));
            for (i, share) in shares.iter_mut().enumerate() {
                let x = i as u128 + 1;
                let y = coeffs.iter().fold(0u128, |acc, &c| mul(x, acc) ^ c);
                share.extend_from_slice(&y.to_be_bytes());
            }
        }
        shares
    }

    /// Recovers the secret from shares made by [`create_shares`] (or flwr).
    pub fn combine_shares(shares: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        let first = shares.first().ok_or("no shares")?;
        if first.len() < 20 || (first.len() - 4) % 16 != 0 || shares.iter().any(|s| s.len() != first.len()) {
            return Err("shares of unequal or impossible lengths".into());
        }
        let xs: Vec<u128> = shares
            .iter()
            .map(|s| u32::from_le_bytes(s[..4].try_into().expect("4 bytes")) as u128)
            .collect();
        for (i, x) in xs.iter().enumerate() {
            if *x == 0 || xs[..i].contains(x) {
                return Err("duplicate or zero share index".into());
            }
        }
        let mut out = Vec::new();
        for c in 0..(first.len() - 4) / 16 {
            let at = 4 + 16 * c;
            let mut secret = 0u128;
            for (j, s) in shares.iter().enumerate() {
                let y = u128::from_be_bytes(s[at..at + 16].try_into().expect("16 bytes"));
                let (mut num, mut den) = (1u128, 1u128);
                for (m, &xm) in xs.iter().enumerate() {
                    if m != j {
                        num = mul(num, xm);
                        den = mul(den, xs[j] ^ xm);
                    }
                }
                secret ^= mul(mul(y, num), inverse(den));
            }
            out.extend_from_slice(&secret.to_be_bytes());
        }
        let pad = *out.last().expect("at least one chunk") as usize;
        if pad == 0 || pad > 16 || out[out.len() - pad..].iter().any(|&b| b as usize != pad) {
            return Err("the shares do not combine to a padded secret".into());
        }
        out.truncate(out.len() - pad);
        Ok(out)
    }
}

/// flwr's `pseudo_rand_gen`: the seed folded to 32 bits (XOR of its little-endian words) seeds
/// numpy's legacy `RandomState` (MT19937), whose `randint(0, num_range − 1, dtype=int64)` fills
/// each array in turn (masked rejection on 32-bit draws, as numpy does for such ranges).
pub fn mask_stream(seed: &[u8], num_range: u64, total: usize) -> Result<Vec<i64>, String> {
    if !seed.len().is_multiple_of(4) {
        return Err(format!(
            "a mask seed of {} bytes (a multiple of 4 expected)",
            seed.len()
        ));
    }
    if !(2..=1 << 32).contains(&num_range) {
        return Err(format!("mod_range {num_range} is outside 2..=2³²"));
    }
    let seed32 = seed
        .chunks_exact(4)
        .fold(0u32, |acc, w| acc ^ u32::from_le_bytes(w.try_into().expect("4 bytes")));
    let mut mt = Mt::new(seed32);
    // numpy: high is exclusive, so values lie in [0, num_range − 2].
    let rng = (num_range - 2) as u32;
    let mask = if rng == 0 { 0 } else { u32::MAX >> rng.leading_zeros() };
    Ok((0..total)
        .map(|_| {
            if rng == 0 {
                return 0;
            }
            loop {
                let v = mt.next_u32() & mask;
                if v <= rng {
                    return v as i64;
                }
            }
        })
        .collect())
}

/// Stochastic rounding of `v` (flwr's `_stochastic_round`): up with probability `frac(v)`.
fn stochastic_round(v: f64, u: f64) -> i64 {
    let up = v.ceil();
    if u < up - v {
        up as i64 - 1
    } else {
        up as i64
    }
}

/// The SecAgg+ parameters of a round (the setup stage's config).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub sample_num: i64,
    pub share_num: usize,
    pub threshold: usize,
    pub clipping_range: f64,
    pub target_range: u64,
    pub mod_range: u64,
    pub max_weight: f64,
}

/// A node's two public keys (PEM): pk1 for masks, pk2 for encrypting shares.
type PublicKeys = (Vec<u8>, Vec<u8>);

/// One node's SecAgg+ state through a round.
pub struct SecAggPlus {
    nid: u64,
    stage: &'static str,
    params: Option<Params>,
    sk1: Option<SecretKey>,
    sk2: Option<SecretKey>,
    pk1: Vec<u8>,
    pk2: Vec<u8>,
    seed: [u8; 32],
    /// Neighbours' public keys (pk1, pk2), in the order the server listed them.
    public_keys: Vec<(u64, PublicKeys)>,
    seed_shares: HashMap<u64, Vec<u8>>,
    key_shares: HashMap<u64, Vec<u8>>,
    /// Fernet keys shared with each neighbour (from sk2).
    ss2: HashMap<u64, String>,
}

/// What a collect-masked-vectors stage needs from training.
pub struct Trained {
    /// The new parameters, array by array: (shape, values).
    pub arrays: Vec<(Vec<usize>, Vec<f32>)>,
    pub num_examples: u64,
}

/// A stage's answer: the reply's SecAgg+ record, and which stage it answered.
#[derive(Debug)]
pub struct StageReply {
    pub record: ConfigRecord,
    pub stage: &'static str,
}

fn int_of(v: &ConfigValue) -> Option<i64> {
    match v {
        ConfigValue::Sint64(x) => Some(*x),
        ConfigValue::Uint64(x) => i64::try_from(*x).ok(),
        _ => None,
    }
}

fn ids_of(v: Option<&ConfigValue>, key: &str) -> Result<Vec<u64>, String> {
    match v {
        Some(ConfigValue::SintList(l)) => l
            .vals
            .iter()
            .map(|&x| u64::try_from(x).map_err(|_| format!("`{key}` holds a negative node id")))
            .collect(),
        Some(ConfigValue::UintList(l)) => Ok(l.vals.clone()),
        // An empty Python list travels as whichever list type; accept an empty one of any.
        Some(ConfigValue::BytesList(l)) if l.vals.is_empty() => Ok(Vec::new()),
        Some(ConfigValue::DoubleList(l)) if l.vals.is_empty() => Ok(Vec::new()),
        Some(ConfigValue::StringList(l)) if l.vals.is_empty() => Ok(Vec::new()),
        Some(ConfigValue::BoolList(l)) if l.vals.is_empty() => Ok(Vec::new()),
        None => Err(format!("the required key `{key}` is missing")),
        Some(_) => Err(format!("`{key}` must be a list of node ids")),
    }
}

fn bytes_list(v: Option<&ConfigValue>, key: &str) -> Result<Vec<Vec<u8>>, String> {
    match v {
        Some(ConfigValue::BytesList(l)) => Ok(l.vals.clone()),
        Some(ConfigValue::SintList(l)) if l.vals.is_empty() => Ok(Vec::new()),
        Some(ConfigValue::UintList(l)) if l.vals.is_empty() => Ok(Vec::new()),
        None => Err(format!("the required key `{key}` is missing")),
        Some(_) => Err(format!("`{key}` must be a list of bytes")),
    }
}

/// A list of node ids as Python's serde sends it: sint64 unless one is beyond i64.
fn id_list(ids: &[u64]) -> ConfigValue {
    if ids.iter().all(|&x| x <= i64::MAX as u64) {
        ConfigValue::SintList(proto::SintList {
            vals: ids.iter().map(|&x| x as i64).collect(),
        })
    } else {
        ConfigValue::UintList(proto::UintList { vals: ids.to_vec() })
    }
}

fn random_coeff() -> [u8; 16] {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b
}

impl SecAggPlus {
    /// A node `nid` waiting for a round's setup.
    pub fn new(nid: u64) -> SecAggPlus {
        SecAggPlus {
            nid,
            stage: "unmask",
            params: None,
            sk1: None,
            sk2: None,
            pk1: Vec::new(),
            pk2: Vec::new(),
            seed: [0; 32],
            public_keys: Vec::new(),
            seed_shares: HashMap::new(),
            key_shares: HashMap::new(),
            ss2: HashMap::new(),
        }
    }

    /// The stage a config asks for, checked against the protocol's order (setup may always
    /// restart a round, as flwr allows).
    pub fn next_stage(&self, cfg: &ConfigRecord) -> Result<&'static str, String> {
        let stage = match config_value(cfg, "stage") {
            Some(ConfigValue::String(s)) => s.as_str(),
            Some(_) => return Err("SecAgg+: `stage` must be a string".into()),
            None => return Err("SecAgg+: the required key `stage` is missing".into()),
        };
        let Some(&next) = STAGES.iter().find(|&&s| s == stage) else {
            return Err(format!("SecAgg+: unknown stage `{stage}`"));
        };
        let expected = STAGES[(STAGES.iter().position(|&s| s == self.stage).expect("known") + 1) % STAGES.len()];
        if next != "setup" && next != expected {
            return Err(format!(
                "SecAgg+: expected the {expected} stage, but received {next} (aborting secure aggregation)"
            ));
        }
        Ok(next)
    }

    /// Answers one stage. `train` is called in the collect-masked-vectors stage only. On error
    /// the node waits for a new setup.
    pub fn handle(
        &mut self,
        cfg: &ConfigRecord,
        train: impl FnOnce() -> Result<Trained, String>,
    ) -> Result<StageReply, String> {
        let stage = self.next_stage(cfg)?;
        let record = match stage {
            "setup" => self.setup(cfg),
            "share_keys" => self.share_keys(cfg),
            "collect_masked_vectors" => self.collect_masked_vectors(cfg, train),
            _ => self.unmask(cfg),
        };
        match record {
            Ok(record) => {
                self.stage = stage;
                Ok(StageReply { record, stage })
            }
            Err(e) => {
                self.stage = "unmask";
                Err(format!("SecAgg+ {stage}: {e}"))
            }
        }
    }

    fn params(&self) -> Result<&Params, String> {
        self.params
            .as_ref()
            .ok_or_else(|| "no setup stage before this one".to_string())
    }

    fn setup(&mut self, cfg: &ConfigRecord) -> Result<ConfigRecord, String> {
        let int = |k: &str| -> Result<i64, String> {
            config_value(cfg, k)
                .and_then(int_of)
                .ok_or_else(|| format!("the required int `{k}` is missing or not an int"))
        };
        let float = |k: &str| -> Result<f64, String> {
            match config_value(cfg, k) {
                Some(ConfigValue::Double(x)) => Ok(*x),
                _ => Err(format!("the required float `{k}` is missing or not a float")),
            }
        };
        let positive = |k: &str| -> Result<u64, String> {
            u64::try_from(int(k)?)
                .ok()
                .filter(|&x| x > 0)
                .ok_or_else(|| format!("`{k}` must be > 0"))
        };
        let p = Params {
            sample_num: int("sample_num")?,
            share_num: positive("share_num")? as usize,
            threshold: positive("threshold")? as usize,
            clipping_range: float("clipping_range")?,
            target_range: positive("target_range")?,
            mod_range: positive("mod_range")?,
            max_weight: float("max_weight")?,
        };
        if !(p.clipping_range > 0.0 && p.clipping_range.is_finite() && p.max_weight > 0.0 && p.max_weight.is_finite()) {
            return Err("clipping_range and max_weight must be finite numbers > 0".into());
        }
        if p.mod_range > 1 << 32 || p.target_range >= p.mod_range {
            return Err(format!(
                "mod_range {} must be at most 2³² and above target_range {}",
                p.mod_range, p.target_range
            ));
        }
        let sk1 = SecretKey::random(&mut OsRng);
        let sk2 = SecretKey::random(&mut OsRng);
        let pem = |sk: &SecretKey| -> Result<Vec<u8>, String> {
            Ok(sk
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| format!("PEM: {e}"))?
                .into_bytes())
        };
        self.pk1 = pem(&sk1)?;
        self.pk2 = pem(&sk2)?;
        self.sk1 = Some(sk1);
        self.sk2 = Some(sk2);
        self.params = Some(p);
        self.public_keys.clear();
        self.seed_shares.clear();
        self.key_shares.clear();
        self.ss2.clear();
        Ok(config_record(vec![
            ("pk1", ConfigValue::Bytes(self.pk1.clone())),
            ("pk2", ConfigValue::Bytes(self.pk2.clone())),
        ]))
    }

    fn share_keys(&mut self, cfg: &ConfigRecord) -> Result<ConfigRecord, String> {
        let threshold = self.params()?.threshold;
        let share_num = self.params()?.share_num;
        let mut keys = Vec::new();
        for item in cfg.items.iter().filter(|i| i.key != "stage") {
            let nid: u64 = item
                .key
                .parse()
                .map_err(|_| format!("key `{}` is not a node id", item.key))?;
            let pair = match item.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(ConfigValue::BytesList(l)) if l.vals.len() == 2 => (l.vals[0].clone(), l.vals[1].clone()),
                _ => return Err(format!("the value of `{nid}` must be a list of two bytes")),
            };
            keys.push((nid, pair));
        }
        if keys.len() < threshold {
            return Err(format!(
                "{} neighbours (this node included), fewer than the threshold {threshold}",
                keys.len()
            ));
        }
        if keys.len() > share_num {
            return Err(format!("{} neighbours for {share_num} shares", keys.len()));
        }
        let mut all: Vec<&[u8]> = keys
            .iter()
            .flat_map(|(_, (a, b))| [a.as_slice(), b.as_slice()])
            .collect();
        all.sort_unstable();
        if all.windows(2).any(|w| w[0] == w[1]) {
            return Err("some public keys are identical".into());
        }
        match keys.iter().find(|(n, _)| *n == self.nid) {
            Some((_, (a, b))) if *a == self.pk1 && *b == self.pk2 => {}
            _ => return Err("this node's own public keys are missing or altered in the list".into()),
        }
        OsRng.fill_bytes(&mut self.seed);
        let sk1_pem = self
            .sk1
            .as_ref()
            .ok_or("no keys")?
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| format!("PKCS#8: {e}"))?;
        let seed_shares = shamir::create_shares(&self.seed, threshold, share_num, &mut random_coeff);
        let key_shares = shamir::create_shares(sk1_pem.as_bytes(), threshold, share_num, &mut random_coeff);
        let sk2 = self.sk2.as_ref().ok_or("no keys")?;
        let (mut dsts, mut ciphertexts) = (Vec::new(), Vec::new());
        for (idx, (nid, (_, pk2))) in keys.iter().enumerate() {
            if *nid == self.nid {
                self.seed_shares.insert(self.nid, seed_shares[idx].clone());
                self.key_shares.insert(self.nid, key_shares[idx].clone());
                continue;
            }
            let key = shared_key(sk2, pk2).map_err(|e| format!("node {nid}: {e}"))?;
            let plain = share_plaintext(self.nid, *nid, &seed_shares[idx], &key_shares[idx]);
            ciphertexts.push(encrypt(&key, &plain)?);
            dsts.push(*nid);
            self.ss2.insert(*nid, key);
        }
        self.public_keys = keys;
        Ok(config_record(vec![
            ("dsts", id_list(&dsts)),
            ("ctxts", ConfigValue::BytesList(proto::BytesList { vals: ciphertexts })),
        ]))
    }

    fn collect_masked_vectors(
        &mut self,
        cfg: &ConfigRecord,
        train: impl FnOnce() -> Result<Trained, String>,
    ) -> Result<ConfigRecord, String> {
        let p = self.params()?.clone();
        let ciphertexts = bytes_list(config_value(cfg, "ctxts"), "ctxts")?;
        let srcs = ids_of(config_value(cfg, "srcs"), "srcs")?;
        if ciphertexts.len() != srcs.len() {
            return Err(format!("{} ciphertexts from {} sources", ciphertexts.len(), srcs.len()));
        }
        if ciphertexts.len() + 1 < p.threshold {
            return Err("not enough neighbours left".into());
        }
        for (src, ct) in srcs.iter().zip(&ciphertexts) {
            let key = self
                .ss2
                .get(src)
                .ok_or_else(|| format!("a share from node {src}, which is no neighbour"))?;
            let (from, to, seed_share, key_share) = split_plaintext(&decrypt(key, ct)?)?;
            if from != *src || to != self.nid {
                return Err(format!(
                    "node {src} forwarded a share from {from} for {to} (this is {})",
                    self.nid
                ));
            }
            self.seed_shares.insert(*src, seed_share);
            self.key_shares.insert(*src, key_share);
        }
        let trained = train()?;
        let ratio = trained.num_examples as f64 / p.max_weight;
        let q_ratio = (ratio * p.target_range as f64).round() as i64;
        let dq_ratio = q_ratio as f64 / p.target_range as f64;
        let quantizer = p.target_range as f64 / (2.0 * p.clipping_range);
        // The averaging weight first, then each array, as flwr's `factor_combine`.
        let mut shapes: Vec<Vec<usize>> = vec![vec![1]];
        let mut flat: Vec<i64> = vec![q_ratio];
        // The rounding's coins: a ChaCha stream keyed once from the OS (one syscall per value
        // would cost more than the rest of the masking).
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let mut coins = <rand_chacha::ChaCha12Rng as rand::SeedableRng>::from_seed(key);
        for (shape, values) in &trained.arrays {
            shapes.push(shape.clone());
            for &v in values {
                let x =
                    ((v as f64 * dq_ratio).clamp(-p.clipping_range, p.clipping_range) + p.clipping_range) * quantizer;
                flat.push(stochastic_round(x, rand::Rng::random::<f64>(&mut coins)));
            }
        }
        let m = p.mod_range as i64;
        let own = mask_stream(&self.seed, p.mod_range, flat.len())?;
        for (a, b) in flat.iter_mut().zip(own) {
            *a += b;
        }
        let sk1 = self.sk1.as_ref().ok_or("no keys")?;
        for src in &srcs {
            let (_, (pk1, _)) = self
                .public_keys
                .iter()
                .find(|(n, _)| n == src)
                .ok_or_else(|| format!("no public key of node {src}"))?;
            let seed = shared_key(sk1, pk1)?;
            let mask = mask_stream(seed.as_bytes(), p.mod_range, flat.len())?;
            let sign = if self.nid > *src { 1 } else { -1 };
            for (a, b) in flat.iter_mut().zip(mask) {
                *a += sign * b;
            }
        }
        let mut out = Vec::with_capacity(shapes.len());
        let mut at = 0;
        for shape in shapes {
            let n: usize = shape.iter().product();
            let mut bytes = Vec::with_capacity(n * 8);
            for v in &flat[at..at + n] {
                bytes.extend_from_slice(&v.rem_euclid(m).to_le_bytes());
            }
            at += n;
            let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
            out.push(privpkt_dataset::npy::to_bytes(
                privpkt_dataset::npy::Dtype::I64,
                &dims,
                &bytes,
            )?);
        }
        Ok(config_record(vec![(
            "masked_params",
            ConfigValue::BytesList(proto::BytesList { vals: out }),
        )]))
    }

    fn unmask(&mut self, cfg: &ConfigRecord) -> Result<ConfigRecord, String> {
        let threshold = self.params()?.threshold;
        let active = ids_of(config_value(cfg, "active_nids"), "active_nids")?;
        let dead = ids_of(config_value(cfg, "dead_nids"), "dead_nids")?;
        if active.len() < threshold {
            return Err(format!(
                "{} active neighbours, fewer than the threshold {threshold}",
                active.len()
            ));
        }
        // Seed shares of the nodes still there, key shares of those that dropped.
        let held = |from: &HashMap<u64, Vec<u8>>, what: &str, nid: &u64| {
            from.get(nid)
                .cloned()
                .ok_or_else(|| format!("no {what} share of node {nid}"))
        };
        let shares = active
            .iter()
            .map(|n| held(&self.seed_shares, "seed", n))
            .chain(dead.iter().map(|n| held(&self.key_shares, "key", n)))
            .collect::<Result<Vec<_>, String>>()?;
        let nids: Vec<u64> = active.iter().chain(&dead).copied().collect();
        Ok(config_record(vec![
            ("nids", id_list(&nids)),
            ("shares", ConfigValue::BytesList(proto::BytesList { vals: shares })),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::pkcs8::DecodePrivateKey;

    /// Made by flwr 1.40.0's own code: tests/vectors/secaggplus_vectors.py.
    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/vectors/secaggplus.json")).expect("vectors")
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn sk(pem: &str) -> SecretKey {
        SecretKey::from_pkcs8_pem(pem).expect("flwr's PKCS#8 PEM")
    }

    #[test]
    fn key_agreement_matches_flwr() {
        let v = vectors();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        assert_eq!(
            shared_key(&sk(&s("sk_a_pem")), s("pk_b_pem").as_bytes()).unwrap(),
            s("shared_key")
        );
        assert_eq!(
            shared_key(&sk(&s("sk_b_pem")), s("pk_a_pem").as_bytes()).unwrap(),
            s("shared_key")
        );
        // Our PEM public key is what flwr would print for the same key.
        let pk = sk(&s("sk_a_pem"))
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert_eq!(pk, s("pk_a_pem"));
        assert!(shared_key(&sk(&s("sk_a_pem")), b"not a key")
            .unwrap_err()
            .contains("PEM"));
    }

    #[test]
    fn fernet_tokens_match_flwr() {
        let v = vectors();
        let key = v["shared_key"].as_str().unwrap();
        let token = v["token"].as_str().unwrap().as_bytes();
        let plain = hex(v["plaintext"].as_str().unwrap());
        assert_eq!(decrypt(key, token).unwrap(), plain);
        let (src, dst, seed, k) = split_plaintext(&plain).unwrap();
        assert_eq!((src, dst, seed.len(), k.len()), (7, (1 << 63) + 5, 52, 324));
        assert_eq!(share_plaintext(src, dst, &seed, &k), plain);
        // Ours decrypts back, and an altered token or another key is refused.
        let ours = encrypt(key, b"hello").unwrap();
        assert_eq!(decrypt(key, &ours).unwrap(), b"hello");
        let mut bad = token.to_vec();
        bad[60] = if bad[60] == b'A' { b'B' } else { b'A' };
        assert!(decrypt(key, &bad).is_err());
        let other = shared_key(
            &SecretKey::random(&mut OsRng),
            v["pk_a_pem"].as_str().unwrap().as_bytes(),
        )
        .unwrap();
        assert!(decrypt(&other, token).unwrap_err().contains("does not decrypt"));
        assert!(split_plaintext(&[0; 10]).is_err());
    }

    #[test]
    fn shamir_matches_pycryptodome() {
        let v = vectors();
        let secret = hex(v["shamir_secret"].as_str().unwrap());
        let stream = hex(v["shamir_coeff_stream"].as_str().unwrap());
        let want: Vec<Vec<u8>> = v["shamir_shares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| hex(s.as_str().unwrap()))
            .collect();
        let mut at = 0;
        let mut coeff = || {
            let c: [u8; 16] = stream[at..at + 16].try_into().unwrap();
            at += 16;
            c
        };
        let shares = shamir::create_shares(&secret, 3, 5, &mut coeff);
        assert_eq!(shares, want);
        // Any 3 recover it; 2 do not.
        assert_eq!(shamir::combine_shares(&want[1..4]).unwrap(), secret);
        assert_eq!(
            shamir::combine_shares(&[want[4].clone(), want[0].clone(), want[2].clone()]).unwrap(),
            secret
        );
        assert_eq!(shamir::combine_shares(&want).unwrap(), secret);
        assert_ne!(shamir::combine_shares(&want[..2]).ok(), Some(secret.clone()));
        assert!(shamir::combine_shares(&[want[0].clone(), want[0].clone()]).is_err());
    }

    #[test]
    fn gf_inverse_is_an_inverse() {
        for a in [1u128, 2, 3, 0x87, u128::MAX, 0x1234_5678_9abc_def0_1122_3344_5566_7788] {
            assert_eq!(shamir::mul(a, shamir::inverse(a)), 1, "{a:x}");
        }
    }

    #[test]
    fn masks_match_numpy() {
        let v = vectors();
        let key = v["shared_key"].as_str().unwrap();
        let want: Vec<i64> = v["masks"].as_array().unwrap().iter().flat_map(flatten).collect();
        assert_eq!(mask_stream(key.as_bytes(), 1 << 32, want.len()).unwrap(), want);
        let small: Vec<i64> = flatten(&v["masks_small"][0]);
        assert_eq!(mask_stream(&[1, 2, 3, 4].repeat(8), 1 << 20, 5).unwrap(), small);
        assert!(mask_stream(&[1, 2, 3], 1 << 32, 1).is_err());
    }

    fn flatten(a: &serde_json::Value) -> Vec<i64> {
        match a {
            serde_json::Value::Array(items) => items.iter().flat_map(flatten).collect(),
            x => vec![x.as_i64().unwrap()],
        }
    }

    #[test]
    fn stochastic_rounding_is_unbiased() {
        assert_eq!(stochastic_round(2.0, 0.5), 2);
        assert_eq!(stochastic_round(2.25, 0.8), 3);
        assert_eq!(stochastic_round(2.25, 0.7), 2);
        let mean = (0..10_000)
            .map(|i| stochastic_round(2.25, (i as f64 + 0.5) / 10_000.0) as f64)
            .sum::<f64>()
            / 1e4;
        assert!((mean - 2.25).abs() < 1e-3, "{mean}");
    }

    fn cfg(pairs: Vec<(&str, ConfigValue)>) -> ConfigRecord {
        config_record(pairs)
    }

    fn get<'a>(r: &'a ConfigRecord, k: &str) -> &'a ConfigValue {
        config_value(r, k).unwrap_or_else(|| panic!("no `{k}`"))
    }

    /// A whole round against a server that does what flwr's `SecAggPlusWorkflow` does: four
    /// nodes, threshold 3, node 4 dies after share-keys. The server, holding only the masked
    /// vectors and the shares, recovers the weighted average of nodes 1–3.
    #[test]
    fn a_round_with_a_dropout_unmasks_to_the_weighted_average() {
        let ids = [11u64, 22, 33, 44];
        let mut nodes: Vec<SecAggPlus> = ids.iter().map(|&n| SecAggPlus::new(n)).collect();
        let (clip, target, modr, maxw) = (8.0, 1u64 << 22, 1u64 << 32, 100.0);
        let setup = cfg(vec![
            ("stage", ConfigValue::String("setup".into())),
            ("sample_num", ConfigValue::Sint64(4)),
            ("share_num", ConfigValue::Sint64(4)),
            ("threshold", ConfigValue::Sint64(3)),
            ("clipping_range", ConfigValue::Double(clip)),
            ("target_range", ConfigValue::Sint64(target as i64)),
            ("mod_range", ConfigValue::Sint64(modr as i64)),
            ("max_weight", ConfigValue::Double(maxw)),
        ]);
        let no_training = || -> Result<Trained, String> { panic!("trained outside collect_masked_vectors") };
        let mut pks = Vec::new();
        for n in nodes.iter_mut() {
            let r = n.handle(&setup, no_training).unwrap().record;
            let b = |k| match get(&r, k) {
                ConfigValue::Bytes(b) => b.clone(),
                _ => panic!(),
            };
            pks.push((b("pk1"), b("pk2")));
        }
        // share-keys: everyone is everyone's neighbour.
        let mut keys = vec![("stage", ConfigValue::String("share_keys".into()))];
        let names: Vec<String> = ids.iter().map(u64::to_string).collect();
        for (name, (a, b)) in names.iter().zip(&pks) {
            keys.push((
                name.as_str(),
                ConfigValue::BytesList(proto::BytesList {
                    vals: vec![a.clone(), b.clone()],
                }),
            ));
        }
        let keys = cfg(keys);
        let mut inbox: HashMap<u64, (Vec<u64>, Vec<Vec<u8>>)> = HashMap::new();
        for n in nodes.iter_mut() {
            let r = n.handle(&keys, no_training).unwrap().record;
            let dsts = ids_of(Some(get(&r, "dsts")), "dsts").unwrap();
            let cts = bytes_list(Some(get(&r, "ctxts")), "ctxts").unwrap();
            assert_eq!(dsts.len(), 3);
            for (d, c) in dsts.into_iter().zip(cts) {
                let e = inbox.entry(d).or_default();
                e.0.push(n.nid);
                e.1.push(c);
            }
        }
        // Node 44 is gone; the others train and send masked vectors.
        let updates = [
            (vec![0.5f32, -1.25, 3.0], 10u64),
            (vec![1.0, 2.0, -0.5], 30),
            (vec![-2.0, 0.25, 7.5], 60),
        ];
        let mut sum: Option<Vec<i64>> = None;
        for (n, (values, examples)) in nodes.iter_mut().take(3).zip(&updates) {
            // 44's shares were sent before it died: the server forwards them too.
            let (srcs, cts) = inbox[&n.nid].clone();
            let c = cfg(vec![
                ("stage", ConfigValue::String("collect_masked_vectors".into())),
                ("ctxts", ConfigValue::BytesList(proto::BytesList { vals: cts })),
                ("srcs", id_list(&srcs)),
            ]);
            let r = n
                .handle(&c, || {
                    Ok(Trained {
                        arrays: vec![(vec![3], values.clone())],
                        num_examples: *examples,
                    })
                })
                .unwrap()
                .record;
            let vectors = bytes_list(Some(get(&r, "masked_params")), "masked_params").unwrap();
            assert_eq!(vectors.len(), 2, "weight, then the one array");
            let flat: Vec<i64> = vectors
                .iter()
                .flat_map(|b| {
                    let (info, data) = privpkt_dataset::npy::parse_bytes(b).unwrap();
                    assert_eq!(info.dtype, privpkt_dataset::npy::Dtype::I64);
                    data.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect::<Vec<_>>()
                })
                .collect();
            sum = Some(match sum {
                None => flat,
                Some(s) => s
                    .iter()
                    .zip(&flat)
                    .map(|(a, b)| (a + b).rem_euclid(modr as i64))
                    .collect(),
            });
        }
        let mut masked = sum.unwrap();
        // unmask: seeds of the living, key shares of the dead.
        let mut shares: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
        let un = cfg(vec![
            ("stage", ConfigValue::String("unmask".into())),
            ("active_nids", id_list(&ids[..3])),
            ("dead_nids", id_list(&ids[3..])),
        ]);
        for n in nodes.iter_mut().take(3) {
            let r = n.handle(&un, no_training).unwrap().record;
            let owners = ids_of(Some(get(&r, "nids")), "nids").unwrap();
            for (o, sh) in owners
                .into_iter()
                .zip(bytes_list(Some(get(&r, "shares")), "shares").unwrap())
            {
                shares.entry(o).or_default().push(sh);
            }
        }
        let total = masked.len();
        for (&owner, sh) in &shares {
            let secret = shamir::combine_shares(sh).unwrap();
            if owner != 44 {
                for (m, x) in masked.iter_mut().zip(mask_stream(&secret, modr, total).unwrap()) {
                    *m -= x;
                }
            } else {
                let sk = SecretKey::from_pkcs8_pem(std::str::from_utf8(&secret).unwrap()).unwrap();
                for (other, (pk1, _)) in ids.iter().zip(&pks).take(3) {
                    let seed = shared_key(&sk, pk1).unwrap();
                    let sign = if owner > *other { 1 } else { -1 };
                    for (m, x) in masked
                        .iter_mut()
                        .zip(mask_stream(seed.as_bytes(), modr, total).unwrap())
                    {
                        *m += sign * x;
                    }
                }
            }
        }
        let plain: Vec<i64> = masked.iter().map(|m| m.rem_euclid(modr as i64)).collect();
        let q_total = plain[0] as f64;
        let step = 2.0 * clip / target as f64;
        let expect_total: f64 = updates
            .iter()
            .map(|(_, n)| (*n as f64 / maxw * target as f64).round())
            .sum();
        assert_eq!(q_total, expect_total);
        for (k, &q) in plain[1..].iter().enumerate() {
            let avg = (q as f64 * step - 3.0 * clip) * target as f64 / q_total;
            let want = updates.iter().map(|(v, n)| v[k] as f64 * *n as f64).sum::<f64>() / 100.0;
            assert!((avg - want).abs() < 1e-4, "parameter {k}: {avg} vs {want}");
        }
        // A stage out of turn is refused, and the node waits for a new setup.
        let e = nodes[0].handle(&un, no_training).err().unwrap();
        assert!(e.contains("expected the setup stage"), "{e}");
    }

    /// What a node parses from its peers (decrypted share messages, shares, tokens, keys) and
    /// from the server (stage configs) is refused with an error, never a panic.
    #[test]
    fn garbage_is_an_error_not_a_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let bytes = |rng: &mut rand_chacha::ChaCha8Rng, max: usize| -> Vec<u8> {
            let n = rng.random_range(0..max);
            (0..n).map(|_| rng.random()).collect()
        };
        let key = vectors()["shared_key"].as_str().unwrap().to_string();
        let sk = SecretKey::random(&mut OsRng);
        for _ in 0..500 {
            let b = bytes(&mut rng, 120);
            let _ = split_plaintext(&b);
            let _ = decrypt(&key, &b);
            let _ = shared_key(&sk, &b);
            let _ = mask_stream(&b, rng.random_range(0..1u64 << 33), 4);
            let shares: Vec<Vec<u8>> = (0..rng.random_range(0..5)).map(|_| bytes(&mut rng, 60)).collect();
            let _ = shamir::combine_shares(&shares);
        }
        // Stage configs with the wrong types or missing keys.
        let mut node = SecAggPlus::new(1);
        let no_training = || -> Result<Trained, String> { Err("no".into()) };
        for c in [
            cfg(vec![]),
            cfg(vec![("stage", ConfigValue::Sint64(1))]),
            cfg(vec![("stage", ConfigValue::String("setup".into()))]),
            cfg(vec![
                ("stage", ConfigValue::String("setup".into())),
                ("sample_num", ConfigValue::String("x".into())),
            ]),
        ] {
            assert!(node.handle(&c, no_training).is_err());
        }
        let setup = cfg(vec![
            ("stage", ConfigValue::String("setup".into())),
            ("sample_num", ConfigValue::Sint64(2)),
            ("share_num", ConfigValue::Sint64(2)),
            ("threshold", ConfigValue::Sint64(2)),
            ("clipping_range", ConfigValue::Double(8.0)),
            ("target_range", ConfigValue::Sint64(1 << 22)),
            ("mod_range", ConfigValue::Sint64(1 << 32)),
            ("max_weight", ConfigValue::Double(10.0)),
        ]);
        for keys in [
            vec![
                ("stage", ConfigValue::String("share_keys".into())),
                ("x", ConfigValue::Sint64(1)),
            ],
            vec![
                ("stage", ConfigValue::String("share_keys".into())),
                ("1", ConfigValue::BytesList(proto::BytesList { vals: vec![vec![1]] })),
                (
                    "2",
                    ConfigValue::BytesList(proto::BytesList {
                        vals: vec![vec![1], vec![2]],
                    }),
                ),
            ],
            vec![
                ("stage", ConfigValue::String("share_keys".into())),
                (
                    "1",
                    ConfigValue::BytesList(proto::BytesList {
                        vals: vec![vec![1], vec![2]],
                    }),
                ),
                (
                    "2",
                    ConfigValue::BytesList(proto::BytesList {
                        vals: vec![vec![3], vec![4]],
                    }),
                ),
            ],
        ] {
            node.handle(&setup, no_training).unwrap();
            let e = node.handle(&cfg(keys), no_training).unwrap_err();
            assert!(e.starts_with("SecAgg+ share_keys: "), "{e}");
        }
    }
}
