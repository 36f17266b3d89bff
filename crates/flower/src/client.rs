//! The node's work loop: pull a message, fetch and check its objects, hand its arrays and
//! config to a [`FlClient`], and push the reply (or an error reply) back.
//!
//! The [`FlClient`] trait is all a model needs to implement: the loop owns the protocol
//! (object store, reply metadata, TTL, sessions), so the same trainer could sit behind another
//! transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{protocol, FlowerError, Result};
use crate::fleet::Node;
use crate::objects::{deflate_message, inflate_message, object_id, post_order};
use crate::proto;
use crate::proto::config_record_value::Value as ConfigValue;
use crate::records::{config_record, metric_record, Array, ArrayRecord, ConfigRecord, Metric, Record, RecordDict};

pub use crate::secagg::SECAGGPLUS_RECORD;
use crate::secagg::{SecAggPlus, Trained};

/// Error code of a reply whose ClientApp failed (flwr's `CLIENT_APP_RAISED_EXCEPTION`).
pub const CLIENT_APP_RAISED_EXCEPTION: i64 = 2;

/// What a train message returns: the new weights, the averaging weight, and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReply {
    pub arrays: ArrayRecord,
    /// FedAvg's weight (`num-examples`).
    pub num_examples: u64,
    pub metrics: Vec<(String, Metric)>,
    /// Time spent inside the call converting arrays (not training), counted as overhead.
    pub convert: Duration,
    /// Client-side clipping of the update (when the server asked for it); reported locally
    /// only: the unclipped norm depends on private data and is never sent.
    pub clip: Option<ClipReport>,
}

/// Flower's client-side clipping applied to one update (`fixedclipping_mod` semantics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipReport {
    /// The server's `clipping_norm`.
    pub clipping_norm: f64,
    /// ‖new − received‖₂ over all arrays, before clipping.
    pub norm_before: f64,
    /// The same after clipping (≤ `clipping_norm`).
    pub norm_after: f64,
}

/// What an evaluate message returns.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReply {
    pub num_examples: u64,
    pub metrics: Vec<(String, Metric)>,
    /// Time spent inside the call converting arrays (not evaluating), counted as overhead.
    pub convert: Duration,
}

/// A model taking part in a federation. Errors become error replies to the server (and are
/// reported locally); the loop carries on with the next message.
pub trait FlClient {
    /// Train from the global `arrays` with the server's `config`.
    fn train(&mut self, arrays: &ArrayRecord, config: &ConfigRecord) -> anyhow::Result<TrainReply>;
    /// Evaluate the global `arrays` on local data.
    fn evaluate(&mut self, arrays: &ArrayRecord, config: &ConfigRecord) -> anyhow::Result<EvalReply>;
}

/// Where the time of one message went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// PullMessages answer to the last object pulled (and the receipt confirmed).
    pub pull: Duration,
    /// Objects → records.
    pub decode: Duration,
    /// The [`FlClient`] call.
    pub work: Duration,
    /// Of `work`, array conversions inside the client.
    pub convert: Duration,
    /// Reply records → objects.
    pub encode: Duration,
    /// PushMessages and the objects the SuperLink asked for.
    pub push: Duration,
    pub bytes_in: usize,
    pub bytes_out: usize,
}

impl Timing {
    /// Time Flower costs beside the local work: pull + decode + conversions + encode + push.
    pub fn overhead(&self) -> Duration {
        self.pull + self.decode + self.convert + self.encode + self.push
    }

    /// The local training or evaluation itself.
    pub fn compute(&self) -> Duration {
        self.work.saturating_sub(self.convert)
    }
}

/// One answered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub run_id: u64,
    pub message_type: String,
    /// The config's `server-round`, if the strategy sent one.
    pub round: Option<i64>,
    pub num_examples: Option<u64>,
    pub metrics: Vec<(String, Metric)>,
    /// Set when an error reply was sent instead of results.
    pub error: Option<String>,
    /// Client-side clipping of a train reply, if the server asked for it.
    pub clip: Option<ClipReport>,
    /// The SecAgg+ stage this message was, if any.
    pub secagg_stage: Option<&'static str>,
    pub timing: Timing,
}

/// Progress of [`serve`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A message arrived and its work starts.
    Received {
        run_id: u64,
        message_type: &'a str,
        round: Option<i64>,
    },
    /// The reply (results or error) was pushed.
    Replied(&'a Report),
    /// Something the operator should know that does not stop the node.
    Warning(String),
}

/// Knobs of [`serve`].
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Pause between PullMessages calls while there is nothing to do.
    pub poll_interval: Duration,
    /// How long to keep asking for an object the SuperLink has not stored yet.
    pub object_wait: Duration,
    /// Set (e.g. by a signal handler) to leave the loop after the current message.
    pub stop: Arc<AtomicBool>,
    /// New registrations in a row, without a successful pull between them, before a SuperLink
    /// that keeps refusing the node (HTTP 401) is an error.
    pub reregister_attempts: u32,
}

impl ServeOptions {
    pub fn new(stop: Arc<AtomicBool>) -> ServeOptions {
        ServeOptions {
            poll_interval: Duration::from_secs(1),
            object_wait: Duration::from_secs(120),
            stop,
            reregister_attempts: 3,
        }
    }
}

/// Seconds since the Unix epoch, as Flower's `created_at`.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Metadata of the reply to `incoming`, as flwr's `Message(content, reply_to=incoming)`
/// builds it: same run, group and type; source and destination (nodes and tasks) swapped;
/// `reply_to_message_id` set; created `now` with whatever is left of the request's TTL (the
/// SuperLink refuses replies that outlive their request).
pub fn reply_metadata(incoming: &proto::Metadata, now: f64) -> proto::Metadata {
    proto::Metadata {
        run_id: incoming.run_id,
        message_id: String::new(),
        src_node_id: incoming.dst_node_id,
        dst_node_id: incoming.src_node_id,
        reply_to_message_id: incoming.message_id.clone(),
        group_id: incoming.group_id.clone(),
        ttl: incoming.created_at + incoming.ttl - now,
        message_type: incoming.message_type.clone(),
        created_at: now,
        src_task_id: incoming.dst_task_id,
        dst_task_id: incoming.src_task_id,
    }
}

/// Errors after which the node cannot go on: the SuperLink is gone or refuses the node.
fn fatal(e: &FlowerError) -> bool {
    match e {
        FlowerError::Unreachable { .. } | FlowerError::Config(_) | FlowerError::Io { .. } => true,
        FlowerError::Http { status, .. } => matches!(status, 401 | 403),
        FlowerError::Protocol(_) => false,
    }
}

/// Answers messages until `opts.stop` is set or the SuperLink cannot be reached; returns the
/// number of messages answered.
pub fn serve(
    node: &Node,
    client: &mut dyn FlClient,
    opts: &ServeOptions,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<u64> {
    let mut answered = 0;
    let mut reregistered = 0;
    let mut sessions = Sessions::default();
    while !opts.stop.load(Ordering::SeqCst) {
        let t0 = Instant::now();
        let pulled = match node.fleet().pull_message(node.node_id()) {
            Err(FlowerError::Http {
                status: 401, detail, ..
            }) if reregistered < opts.reregister_attempts => {
                // A SuperLink restarted without --database has forgotten every node: join again.
                let old = node.node_id();
                reregistered += 1;
                let new = node.reregister().map_err(|e| {
                    FlowerError::Config(format!(
                        "the SuperLink stopped accepting node {old} (HTTP 401: {detail}), and registering again \
                         failed: {e}"
                    ))
                })?;
                on_event(Event::Warning(format!(
                    "the SuperLink no longer knows node {old} (restarted without --database?): registered again \
                     as node {new} ({reregistered} of at most {} in a row)",
                    opts.reregister_attempts
                )));
                continue;
            }
            Err(FlowerError::Http {
                status: 401, detail, ..
            }) => {
                return Err(FlowerError::Config(format!(
                    "the SuperLink refused node {} again after {reregistered} new registrations in a row; giving up \
                     (HTTP 401: {detail})",
                    node.node_id()
                )))
            }
            other => other?,
        };
        let Some((msg, tree)) = pulled else {
            reregistered = 0;
            pause(opts.poll_interval, &opts.stop);
            continue;
        };
        reregistered = 0;
        match handle(node, client, (msg, tree), t0, opts, &mut sessions, on_event) {
            Ok(()) => answered += 1,
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => on_event(Event::Warning(format!("message dropped: {e}"))),
        }
    }
    Ok(answered)
}

/// Sleeps up to `d`, waking early when `stop` is set.
fn pause(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// Object transfers in flight per node, as flwr's own nodes do
/// (`FLWR_PRIVATE_MAX_CONCURRENT_OBJ_PULLS` / `_PUSHES` default to 2).
pub const TRANSFER_WORKERS: usize = 2;

/// Runs `f` over `items` on up to `workers` threads, stopping at the first error; results in
/// item order.
fn concurrently<I: Sync, T: Send>(items: &[I], workers: usize, f: impl Fn(&I) -> Result<T> + Sync) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<Vec<(usize, T)>> {
        let mut out = Vec::new();
        while !failed.load(Ordering::SeqCst) {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(item) = items.get(i) else { break };
            match f(item) {
                Ok(t) => out.push((i, t)),
                Err(e) => {
                    failed.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(out)
    };
    let parts: Vec<Result<Vec<(usize, T)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.clamp(1, items.len().max(1)))
            .map(|_| s.spawn(worker))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(protocol("an object transfer thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(items.len());
    for p in parts {
        all.extend(p?);
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Pulls every object of `tree` once, checking each against its id.
fn pull_objects(
    node: &Node,
    run_id: u64,
    tree: &proto::ObjectTree,
    wait: Duration,
) -> Result<HashMap<String, Vec<u8>>> {
    let ids = post_order(tree);
    let pulled = concurrently(&ids, TRANSFER_WORKERS, |id| {
        let deadline = Instant::now() + wait;
        let mut delay = Duration::from_millis(50);
        let bytes = loop {
            match node.fleet().pull_object(node.node_id(), run_id, id)? {
                Some(b) => break b,
                None if Instant::now() < deadline => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                None => {
                    return Err(protocol(format!(
                        "object {id} still unavailable after {} s",
                        wait.as_secs()
                    )))
                }
            }
        };
        let got = object_id(&bytes);
        if got != *id {
            return Err(protocol(format!(
                "object {id} arrived corrupted (its content hashes to {got})"
            )));
        }
        Ok(bytes)
    })?;
    Ok(ids.into_iter().zip(pulled).collect())
}

/// The reply content of a successful call.
#[derive(Debug)]
struct Outcome {
    content: RecordDict,
    num_examples: u64,
    metrics: Vec<(String, Metric)>,
    convert: Duration,
    clip: Option<ClipReport>,
    secagg_stage: Option<&'static str>,
}

/// What the loop keeps between messages: each run's SecAgg+ state.
#[derive(Default)]
pub struct Sessions {
    secagg: HashMap<u64, SecAggPlus>,
}

/// A record by name.
fn named<'a>(content: &'a RecordDict, name: &str) -> Option<&'a Record> {
    content.items.iter().find(|(k, _)| k == name).map(|(_, r)| r)
}

/// Arrays of Flower's legacy records (`fitins.parameters`: dtype and shape left empty, the
/// `.npy` header holds them) with their dtype and shape filled in from that header.
fn legacy_arrays(r: &ArrayRecord) -> Result<ArrayRecord, String> {
    let items = r
        .items
        .iter()
        .filter(|(k, _)| k != "empty-tensor")
        .map(|(k, a)| {
            if !a.dtype.is_empty() {
                return Ok((k.clone(), a.clone()));
            }
            let (info, values) =
                privpkt_dataset::npy::parse_bytes(&a.data).map_err(|e| format!("array {k}: bad .npy data: {e}"))?;
            let shape: Vec<usize> = info.shape.iter().map(|&d| d as usize).collect();
            match info.dtype {
                privpkt_dataset::npy::Dtype::F32 => Ok((
                    k.clone(),
                    Array {
                        dtype: "float32".into(),
                        shape,
                        stype: a.stype.clone(),
                        data: a.data.clone(),
                    },
                )),
                // Flower's legacy aggregation (SecAgg+'s dequantisation included) returns float64.
                privpkt_dataset::npy::Dtype::F64 => {
                    let v: Vec<f32> = values
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                        .collect();
                    Ok((
                        k.clone(),
                        Array::from_f32(&shape, &v).map_err(|e| format!("array {k}: {e}"))?,
                    ))
                }
                other => Err(format!(
                    "array {k}: {} values, the model's weights are float32",
                    other.descr()
                )),
            }
        })
        .collect::<Result<_, String>>()?;
    Ok(ArrayRecord { items })
}

/// The arrays and config of a message, from the Message API's records (`arrays`, `config`) or
/// Flower's legacy ones (`fitins.*` / `evaluateins.*`, sent by `LegacyContext` workflows).
fn ins(content: &RecordDict, legacy: Option<&str>) -> Result<(ArrayRecord, ConfigRecord), String> {
    if let Some(prefix) = legacy {
        let arrays = match named(content, &format!("{prefix}.parameters")) {
            Some(Record::Arrays(a)) => legacy_arrays(a)?,
            _ => return Err(format!("the message has no ArrayRecord `{prefix}.parameters`")),
        };
        let config = match named(content, &format!("{prefix}.config")) {
            Some(Record::Config(c)) => c.clone(),
            _ => ConfigRecord::default(),
        };
        return Ok((arrays, config));
    }
    let empty = ConfigRecord::default();
    Ok((
        content.array_record()?.clone(),
        content.config_record()?.unwrap_or(&empty).clone(),
    ))
}

/// A metric as a legacy `*.metrics` ConfigRecord value.
fn metrics_config(metrics: &[(String, Metric)]) -> ConfigRecord {
    config_record(
        metrics
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    match *v {
                        Metric::Int(i) => ConfigValue::Sint64(i),
                        Metric::Float(f) => ConfigValue::Double(f),
                    },
                )
            })
            .collect(),
    )
}

fn status_ok() -> Record {
    Record::Config(config_record(vec![
        ("code", ConfigValue::Sint64(0)),
        ("message", ConfigValue::String("Success".into())),
    ]))
}

/// Flower's legacy `FitRes` records.
fn legacy_fitres(arrays: ArrayRecord, num_examples: u64, metrics: &[(String, Metric)]) -> Vec<(String, Record)> {
    vec![
        ("fitres.metrics".into(), Record::Config(metrics_config(metrics))),
        (
            "fitres.num_examples".into(),
            Record::Metrics(metric_record(&[("num_examples", Metric::Int(num_examples as i64))])),
        ),
        ("fitres.parameters".into(), Record::Arrays(arrays)),
        ("fitres.status".into(), status_ok()),
    ]
}

fn call_client(
    client: &mut dyn FlClient,
    kind: &str,
    content: Option<&RecordDict>,
    md: &proto::Metadata,
    sessions: &mut Sessions,
) -> Result<Outcome, String> {
    let content = content.ok_or("the message carries no content")?;
    let legacy = ["fitins", "evaluateins"]
        .into_iter()
        .find(|p| content.items.iter().any(|(k, _)| k.starts_with(&format!("{p}."))));
    if let Some(record) = named(content, SECAGGPLUS_RECORD) {
        // Flower's SecAgg+ workflow: this node's update leaves it only masked.
        let Record::Config(cfg) = record else {
            return Err(format!("`{SECAGGPLUS_RECORD}` is not a ConfigRecord"));
        };
        if kind != "train" {
            return Err(format!("a SecAgg+ record in a `{kind}` message"));
        }
        let state = sessions
            .secagg
            .entry(md.run_id)
            .or_insert_with(|| SecAggPlus::new(md.dst_node_id));
        if state.next_stage(cfg)? == "setup" {
            *state = SecAggPlus::new(md.dst_node_id);
        }
        let mut trained: Option<TrainReply> = None;
        let reply = state.handle(cfg, || {
            let (arrays, config) = ins(content, legacy.or(Some("fitins")))?;
            let r = client.train(&arrays, &config).map_err(|e| format!("{e:#}"))?;
            let arrays = r
                .arrays
                .items
                .iter()
                .map(|(k, a)| Ok((a.shape.clone(), a.to_f32().map_err(|e| format!("array {k}: {e}"))?)))
                .collect::<Result<Vec<_>, String>>()?;
            // Under Flower's client-side DP (the server sent `clipping_norm`), its noise z·C/m is
            // calibrated for an equal-weight average: one organisation, one vote.
            let out = Trained {
                arrays,
                num_examples: if r.clip.is_some() { 1 } else { r.num_examples },
            };
            trained = Some(r);
            Ok(out)
        })?;
        let secagg = (SECAGGPLUS_RECORD.to_string(), Record::Config(reply.record));
        return Ok(match trained {
            Some(r) => {
                // As secaggplus_mod: the FitRes without its parameters, and the masked vector.
                let mut items = legacy_fitres(ArrayRecord::default(), r.num_examples, &r.metrics);
                items.push(secagg);
                Outcome {
                    content: RecordDict { items },
                    num_examples: r.num_examples,
                    metrics: r.metrics,
                    convert: r.convert,
                    clip: r.clip,
                    secagg_stage: Some(reply.stage),
                }
            }
            None => Outcome {
                content: RecordDict { items: vec![secagg] },
                num_examples: 0,
                metrics: Vec::new(),
                convert: Duration::ZERO,
                clip: None,
                secagg_stage: Some(reply.stage),
            },
        });
    }
    let (arrays, config) = ins(content, legacy)?;
    let (arrays, config) = (&arrays, &config);
    let metrics_record = |n: u64, metrics: &[(String, Metric)]| {
        let mut pairs: Vec<(&str, Metric)> = vec![("num-examples", Metric::Int(n as i64))];
        pairs.extend(metrics.iter().map(|(k, v)| (k.as_str(), *v)));
        Record::Metrics(metric_record(&pairs))
    };
    match kind {
        "train" => {
            let r = client.train(arrays, config).map_err(|e| format!("{e:#}"))?;
            let items = if legacy.is_some() {
                legacy_fitres(r.arrays, r.num_examples, &r.metrics)
            } else {
                vec![
                    ("arrays".into(), Record::Arrays(r.arrays)),
                    ("metrics".into(), metrics_record(r.num_examples, &r.metrics)),
                ]
            };
            Ok(Outcome {
                content: RecordDict { items },
                num_examples: r.num_examples,
                metrics: r.metrics,
                convert: r.convert,
                clip: r.clip,
                secagg_stage: None,
            })
        }
        "evaluate" => {
            let r = client.evaluate(arrays, config).map_err(|e| format!("{e:#}"))?;
            let items = if legacy.is_some() {
                let loss = r
                    .metrics
                    .iter()
                    .find(|(k, _)| k == "eval_loss")
                    .map_or(f64::NAN, |(_, v)| match *v {
                        Metric::Int(i) => i as f64,
                        Metric::Float(f) => f,
                    });
                vec![
                    (
                        "evaluateres.loss".into(),
                        Record::Metrics(metric_record(&[("loss", Metric::Float(loss))])),
                    ),
                    (
                        "evaluateres.num_examples".into(),
                        Record::Metrics(metric_record(&[("num_examples", Metric::Int(r.num_examples as i64))])),
                    ),
                    ("evaluateres.metrics".into(), Record::Config(metrics_config(&r.metrics))),
                    ("evaluateres.status".into(), status_ok()),
                ]
            } else {
                vec![("metrics".into(), metrics_record(r.num_examples, &r.metrics))]
            };
            Ok(Outcome {
                content: RecordDict { items },
                num_examples: r.num_examples,
                metrics: r.metrics,
                convert: r.convert,
                clip: None,
                secagg_stage: None,
            })
        }
        other => Err(format!(
            "message type `{other}` is not supported by this node (it answers train and evaluate)"
        )),
    }
}

fn server_round(content: Option<&RecordDict>) -> Option<i64> {
    content?.items.iter().find_map(|(_, r)| match r {
        Record::Config(c) => match crate::records::config_value(c, "server-round")? {
            proto::config_record_value::Value::Sint64(x) => Some(*x),
            proto::config_record_value::Value::Uint64(x) => i64::try_from(*x).ok(),
            _ => None,
        },
        _ => None,
    })
}

fn handle(
    node: &Node,
    client: &mut dyn FlClient,
    (msg, tree): (proto::Message, proto::ObjectTree),
    t0: Instant,
    opts: &ServeOptions,
    sessions: &mut Sessions,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<()> {
    let fleet = node.fleet();
    let mut md = msg
        .metadata
        .ok_or_else(|| protocol("PullMessages returned a message without metadata"))?;
    if md.message_id.is_empty() {
        md.message_id = tree.object_id.clone();
    }
    let mut timing = Timing::default();
    let received = pull_objects(node, md.run_id, &tree, opts.object_wait);
    if received.is_ok() {
        fleet.confirm_received(node.node_id(), md.run_id, &md.message_id)?;
    }
    timing.pull = t0.elapsed();
    let t = Instant::now();
    let decoded = received.and_then(|objects| {
        timing.bytes_in = objects.values().map(Vec::len).sum();
        inflate_message(&md.message_id, &objects)
    });
    timing.decode = t.elapsed();
    let decoded = match decoded {
        Err(e) if fatal(&e) => return Err(e),
        other => other,
    };
    let content = decoded.as_ref().ok().and_then(|m| m.content.as_ref());
    // Legacy workflows put the round only in the group id.
    let round = server_round(content).or_else(|| md.group_id.parse().ok());
    let kind = md.message_type.split('.').next().unwrap_or_default().to_string();
    on_event(Event::Received {
        run_id: md.run_id,
        message_type: &md.message_type,
        round,
    });
    let t = Instant::now();
    let outcome = match &decoded {
        Ok(_) => call_client(client, &kind, content, &md, sessions),
        Err(e) => Err(format!("the message could not be received: {e}")),
    };
    timing.work = t.elapsed();

    let reply_md = reply_metadata(&md, unix_now());
    if reply_md.ttl <= 0.0 {
        on_event(Event::Warning(format!(
            "{} message {} expired {:.0} s before its reply was ready: not answered",
            md.message_type,
            &md.message_id[..md.message_id.len().min(12)],
            -reply_md.ttl
        )));
        return Ok(());
    }
    let t = Instant::now();
    let (deflated, error) = match &outcome {
        Ok(o) => (deflate_message(&reply_md, Ok(&o.content)), None),
        Err(reason) => {
            let e = proto::Error {
                code: CLIENT_APP_RAISED_EXCEPTION,
                reason: reason.clone(),
            };
            (deflate_message(&reply_md, Err(&e)), Some(e))
        }
    };
    timing.encode = t.elapsed();
    if let Ok(o) = &outcome {
        timing.convert = o.convert.min(timing.work);
    }

    let t = Instant::now();
    let pushed = proto::Message {
        metadata: Some(deflated.metadata.clone()),
        content: error.is_none().then(proto::RecordDict::default),
        error: error.clone(),
    };
    let (wanted, session) =
        fleet.push_message(node.node_id(), pushed, deflated.tree.clone(), timing.work.as_secs_f64())?;
    // Children before parents, as flwr submits them (two in flight).
    let todo: Vec<&(String, Vec<u8>)> = deflated.objects.iter().filter(|(id, _)| wanted.contains(id)).collect();
    concurrently(&todo, TRANSFER_WORKERS, |(id, bytes)| {
        fleet.push_object(node.node_id(), md.run_id, id, bytes, &session)
    })?;
    timing.bytes_out = todo.iter().map(|o| o.1.len()).sum();
    timing.push = t.elapsed();

    let report = match outcome {
        Ok(o) => Report {
            run_id: md.run_id,
            message_type: md.message_type.clone(),
            round,
            num_examples: Some(o.num_examples),
            metrics: o.metrics,
            error: None,
            clip: o.clip,
            secagg_stage: o.secagg_stage,
            timing,
        },
        Err(reason) => Report {
            run_id: md.run_id,
            message_type: md.message_type.clone(),
            round,
            num_examples: None,
            metrics: Vec::new(),
            error: Some(reason),
            clip: None,
            secagg_stage: None,
            timing,
        },
    };
    on_event(Event::Replied(&report));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Array;

    fn incoming() -> proto::Metadata {
        proto::Metadata {
            run_id: 9,
            message_id: "abc".into(),
            src_node_id: 1,
            dst_node_id: 42,
            reply_to_message_id: String::new(),
            group_id: "3".into(),
            ttl: 43200.0,
            message_type: "train".into(),
            created_at: 1000.0,
            src_task_id: Some(17),
            dst_task_id: None,
        }
    }

    #[test]
    fn reply_metadata_follows_flwr() {
        let r = reply_metadata(&incoming(), 1600.5);
        assert_eq!(r.run_id, 9);
        assert_eq!((r.src_node_id, r.dst_node_id), (42, 1));
        assert_eq!(r.reply_to_message_id, "abc");
        assert_eq!((r.group_id.as_str(), r.message_type.as_str()), ("3", "train"));
        assert_eq!(r.created_at, 1600.5);
        // What is left of the request's lifetime: 1000 + 43200 − 1600.5.
        assert_eq!(r.ttl, 42599.5);
        assert_eq!((r.src_task_id, r.dst_task_id), (None, Some(17)));
        assert!(r.message_id.is_empty());
        // A reply made after the request expired has no TTL left.
        assert!(reply_metadata(&incoming(), 1000.0 + 43200.0 + 1.0).ttl < 0.0);
    }

    struct Fixed;
    impl FlClient for Fixed {
        fn train(&mut self, arrays: &ArrayRecord, config: &ConfigRecord) -> anyhow::Result<TrainReply> {
            anyhow::ensure!(
                arrays.items.len() == 1,
                "one array expected, got {}",
                arrays.items.len()
            );
            Ok(TrainReply {
                arrays: arrays.clone(),
                num_examples: config.items.len() as u64,
                metrics: vec![("train_loss".into(), Metric::Float(0.25))],
                convert: Duration::ZERO,
                clip: None,
            })
        }
        fn evaluate(&mut self, _: &ArrayRecord, _: &ConfigRecord) -> anyhow::Result<EvalReply> {
            Ok(EvalReply {
                num_examples: 5,
                metrics: vec![("eval_acc".into(), Metric::Float(0.5))],
                convert: Duration::ZERO,
            })
        }
    }

    fn content(arrays: usize) -> RecordDict {
        let a = Array::from_f32(&[1], &[1.0]).unwrap();
        RecordDict {
            items: vec![
                (
                    "arrays".into(),
                    Record::Arrays(ArrayRecord {
                        items: (0..arrays).map(|i| (i.to_string(), a.clone())).collect(),
                    }),
                ),
                (
                    "config".into(),
                    Record::Config(crate::records::config_record(vec![(
                        "server-round",
                        proto::config_record_value::Value::Sint64(2),
                    )])),
                ),
            ],
        }
    }

    fn call_client(client: &mut dyn FlClient, kind: &str, content: Option<&RecordDict>) -> Result<Outcome, String> {
        super::call_client(client, kind, content, &incoming(), &mut Sessions::default())
    }

    #[test]
    fn replies_hold_what_fedavg_expects() {
        let c = content(1);
        assert_eq!(server_round(Some(&c)), Some(2));
        let o = call_client(&mut Fixed, "train", Some(&c)).unwrap();
        let names: Vec<&str> = o.content.items.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(names, ["arrays", "metrics"]);
        let Record::Metrics(m) = &o.content.items[1].1 else {
            panic!()
        };
        assert_eq!(m.items[0].key, "num-examples");
        assert_eq!(
            m.items[0].value.as_ref().unwrap().value,
            Some(proto::metric_record_value::Value::Sint64(1))
        );
        assert_eq!(m.items[1].key, "train_loss");
        let e = call_client(&mut Fixed, "evaluate", Some(&c)).unwrap();
        assert_eq!(e.content.items.len(), 1);
        assert_eq!(e.num_examples, 5);
    }

    #[test]
    fn failures_become_error_text() {
        let e = call_client(&mut Fixed, "train", Some(&content(2))).unwrap_err();
        assert_eq!(e, "one array expected, got 2");
        let e = call_client(&mut Fixed, "query", Some(&content(1))).unwrap_err();
        assert!(e.contains("`query` is not supported"), "{e}");
        assert!(call_client(&mut Fixed, "train", None)
            .unwrap_err()
            .contains("no content"));
        let no_arrays = RecordDict::default();
        assert!(call_client(&mut Fixed, "train", Some(&no_arrays))
            .unwrap_err()
            .contains("no ArrayRecord"));
        // A SecAgg+ stage out of order is an error reply, never trained on as a plain message.
        let mut secagg = content(1);
        secagg.items.push((
            SECAGGPLUS_RECORD.into(),
            Record::Config(crate::records::config_record(vec![(
                "stage",
                proto::config_record_value::Value::String("collect_masked_vectors".into()),
            )])),
        ));
        let e = call_client(&mut Fixed, "train", Some(&secagg)).unwrap_err();
        assert!(
            e.contains("expected the setup stage, but received collect_masked_vectors"),
            "{e}"
        );
    }

    /// Flower's legacy records (`LegacyContext` workflows, as SecAgg+ uses): arrays without
    /// dtype or shape, replies as `fitres.*` / `evaluateres.*`.
    #[test]
    fn legacy_messages_get_legacy_replies() {
        let a = Array::from_f32(&[1], &[1.0]).unwrap();
        let bare = Array {
            dtype: String::new(),
            shape: Vec::new(),
            ..a
        };
        let ins = |prefix: &str| RecordDict {
            items: vec![
                (
                    format!("{prefix}.parameters"),
                    Record::Arrays(ArrayRecord {
                        items: vec![("0".into(), bare.clone())],
                    }),
                ),
                (format!("{prefix}.config"), Record::Config(ConfigRecord::default())),
            ],
        };
        let names = |o: &Outcome| {
            o.content
                .items
                .iter()
                .map(|i| i.0.clone())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let o = call_client(&mut Fixed, "train", Some(&ins("fitins"))).unwrap();
        assert_eq!(
            names(&o),
            "fitres.metrics fitres.num_examples fitres.parameters fitres.status"
        );
        let Record::Arrays(back) = &o.content.items[2].1 else {
            panic!()
        };
        assert_eq!(
            (back.items[0].1.dtype.as_str(), back.items[0].1.shape.as_slice()),
            ("float32", &[1usize][..])
        );
        let o = call_client(&mut Fixed, "evaluate", Some(&ins("evaluateins"))).unwrap();
        assert_eq!(
            names(&o),
            "evaluateres.loss evaluateres.num_examples evaluateres.metrics evaluateres.status"
        );
        // float64 (what Flower's legacy aggregation returns) is narrowed; integers are refused.
        let mut f64s = ins("fitins");
        if let Record::Arrays(r) = &mut f64s.items[0].1 {
            r.items[0].1.data =
                privpkt_dataset::npy::to_bytes(privpkt_dataset::npy::Dtype::F64, &[1], &2.5f64.to_le_bytes()).unwrap();
        }
        let o = call_client(&mut Fixed, "train", Some(&f64s)).unwrap();
        let Record::Arrays(back) = &o.content.items[2].1 else {
            panic!()
        };
        assert_eq!(back.items[0].1.to_f32().unwrap(), [2.5]);
        if let Record::Arrays(r) = &mut f64s.items[0].1 {
            r.items[0].1.data =
                privpkt_dataset::npy::to_bytes(privpkt_dataset::npy::Dtype::U64, &[1], &[0; 8]).unwrap();
        }
        let e = call_client(&mut Fixed, "train", Some(&f64s)).unwrap_err();
        assert!(
            e.contains("array 0: <u8 values, the model's weights are float32"),
            "{e}"
        );
    }

    #[test]
    fn concurrent_transfers_keep_order_and_stop_at_errors() {
        let items: Vec<u32> = (0..50).collect();
        let out = concurrently(&items, 3, |&i| Ok(i * 2)).unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let done = AtomicUsize::new(0);
        let e = concurrently(&items, 2, |&i| {
            done.fetch_add(1, Ordering::SeqCst);
            if i == 3 {
                Err(protocol("object 3 failed"))
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("object 3 failed"));
        assert!(done.load(Ordering::SeqCst) < 10, "kept going after the error");
        assert!(concurrently(&[] as &[u32], 2, |&i| Ok(i)).unwrap().is_empty());
    }

    #[test]
    fn timing_splits_overhead_from_compute() {
        let ms = Duration::from_millis;
        let t = Timing {
            pull: ms(10),
            decode: ms(2),
            work: ms(1000),
            convert: ms(30),
            encode: ms(3),
            push: ms(20),
            bytes_in: 0,
            bytes_out: 0,
        };
        assert_eq!(t.overhead(), ms(65));
        assert_eq!(t.compute(), ms(970));
    }
}
