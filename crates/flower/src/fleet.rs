//! The Fleet API over HTTP(S): `POST /v1/fleet/<rpc>` with a protobuf body, signed headers,
//! and bounded retries; and a connected node with its heartbeat thread.
//!
//! Transport errors and 5xx answers are retried with exponential backoff a bounded number of
//! times, so an unreachable SuperLink ends in a clear error instead of a hang; 4xx answers are
//! refusals and are not retried. The heartbeat runs on its own thread because local training
//! can take longer than the SuperLink's patience (2 × the interval): without it the node would
//! be declared offline mid-round.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::auth::NodeKey;
use crate::error::{protocol, FlowerError, Result};
use crate::proto;

/// How requests are protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP (a SuperLink started with `--insecure`).
    Insecure,
    /// HTTPS trusting only these PEM root certificates (a private CA, as Flower deployments use).
    RootCertificates(Vec<u8>),
    /// HTTPS trusting the public Web PKI roots.
    WebPki,
}

/// Where and how to reach the SuperLink.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// `HOST:PORT` of the SuperLink's Fleet API.
    pub address: String,
    pub tls: Tls,
    /// Retries after a failed attempt (transport error or 5xx) before giving up.
    pub retries: u32,
    /// First backoff delay; doubled after each failure up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Time limit of one request (objects are at most 5 MiB each): a SuperLink that accepts
    /// the connection but never answers costs at most this per attempt.
    pub timeout: Duration,
    /// No new attempt starts after this much time spent on one call: the total wait for a
    /// SuperLink that is down or silent, whatever `retries` says.
    pub give_up_after: Duration,
}

impl FleetConfig {
    /// Defaults: 6 retries from 0.5 s doubling to 8 s (about 24 s of waiting), 60 s per
    /// request, no new attempt after 180 s.
    pub fn new(address: &str, tls: Tls) -> FleetConfig {
        FleetConfig {
            address: address.to_string(),
            tls,
            retries: 6,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            timeout: Duration::from_secs(60),
            give_up_after: Duration::from_secs(180),
        }
    }
}

/// Checks `HOST:PORT` (IPv6 hosts in brackets) and returns the base URL.
fn base_url(address: &str, tls: &Tls) -> Result<String> {
    let bad = |why: &str| {
        FlowerError::Config(format!(
            "SuperLink address `{address}`: {why} (expected HOST:PORT, e.g. 127.0.0.1:8000; the scheme follows \
             --insecure / --root-certificates)"
        ))
    };
    if address.contains("://") {
        return Err(bad("give no scheme"));
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    // A host name (letters, digits, dots, hyphens), an IPv4 address, or an IPv6 one in brackets:
    // anything else could only fail as "unreachable" after every retry.
    let valid_host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
                && !host.starts_with(['.', '-'])
        }
    };
    if !valid_host {
        return Err(bad("bad host"));
    }
    port.parse::<u16>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| bad("bad port"))?;
    let scheme = match tls {
        Tls::Insecure => "http",
        _ => "https",
    };
    Ok(format!("{scheme}://{address}"))
}

/// One attempt's failure.
enum Attempt {
    /// Worth another try: a transport error, or an HTTP status ≥ 500.
    Retry {
        status: Option<u16>,
        msg: String,
    },
    Fatal(FlowerError),
}

/// A Fleet API client for one node identity.
pub struct Fleet {
    agent: ureq::Agent,
    base: String,
    key: NodeKey,
    /// The key came from a file: it may be registered by the operator (`flwr supernode
    /// register`), so the node activates it instead of registering itself.
    persistent: bool,
    cfg: FleetConfig,
}

impl Fleet {
    /// A client with a fresh node key; nothing is sent yet.
    pub fn new(cfg: FleetConfig) -> Result<Fleet> {
        Fleet::build(cfg, NodeKey::generate(), false)
    }

    /// A client with the given node key (a persistent identity, for a SuperLink that admits
    /// only registered keys).
    pub fn with_key(cfg: FleetConfig, key: NodeKey) -> Result<Fleet> {
        Fleet::build(cfg, key, true)
    }

    fn build(cfg: FleetConfig, key: NodeKey, persistent: bool) -> Result<Fleet> {
        let base = base_url(&cfg.address, &cfg.tls)?;
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(cfg.timeout))
            .timeout_connect(Some(Duration::from_secs(10)));
        builder = match &cfg.tls {
            Tls::Insecure | Tls::WebPki => builder,
            Tls::RootCertificates(pem) => {
                let certs = ureq::tls::parse_pem(pem)
                    .filter_map(|item| match item {
                        Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c.to_owned())),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| FlowerError::Config(format!("root certificates: {e}")))?;
                if certs.is_empty() {
                    return Err(FlowerError::Config(
                        "root certificates: no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
                    ));
                }
                builder.tls_config(
                    ureq::tls::TlsConfig::builder()
                        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                        .build(),
                )
            }
        };
        Ok(Fleet {
            agent: builder.build().into(),
            base,
            key,
            persistent,
            cfg,
        })
    }

    /// The SuperLink's own flwr version, as its HTTP API describes itself (`/openapi.json`,
    /// `info.version`); `None` when it does not say (one quick attempt, never an error).
    pub fn server_version(&self) -> Option<String> {
        let mut resp = self
            .agent
            .get(format!("{}/openapi.json", self.base))
            .config()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .call()
            .ok()?;
        if resp.status().as_u16() != 200 {
            return None;
        }
        let body = resp.body_mut().with_config().limit(4 << 20).read_to_vec().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let version = v.get("info")?.get("version")?.as_str()?;
        (!version.is_empty() && version.len() < 40).then(|| version.to_string())
    }

    /// The base URL requests go to.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn once(&self, url: &str, rpc: &'static str, body: &[u8], timeout: Option<Duration>) -> Result<Vec<u8>, Attempt> {
        let mut req = self.agent.post(url).header("content-type", "application/protobuf");
        for (k, v) in self.key.headers() {
            req = req.header(k, v);
        }
        if let Some(t) = timeout {
            req = req.config().timeout_global(Some(t)).build();
        }
        let transport = |e: ureq::Error| Attempt::Retry {
            status: None,
            msg: e.to_string(),
        };
        let mut resp = req.send(body).map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .map_err(transport)?;
        match status {
            200..=299 => Ok(bytes),
            500..=599 => Err(Attempt::Retry {
                status: Some(status),
                msg: detail(&bytes),
            }),
            401 => Err(Attempt::Fatal(FlowerError::Http {
                rpc,
                status,
                detail: format!(
                    "{} (the SuperLink does not accept this node's signed request: it does not know the key (a \
                     SuperLink restarted without --database forgets its nodes; one started with \
                     --enable-supernode-auth admits only keys registered with `flwr supernode register`), or this \
                     machine's clock is more than 5 s off the SuperLink's)",
                    detail(&bytes)
                ),
            })),
            _ => Err(Attempt::Fatal(FlowerError::Http {
                rpc,
                status,
                detail: detail(&bytes),
            })),
        }
    }

    /// One RPC with the configured retries.
    fn call<Req: prost::Message, Resp: prost::Message + Default>(&self, rpc: &'static str, req: &Req) -> Result<Resp> {
        self.call_with(rpc, req, self.cfg.retries, None)
    }

    fn call_with<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        rpc: &'static str,
        req: &Req,
        retries: u32,
        timeout: Option<Duration>,
    ) -> Result<Resp> {
        let url = format!("{}/v1/fleet/{rpc}", self.base);
        let body = req.encode_to_vec();
        let start = Instant::now();
        let mut delay = self.cfg.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.once(&url, rpc, &body, timeout) {
                Ok(bytes) => {
                    return Resp::decode(bytes.as_slice()).map_err(|e| protocol(format!("{rpc} reply: {e}")));
                }
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry { status, msg })
                    if attempts > retries || start.elapsed() + delay >= self.cfg.give_up_after =>
                {
                    return Err(match status {
                        Some(status) => FlowerError::Http {
                            rpc,
                            status,
                            detail: format!("{msg} (after {attempts} attempts)"),
                        },
                        None => FlowerError::Unreachable {
                            url: self.base.clone(),
                            rpc,
                            attempts,
                            waited: start.elapsed(),
                            last: msg,
                        },
                    });
                }
                Err(Attempt::Retry { .. }) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(self.cfg.max_backoff);
                }
            }
        }
    }

    /// RegisterNode: makes the key known to the SuperLink (self-registration); returns the
    /// node id.
    pub fn register(&self) -> Result<u64> {
        let r: proto::RegisterNodeFleetResponse = self.call(
            "register-node",
            &proto::RegisterNodeFleetRequest {
                public_key: self.key.public_key_pem().to_vec(),
            },
        )?;
        Ok(r.node_id)
    }

    /// ActivateNode: the node goes online; returns its id.
    pub fn activate(&self, heartbeat_interval: f64) -> Result<u64> {
        let r: proto::ActivateNodeResponse = self.call(
            "activate-node",
            &proto::ActivateNodeRequest {
                public_key: self.key.public_key_pem().to_vec(),
                heartbeat_interval,
            },
        )?;
        Ok(r.node_id)
    }

    /// DeactivateNode, one quick attempt (used when leaving).
    pub fn deactivate(&self, node_id: u64) -> Result<()> {
        let _: proto::DeactivateNodeResponse = self.call_with(
            "deactivate-node",
            &proto::DeactivateNodeRequest { node_id },
            1,
            Some(Duration::from_secs(5)),
        )?;
        Ok(())
    }

    /// UnregisterNode, one quick attempt (used when leaving).
    pub fn unregister(&self, node_id: u64) -> Result<()> {
        let _: proto::UnregisterNodeFleetResponse = self.call_with(
            "unregister-node",
            &proto::UnregisterNodeFleetRequest { node_id },
            1,
            Some(Duration::from_secs(5)),
        )?;
        Ok(())
    }

    /// One heartbeat attempt; `false` if the SuperLink does not know the node.
    pub fn heartbeat(&self, node_id: u64, interval: f64) -> Result<bool> {
        let r: proto::SendNodeHeartbeatResponse = self.call_with(
            "send-node-heartbeat",
            &proto::SendNodeHeartbeatRequest {
                node: Some(proto::Node { node_id }),
                heartbeat_interval: interval,
            },
            0,
            Some(Duration::from_secs(5)),
        )?;
        Ok(r.success)
    }

    /// The next message for the node (metadata only) and its object tree, if any.
    pub fn pull_message(&self, node_id: u64) -> Result<Option<(proto::Message, proto::ObjectTree)>> {
        let r: proto::PullMessagesResponse = self.call(
            "pull-messages",
            &proto::PullMessagesRequest {
                node: Some(proto::Node { node_id }),
                message_ids: Vec::new(),
            },
        )?;
        let (Some(m), Some(t)) = (
            r.messages_list.into_iter().next(),
            r.message_object_trees.into_iter().next(),
        ) else {
            return Ok(None);
        };
        Ok(Some((m, t)))
    }

    /// One object: `Ok(None)` while the SuperLink has it registered but not yet stored.
    pub fn pull_object(&self, node_id: u64, run_id: u64, object_id: &str) -> Result<Option<Vec<u8>>> {
        let r: proto::PullObjectResponse = self.call(
            "pull-object",
            &proto::PullObjectRequest {
                node: Some(proto::Node { node_id }),
                run_id,
                object_id: object_id.to_string(),
            },
        )?;
        if !r.object_found {
            return Err(protocol(format!("the SuperLink has no object {object_id}")));
        }
        Ok(r.object_available.then_some(r.object_content))
    }

    /// Tells the SuperLink the message's objects arrived (it may then free them).
    pub fn confirm_received(&self, node_id: u64, run_id: u64, message_id: &str) -> Result<()> {
        let _: proto::ConfirmMessageReceivedResponse = self.call(
            "confirm-message-received",
            &proto::ConfirmMessageReceivedRequest {
                node: Some(proto::Node { node_id }),
                run_id,
                message_object_id: message_id.to_string(),
            },
        )?;
        Ok(())
    }

    /// Pushes a reply's metadata and tree; returns the objects the SuperLink still needs and
    /// the session they must be pushed under.
    pub fn push_message(
        &self,
        node_id: u64,
        message: proto::Message,
        tree: proto::ObjectTree,
        runtime_s: f64,
    ) -> Result<(Vec<String>, String)> {
        let r: proto::PushMessagesResponse = self.call(
            "push-messages",
            &proto::PushMessagesRequest {
                node: Some(proto::Node { node_id }),
                messages_list: vec![message],
                message_object_trees: vec![tree],
                clientapp_runtime_list: vec![runtime_s],
            },
        )?;
        Ok((r.objects_to_push, r.session_id))
    }

    /// Pushes one object of a pushed message.
    pub fn push_object(
        &self,
        node_id: u64,
        run_id: u64,
        object_id: &str,
        content: &[u8],
        session_id: &str,
    ) -> Result<()> {
        let _: proto::PushObjectResponse = self.call(
            "push-object",
            &proto::PushObjectRequest {
                node: Some(proto::Node { node_id }),
                run_id,
                object_id: object_id.to_string(),
                object_content: content.to_vec(),
                session_id: session_id.to_string(),
            },
        )?;
        Ok(())
    }
}

/// The `detail` of a JSON error body (`{"code": ..., "detail": ...}`), or the body itself.
fn detail(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("detail").or_else(|| v.get("message")))
    {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None if text.trim().is_empty() => "(empty body)".into(),
        None => text.chars().take(300).collect(),
    }
}

/// Where the heartbeat thread reports trouble (it cannot return errors).
pub type WarningSink = Arc<dyn Fn(String) + Send + Sync>;

/// A registered, active node: heartbeats run until [`Node::close`] (or drop), which
/// deactivates and unregisters it. Shared (`Arc`) so a signal handler can close it too.
pub struct Node {
    fleet: Arc<Fleet>,
    /// The node registered its key itself (and so unregisters it when leaving); false for a
    /// key the operator registered, which stays registered.
    self_registered: AtomicBool,
    /// Changes when [`Node::reregister`] replaces a registration the SuperLink forgot.
    id: Arc<AtomicU64>,
    heartbeat_interval: f64,
    heartbeat: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
    closed: AtomicBool,
}

impl Node {
    /// RegisterNode + ActivateNode, then heartbeats every ~0.8 × `heartbeat_interval` seconds
    /// (Flower accepts 10–1800; the node counts as offline after twice the interval).
    pub fn connect(fleet: Arc<Fleet>, heartbeat_interval: f64, warn: WarningSink) -> Result<Node> {
        if !(10.0..=1800.0).contains(&heartbeat_interval) {
            return Err(FlowerError::Config(format!(
                "the heartbeat interval must be 10–1800 s (Flower's bounds), got {heartbeat_interval}"
            )));
        }
        let (node_id, self_registered) = join(&fleet, heartbeat_interval)?;
        let id = Arc::new(AtomicU64::new(node_id));
        let (tx, rx) = mpsc::channel::<()>();
        let (hb_fleet, hb_id) = (fleet.clone(), id.clone());
        let handle = std::thread::Builder::new()
            .name("flower-heartbeat".into())
            .spawn(move || heartbeat_loop(&hb_fleet, &hb_id, heartbeat_interval, &rx, &warn))
            .map_err(|e| FlowerError::Config(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Node {
            fleet,
            self_registered: AtomicBool::new(self_registered),
            id,
            heartbeat_interval,
            heartbeat: Mutex::new(Some((tx, handle))),
            closed: AtomicBool::new(false),
        })
    }

    /// The node id the SuperLink gave this node (a new one after [`Node::reregister`]).
    pub fn node_id(&self) -> u64 {
        self.id.load(Ordering::SeqCst)
    }

    /// Registers and activates again, for a SuperLink that no longer knows this node (restarted
    /// without `--database`); the heartbeats follow the new id. Returns it.
    pub fn reregister(&self) -> Result<u64> {
        let (node_id, self_registered) = join(&self.fleet, self.heartbeat_interval)?;
        self.self_registered.store(self_registered, Ordering::SeqCst);
        self.id.store(node_id, Ordering::SeqCst);
        Ok(node_id)
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// Whether the node registered its key itself (a fresh key, or one the SuperLink let it
    /// register), rather than using a registration made by the operator.
    pub fn self_registered(&self) -> bool {
        self.self_registered.load(Ordering::SeqCst)
    }

    /// Stops the heartbeat, deactivates and unregisters the node. Only the first call acts; a
    /// concurrent call (a signal handler) waits until it is done.
    pub fn close(&self) -> Result<()> {
        let mut heartbeat = self.heartbeat.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        if let Some((tx, handle)) = heartbeat.take() {
            drop(tx);
            let _ = handle.join();
        }
        let d = self.fleet.deactivate(self.node_id());
        // A key the operator registered stays registered (the SuperLink refuses to unregister
        // it over the Fleet API anyway); a self-registered one is removed.
        let u = if self.self_registered.load(Ordering::SeqCst) {
            self.fleet.unregister(self.node_id())
        } else {
            Ok(())
        };
        self.closed.store(true, Ordering::SeqCst);
        d.and(u)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Joins as Flower's own SuperNode does: a fresh key registers itself, then activates; a key from
/// a file is activated first (the operator may have registered it), and registers itself only
/// where the SuperLink does not know it and allows self-registration. Returns the node id and
/// whether the node registered itself.
fn join(fleet: &Fleet, heartbeat_interval: f64) -> Result<(u64, bool)> {
    if !fleet.persistent {
        return Ok((register_and_activate(fleet, heartbeat_interval)?, true));
    }
    let not_known = match fleet.activate(heartbeat_interval) {
        Ok(id) => return Ok((id, false)),
        Err(e @ FlowerError::Http { .. }) => e,
        Err(e) => return Err(e),
    };
    match register_and_activate(fleet, heartbeat_interval) {
        Ok(id) => Ok((id, true)),
        Err(FlowerError::Http {
            status: 412, detail, ..
        }) => Err(FlowerError::Config(format!(
            "the SuperLink admits only registered nodes, and this node's key is not registered ({detail}; \
             activating it: {not_known}). The federation's operator registers it with `flwr supernode register \
             KEY.pub`, KEY being the --node-key file"
        ))),
        Err(e) => Err(e),
    }
}

/// RegisterNode + ActivateNode; a node registered but not activated is unregistered again.
fn register_and_activate(fleet: &Fleet, heartbeat_interval: f64) -> Result<u64> {
    let registered = fleet.register()?;
    match fleet.activate(heartbeat_interval) {
        Ok(id) => Ok(id),
        Err(e) => {
            let _ = fleet.unregister(registered);
            Err(e)
        }
    }
}

fn heartbeat_loop(fleet: &Fleet, id: &AtomicU64, interval: f64, stop: &mpsc::Receiver<()>, warn: &WarningSink) {
    let mut failures = 0u32;
    let mut n = 0u64;
    loop {
        let node_id = id.load(Ordering::SeqCst);
        // 0.7–0.9 × the interval (Flower's own jitter), sooner after a failure.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407 ^ node_id);
        let jitter = 0.7 + 0.2 * ((n >> 33) as f64 / (1u64 << 31) as f64);
        let wait = if failures == 0 {
            interval * jitter
        } else {
            (2f64.powi(failures as i32 - 1)).min(interval / 4.0)
        };
        match stop.recv_timeout(Duration::from_secs_f64(wait)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        match fleet.heartbeat(node_id, interval) {
            Ok(true) => failures = 0,
            Ok(false) => {
                failures += 1;
                warn(format!("heartbeat: the SuperLink does not recognise node {node_id}"));
            }
            Err(e) => {
                failures += 1;
                warn(format!("heartbeat failed ({failures} in a row): {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert_eq!(
            base_url("127.0.0.1:8000", &Tls::Insecure).unwrap(),
            "http://127.0.0.1:8000"
        );
        assert_eq!(
            base_url("link.example:443", &Tls::WebPki).unwrap(),
            "https://link.example:443"
        );
        assert_eq!(base_url("[::1]:8000", &Tls::Insecure).unwrap(), "http://[::1]:8000");
        for (bad, why) in [
            ("127.0.0.1", "no port"),
            ("localhost", "no port"),
            ("http://x:1", "no scheme"),
            ("x:0", "bad port"),
            ("x:99999", "bad port"),
            ("::1:8000", "bad host"),
            (":8000", "bad host"),
            ("not a host:8000", "bad host"),
            ("[not-v6]:8000", "bad host"),
            ("-x:8000", "bad host"),
        ] {
            let e = base_url(bad, &Tls::Insecure).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_root_certificates_are_refused() {
        let e = Fleet::new(FleetConfig::new("x:1", Tls::RootCertificates(b"not a pem".to_vec())))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn error_details_come_from_the_json_body() {
        assert_eq!(detail(br#"{"code": 1002, "detail": "bad type"}"#), "bad type");
        assert_eq!(detail(b""), "(empty body)");
        assert_eq!(detail(b"plain"), "plain");
    }

    /// A port nothing listens on: the bounded retries end in an error naming the SuperLink.
    #[test]
    fn unreachable_superlink_gives_up_after_the_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = FleetConfig::new(&format!("127.0.0.1:{port}"), Tls::Insecure);
        cfg.retries = 2;
        cfg.backoff = Duration::from_millis(20);
        let t = Instant::now();
        let e = Fleet::new(cfg).unwrap().register().unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10));
        let FlowerError::Unreachable { attempts, rpc, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!((*attempts, *rpc), (3, "register-node"));
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    /// A SuperLink that accepts connections but never answers: each attempt ends at the request
    /// timeout and no attempt starts after `give_up_after`, however many retries are allowed.
    #[test]
    fn silent_superlink_is_given_up_on_in_bounded_time() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = std::thread::spawn(move || {
            let mut open = Vec::new();
            for c in listener.incoming().take(64) {
                open.push(c);
            }
        });
        let mut cfg = FleetConfig::new(&format!("127.0.0.1:{port}"), Tls::Insecure);
        cfg.retries = 1000;
        cfg.backoff = Duration::from_millis(50);
        cfg.timeout = Duration::from_millis(300);
        cfg.give_up_after = Duration::from_millis(1500);
        let t = Instant::now();
        let e = Fleet::new(cfg).unwrap().register().unwrap_err();
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(1200) && took < Duration::from_secs(4),
            "{took:?}"
        );
        let FlowerError::Unreachable { attempts, .. } = &e else {
            panic!("{e}")
        };
        assert!((3..=8).contains(attempts), "{attempts} attempts");
        assert!(
            e.to_string().to_lowercase().contains("timeout") || e.to_string().contains("timed out"),
            "{e}"
        );
        drop(held);
    }
}
