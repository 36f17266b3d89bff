//! Flower's content-addressed "inflatable objects": how message contents travel.
//!
//! An object is the UTF-8 head `"<Type> <child ids, comma-separated> <body length>"`, a 0
//! byte, then the body; its id is the hex SHA-256 of all of it. A Message object's body is
//! the protobuf `Message` (metadata with an empty `message_id`, and the error if any); its one
//! child is the RecordDict. RecordDict and ArrayRecord bodies are JSON maps of names to child
//! ids (order = the record's order); an Array body is JSON metadata whose `arraychunk_ids`
//! index into its head's child list; an ArrayChunk is ≤ 5 MiB of raw array data; Config and
//! Metric records are protobuf.
//!
//! Bodies are written exactly as flwr's Python does (`json.dumps` spacing and escaping,
//! numpy's `.npy` bytes), so identical content gets identical ids and the SuperLink's
//! deduplication works across Rust and Python nodes; tests compare ids with flwr's own.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use prost::Message as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{protocol, Result};
use crate::proto;
use crate::records::{Array, ArrayRecord, Record, RecordDict};

/// Largest ArrayChunk (flwr's `FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE` default).
pub const MAX_CHUNK: usize = 5 * 1024 * 1024;

/// The hex SHA-256 of an object's bytes: its id.
pub fn object_id(content: &[u8]) -> String {
    let d = Sha256::digest(content);
    let mut s = String::with_capacity(64);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// An object's bytes from its type, child ids and body.
pub fn encode(kind: &str, children: &[String], body: &[u8]) -> Vec<u8> {
    let head = format!("{kind} {} {}", children.join(","), body.len());
    let mut out = Vec::with_capacity(head.len() + 1 + body.len());
    out.extend_from_slice(head.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

/// An object split into its head's values and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    pub kind: &'a str,
    pub children: Vec<&'a str>,
    pub body: &'a [u8],
}

/// Splits an object, checking the head's form and the body length it declares.
pub fn parse(content: &[u8]) -> Result<Parsed<'_>> {
    let nul = content
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| protocol("object without a head (no 0 byte)"))?;
    let head = std::str::from_utf8(&content[..nul]).map_err(|_| protocol("object head is not UTF-8"))?;
    let parts: Vec<&str> = head.split(' ').collect();
    let [kind, children, len] = parts[..] else {
        return Err(protocol(format!(
            "object head `{}` is not `TYPE CHILDREN LENGTH`",
            clip(head)
        )));
    };
    let body = &content[nul + 1..];
    if len.parse::<usize>().ok() != Some(body.len()) {
        return Err(protocol(format!(
            "{kind} object declares a {len}-byte body but holds {} bytes",
            body.len()
        )));
    }
    let children = if children.is_empty() {
        Vec::new()
    } else {
        children.split(',').collect()
    };
    Ok(Parsed { kind, children, body })
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Writes `s` as Python's `json.dumps` does (ASCII only, `\uXXXX` escapes).
fn py_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// `{"k": "v", ...}` as `json.dumps` writes a dict of strings.
fn py_json_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        py_json_str(k, &mut s);
        s.push_str(": ");
        py_json_str(v, &mut s);
    }
    s.push('}');
    s.into_bytes()
}

fn py_json_ints(v: impl IntoIterator<Item = usize>) -> String {
    let v: Vec<String> = v.into_iter().map(|x| x.to_string()).collect();
    format!("[{}]", v.join(", "))
}

/// A JSON object of strings, in document order (duplicate keys refused).
struct OrderedPairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedPairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedPairs;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<OrderedPairs, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    if out.iter().any(|(o, _)| *o == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(OrderedPairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn ordered_pairs(kind: &str, body: &[u8]) -> Result<Vec<(String, String)>> {
    serde_json::from_slice::<OrderedPairs>(body)
        .map(|p| p.0)
        .map_err(|e| protocol(format!("{kind} body: {e}")))
}

/// An Array object's body.
#[derive(Deserialize)]
struct ArrayMeta {
    dtype: String,
    shape: Vec<usize>,
    stype: String,
    arraychunk_ids: Vec<usize>,
}

/// A message turned into objects, ready to push.
#[derive(Debug, Clone)]
pub struct Deflated {
    /// The Message object's id: the reply's `message_id`.
    pub message_id: String,
    /// The metadata with `message_id` set, for the PushMessages request.
    pub metadata: proto::Metadata,
    pub tree: proto::ObjectTree,
    /// Every object once, children before parents (the order the SuperLink accepts pushes).
    pub objects: Vec<(String, Vec<u8>)>,
}

#[derive(Default)]
struct Builder {
    objects: Vec<(String, Vec<u8>)>,
    seen: HashSet<String>,
}

impl Builder {
    /// Adds an object whose children were added before, returning its id and tree.
    fn add(&mut self, content: Vec<u8>, children: Vec<proto::ObjectTree>) -> proto::ObjectTree {
        let id = object_id(&content);
        if self.seen.insert(id.clone()) {
            self.objects.push((id.clone(), content));
        }
        proto::ObjectTree {
            object_id: id,
            children,
        }
    }

    /// Adds children, returning their unique ids (first-seen order) and trees, as Python's
    /// `children` dicts (keyed by object id) give them.
    fn unique(trees: Vec<proto::ObjectTree>) -> (Vec<String>, Vec<proto::ObjectTree>) {
        let mut ids = Vec::new();
        let mut out = Vec::new();
        for t in trees {
            if !ids.contains(&t.object_id) {
                ids.push(t.object_id.clone());
                out.push(t);
            }
        }
        (ids, out)
    }

    fn array(&mut self, a: &Array) -> proto::ObjectTree {
        let chunks: Vec<proto::ObjectTree> = a
            .data
            .chunks(MAX_CHUNK)
            .map(|c| self.add(encode("ArrayChunk", &[], c), Vec::new()))
            .collect();
        let order: Vec<String> = chunks.iter().map(|t| t.object_id.clone()).collect();
        let (ids, trees) = Builder::unique(chunks);
        let idx = order.iter().map(|id| ids.iter().position(|u| u == id).unwrap_or(0));
        let mut body = String::from("{\"dtype\": ");
        py_json_str(&a.dtype, &mut body);
        let _ = write!(
            body,
            ", \"shape\": {}, \"stype\": ",
            py_json_ints(a.shape.iter().copied())
        );
        py_json_str(&a.stype, &mut body);
        let _ = write!(body, ", \"arraychunk_ids\": {}}}", py_json_ints(idx));
        self.add(encode("Array", &ids, body.as_bytes()), trees)
    }

    fn map(&mut self, kind: &str, named: Vec<(&str, proto::ObjectTree)>) -> proto::ObjectTree {
        let body = py_json_map(named.iter().map(|(k, t)| (*k, t.object_id.as_str())));
        let (ids, trees) = Builder::unique(named.into_iter().map(|n| n.1).collect());
        self.add(encode(kind, &ids, &body), trees)
    }

    fn record(&mut self, r: &Record) -> proto::ObjectTree {
        match r {
            Record::Arrays(ar) => {
                let named = ar.items.iter().map(|(k, a)| (k.as_str(), self.array(a))).collect();
                self.map("ArrayRecord", named)
            }
            Record::Metrics(m) => self.add(encode("MetricRecord", &[], &m.encode_to_vec()), Vec::new()),
            Record::Config(c) => self.add(encode("ConfigRecord", &[], &c.encode_to_vec()), Vec::new()),
        }
    }

    fn record_dict(&mut self, rd: &RecordDict) -> proto::ObjectTree {
        let named = rd.items.iter().map(|(k, r)| (k.as_str(), self.record(r))).collect();
        self.map("RecordDict", named)
    }
}

/// Turns a message (metadata plus content, or an error) into its objects. `metadata`'s
/// `message_id` is ignored: the Message object's id becomes it.
pub fn deflate_message(
    metadata: &proto::Metadata,
    content: std::result::Result<&RecordDict, &proto::Error>,
) -> Deflated {
    let mut b = Builder::default();
    let (children, error) = match content {
        Ok(rd) => (vec![b.record_dict(rd)], None),
        Err(e) => (Vec::new(), Some(e.clone())),
    };
    let body = proto::Message {
        metadata: Some(proto::Metadata {
            message_id: String::new(),
            ..metadata.clone()
        }),
        content: None,
        error,
    }
    .encode_to_vec();
    let ids: Vec<String> = children.iter().map(|t| t.object_id.clone()).collect();
    let tree = b.add(encode("Message", &ids, &body), children);
    Deflated {
        message_id: tree.object_id.clone(),
        metadata: proto::Metadata {
            message_id: tree.object_id.clone(),
            ..metadata.clone()
        },
        tree,
        objects: b.objects,
    }
}

/// Every object id of a tree once, children before parents.
pub fn post_order(tree: &proto::ObjectTree) -> Vec<String> {
    fn walk(t: &proto::ObjectTree, seen: &mut HashSet<String>, out: &mut Vec<String>) {
        for c in &t.children {
            walk(c, seen, out);
        }
        if seen.insert(t.object_id.clone()) {
            out.push(t.object_id.clone());
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut HashSet::new(), &mut out);
    out
}

/// A pulled message: its Message body (metadata and error) and its content.
#[derive(Debug, Clone)]
pub struct Inflated {
    pub message: proto::Message,
    pub content: Option<RecordDict>,
}

/// Rebuilds a message from its objects (`objects` maps ids to their hash-checked bytes).
pub fn inflate_message(root: &str, objects: &HashMap<String, Vec<u8>>) -> Result<Inflated> {
    let inf = Inflater { objects };
    let p = inf.get(root, "Message")?;
    let message =
        proto::Message::decode(p.body).map_err(|e| protocol(format!("Message object {}: {e}", short(root))))?;
    let content = match (p.children.as_slice(), &message.error) {
        ([], _) => None,
        ([rd], None) => Some(inf.record_dict(rd)?),
        (_, Some(_)) => return Err(protocol("a Message object with an error must have no content")),
        (c, None) => {
            return Err(protocol(format!(
                "a Message object has {} children, expected one RecordDict",
                c.len()
            )))
        }
    };
    Ok(Inflated { message, content })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

struct Inflater<'a> {
    objects: &'a HashMap<String, Vec<u8>>,
}

impl<'a> Inflater<'a> {
    fn get(&self, id: &str, want: &str) -> Result<Parsed<'a>> {
        let bytes = self
            .objects
            .get(id)
            .ok_or_else(|| protocol(format!("object {} ({want}) was not received", short(id))))?;
        let p = parse(bytes)?;
        if p.kind != want {
            return Err(protocol(format!(
                "object {} is a {}, expected a {want}",
                short(id),
                p.kind
            )));
        }
        Ok(p)
    }

    /// A JSON map object whose values must all be among its head's children.
    fn named_children(&self, id: &str, kind: &str) -> Result<Vec<(String, String)>> {
        let p = self.get(id, kind)?;
        let pairs = ordered_pairs(kind, p.body)?;
        if let Some((k, v)) = pairs.iter().find(|(_, v)| !p.children.contains(&v.as_str())) {
            return Err(protocol(format!(
                "{kind} {}: `{k}` refers to {}, which its head does not list",
                short(id),
                short(v)
            )));
        }
        Ok(pairs)
    }

    fn record_dict(&self, id: &str) -> Result<RecordDict> {
        let items = self
            .named_children(id, "RecordDict")?
            .into_iter()
            .map(|(name, rid)| Ok((name, self.record(&rid)?)))
            .collect::<Result<_>>()?;
        Ok(RecordDict { items })
    }

    fn record(&self, id: &str) -> Result<Record> {
        let bytes = self
            .objects
            .get(id)
            .ok_or_else(|| protocol(format!("record {} was not received", short(id))))?;
        let p = parse(bytes)?;
        let bad = |e: prost::DecodeError| protocol(format!("{} {}: {e}", p.kind, short(id)));
        Ok(match p.kind {
            "ArrayRecord" => {
                let items = self
                    .named_children(id, "ArrayRecord")?
                    .into_iter()
                    .map(|(name, aid)| Ok((name, self.array(&aid)?)))
                    .collect::<Result<_>>()?;
                Record::Arrays(ArrayRecord { items })
            }
            "ConfigRecord" => Record::Config(proto::ConfigRecord::decode(p.body).map_err(bad)?),
            "MetricRecord" => Record::Metrics(proto::MetricRecord::decode(p.body).map_err(bad)?),
            other => {
                return Err(protocol(format!(
                    "object {} is a {other}, expected a record",
                    short(id)
                )))
            }
        })
    }

    fn array(&self, id: &str) -> Result<Array> {
        let p = self.get(id, "Array")?;
        let meta: ArrayMeta =
            serde_json::from_slice(p.body).map_err(|e| protocol(format!("Array {} body: {e}", short(id))))?;
        let mut data = Vec::new();
        for &i in &meta.arraychunk_ids {
            let cid = p.children.get(i).ok_or_else(|| {
                protocol(format!(
                    "Array {}: chunk index {i} but the head lists {} chunks",
                    short(id),
                    p.children.len()
                ))
            })?;
            data.extend_from_slice(self.get(cid, "ArrayChunk")?.body);
        }
        Ok(Array {
            dtype: meta.dtype,
            shape: meta.shape,
            stype: meta.stype,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::config_record_value::Value as C;
    use crate::records::{config_record, metric_record, Metric};

    fn all(d: &Deflated) -> HashMap<String, Vec<u8>> {
        d.objects.iter().cloned().collect()
    }

    fn sample() -> RecordDict {
        let ar = ArrayRecord::from_f32([
            (&[2usize, 3][..], &[0f32, 1., 2., 3., 4., 5.][..]),
            (&[1usize][..], &[1.5f32][..]),
        ])
        .unwrap();
        RecordDict {
            items: vec![
                ("arrays".into(), Record::Arrays(ar)),
                (
                    "metrics".into(),
                    Record::Metrics(metric_record(&[
                        ("num-examples", Metric::Int(10)),
                        ("loss", Metric::Float(0.5)),
                    ])),
                ),
                (
                    "config".into(),
                    Record::Config(config_record(vec![
                        ("lr", C::Double(0.01)),
                        ("server-round", C::Sint64(3)),
                        ("name", C::String("é\"x".into())),
                    ])),
                ),
            ],
        }
    }

    /// Ids flwr 1.40.0 computes for the same records (`ArrayRecord([np.arange(6, dtype=
    /// float32).reshape(2, 3), np.array([1.5], float32)])`, `MetricRecord({"num-examples": 10,
    /// "loss": 0.5})`, `ConfigRecord({"lr": 0.01, "server-round": 3, "name": 'é"x'})`).
    #[test]
    fn object_ids_match_flwr() {
        let d = deflate_message(&proto::Metadata::default(), Ok(&sample()));
        let ids: HashSet<&str> = d.objects.iter().map(|o| o.0.as_str()).collect();
        for want in [
            "d0a7925020115f6db7d9c8a4f51c363476703b1239258b9d069a8a949954e97a", // Array "0"
            "e13b4c6016156b4fd88eead95c7dc01b37061bc7f1db8c905b78dbb9be2f5e58", // Array "1"
            "a35aa45aec7436b57b331082712cd3d11b15f6bb0b01ec9fdbe43aaa1d7b49c8", // ArrayRecord
            "774e484fca5b41799eeb0ee11484ef780f1194e442b05cbf3207d51a428f5236", // MetricRecord
            "27bc9611b9d3411bc517389f127ae721a6110593986ba11faf6e3814f16c9974", // ConfigRecord
            "d89c90c68587a6b059ba335c910cfe4ca092db8968e00350b60325641a1a0cbb", // RecordDict
        ] {
            assert!(ids.contains(want), "{want} missing from {ids:?}");
        }
    }

    #[test]
    fn messages_round_trip_in_order_and_post_order() {
        let md = proto::Metadata {
            run_id: 7,
            message_id: "ignored".into(),
            message_type: "train".into(),
            ttl: 100.0,
            src_task_id: Some(4),
            ..Default::default()
        };
        let rd = sample();
        let d = deflate_message(&md, Ok(&rd));
        assert_eq!(d.message_id, d.tree.object_id);
        assert_eq!(d.metadata.message_id, d.message_id);
        assert_eq!(d.message_id, object_id(&d.objects.last().unwrap().1));
        // Children before parents, each once, the same set the tree lists.
        let order: Vec<String> = d.objects.iter().map(|o| o.0.clone()).collect();
        assert_eq!(order, post_order(&d.tree));
        for (i, (_, bytes)) in d.objects.iter().enumerate() {
            for c in parse(bytes).unwrap().children {
                assert!(order[..i].iter().any(|o| o == c), "child {c} after its parent");
            }
        }
        let back = inflate_message(&d.message_id, &all(&d)).unwrap();
        assert_eq!(back.content.as_ref(), Some(&rd));
        let m = back.message.metadata.unwrap();
        assert_eq!((m.message_id.as_str(), m.run_id, m.src_task_id), ("", 7, Some(4)));
        // Key order survives even when it is not sorted.
        let mut rev = rd.clone();
        rev.items.reverse();
        if let Record::Arrays(a) = &mut rev.items[2].1 {
            a.items.reverse();
        }
        let d2 = deflate_message(&md, Ok(&rev));
        let back = inflate_message(&d2.message_id, &all(&d2)).unwrap().content.unwrap();
        let names: Vec<&str> = back.items.iter().map(|i| i.0.as_str()).collect();
        assert_eq!(names, ["config", "metrics", "arrays"]);
        let Record::Arrays(a) = &back.items[2].1 else { panic!() };
        assert_eq!(a.items.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(), ["1", "0"]);
    }

    #[test]
    fn error_replies_have_no_content() {
        let err = proto::Error {
            code: 2,
            reason: "boom".into(),
        };
        let d = deflate_message(&proto::Metadata::default(), Err(&err));
        assert_eq!(d.objects.len(), 1);
        assert!(d.tree.children.is_empty());
        assert!(d.objects[0].1.starts_with(b"Message  "));
        let back = inflate_message(&d.message_id, &all(&d)).unwrap();
        assert_eq!(back.message.error, Some(err));
        assert!(back.content.is_none());
    }

    /// 16 MB of zeros: 4 chunks, the middle two identical, as flwr slices it (its id for
    /// `Array(np.zeros(4_000_000, float32))`).
    #[test]
    fn big_arrays_are_chunked_with_repeats() {
        let zeros = vec![0f32; 4_000_000];
        let ar = ArrayRecord::from_f32([(&[4_000_000usize][..], &zeros[..])]).unwrap();
        let rd = RecordDict {
            items: vec![("arrays".into(), Record::Arrays(ar))],
        };
        let d = deflate_message(&proto::Metadata::default(), Ok(&rd));
        let array_id = "9623af2537770c3d6121ebef65ee57903454c4bc71b031327d092a63902f52f5";
        let (_, arr) = d.objects.iter().find(|o| o.0 == array_id).expect("flwr's Array id");
        let p = parse(arr).unwrap();
        assert_eq!(p.children.len(), 3);
        assert!(p.body.ends_with(b"\"arraychunk_ids\": [0, 1, 1, 2]}"));
        let chunks: Vec<usize> = d
            .objects
            .iter()
            .filter(|o| o.1.starts_with(b"ArrayChunk "))
            .map(|o| parse(&o.1).unwrap().body.len())
            .collect();
        assert_eq!(chunks, [MAX_CHUNK, MAX_CHUNK, 16_000_128 - 3 * MAX_CHUNK]);
        let back = inflate_message(&d.message_id, &all(&d)).unwrap().content.unwrap();
        assert_eq!(back, rd);
    }

    #[test]
    fn malformed_objects_are_named() {
        assert!(parse(b"no head").unwrap_err().to_string().contains("no 0 byte"));
        assert!(parse(b"Array a 3\0ab")
            .unwrap_err()
            .to_string()
            .contains("3-byte body but holds 2"));
        assert!(parse(b"Array 3\0abc")
            .unwrap_err()
            .to_string()
            .contains("TYPE CHILDREN LENGTH"));
        let d = deflate_message(&proto::Metadata::default(), Ok(&sample()));
        let mut objs = all(&d);
        // A missing chunk, and an object of the wrong type in its place.
        let chunk = d
            .objects
            .iter()
            .find(|o| o.1.starts_with(b"ArrayChunk"))
            .unwrap()
            .0
            .clone();
        objs.remove(&chunk);
        let e = inflate_message(&d.message_id, &objs).unwrap_err().to_string();
        assert!(e.contains("(ArrayChunk) was not received"), "{e}");
        objs.insert(chunk, encode("MetricRecord", &[], b""));
        let e = inflate_message(&d.message_id, &objs).unwrap_err().to_string();
        assert!(e.contains("is a MetricRecord, expected a ArrayChunk"), "{e}");
        let dup = ordered_pairs("RecordDict", br#"{"a": "x", "a": "y"}"#).unwrap_err();
        assert!(dup.to_string().contains("duplicate key `a`"));
    }

    #[test]
    fn json_strings_escape_like_python() {
        let mut s = String::new();
        py_json_str("a\"b\\c\n\u{1}é😀", &mut s);
        assert_eq!(s, r#""a\"b\\c\n\u0001\u00e9\ud83d\ude00""#);
    }
}
