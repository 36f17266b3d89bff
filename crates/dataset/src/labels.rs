//! Where labels come from.
//!
//! - a per-flow CSV in the nDPI corpus format, joined by (capture file name, L4 protocol,
//!   unordered endpoint pair), the label column chosen by the user;
//! - ISCX VPN-nonVPN 2016 file names (application, traffic category, VPN flag);
//! - a rules file mapping capture path globs to one label per file.
//!
//! A class map renames, merges or drops the resulting names. Flows no source labels stay
//! unlabelled: they are counted, never guessed.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use privpkt_capture::{Endpoint, FlowKey, L4};

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {msg}")]
    Bad { path: PathBuf, msg: String },
    #[error("{path}, line {line}: {msg}")]
    Line { path: PathBuf, line: u64, msg: String },
}

fn bad(path: &Path, msg: impl Into<String>) -> LabelError {
    LabelError::Bad {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Rename / merge / drop classes. File format (CSV, `#` comments): `from,to` per line; an empty
/// `to` drops the class; `from` = `*` applies to every class no other line names.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ClassMap {
    pub rules: BTreeMap<String, Option<String>>,
    pub fallback: Option<Option<String>>,
}

impl ClassMap {
    pub fn load(path: &Path) -> Result<ClassMap, LabelError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut map = ClassMap::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (i == 0 && line.replace(' ', "") == "from,to") {
                continue;
            }
            let Some((from, to)) = line.split_once(',') else {
                return Err(LabelError::Line {
                    path: path.to_path_buf(),
                    line: i as u64 + 1,
                    msg: format!("expected `from,to` (empty `to` drops the class), got `{line}`"),
                });
            };
            let (from, to) = (from.trim(), to.trim());
            if from.is_empty() {
                return Err(LabelError::Line {
                    path: path.to_path_buf(),
                    line: i as u64 + 1,
                    msg: "empty class name".into(),
                });
            }
            let to = (!to.is_empty()).then(|| to.to_string());
            if from == "*" {
                map.fallback = Some(to);
            } else {
                map.rules.insert(from.to_string(), to);
            }
        }
        Ok(map)
    }

    /// The class a label ends up as, or `None` when it is dropped.
    pub fn apply(&self, label: &str) -> Option<String> {
        match self.rules.get(label) {
            Some(to) => to.clone(),
            None => match &self.fallback {
                Some(to) => to.clone(),
                None => Some(label.to_string()),
            },
        }
    }
}

/// Parse `ip:port` or `[ipv6]:port`.
pub fn parse_endpoint(s: &str) -> Option<Endpoint> {
    let s = s.trim();
    let (ip, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:")?;
        (ip, port)
    } else {
        s.rsplit_once(':')?
    };
    let port: u16 = port.parse().ok()?;
    let ip: IpAddr = ip.parse().ok()?;
    let mut addr = [0u8; 16];
    let v6 = match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            false
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            true
        }
    };
    Some(Endpoint { addr, v6, port })
}

/// The label column: a CSV column name, optionally `+vpn` to prefix `vpn_` where the row's
/// `vpn` column says yes (Deep Packet's 12-class traffic characterisation task).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabelColumn {
    pub column: String,
    pub vpn_prefix: bool,
}

impl std::str::FromStr for LabelColumn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (column, vpn_prefix) = match s.strip_suffix("+vpn") {
            Some(c) => (c, true),
            None => (s, false),
        };
        if column.is_empty() {
            return Err("empty label column".into());
        }
        Ok(LabelColumn {
            column: column.to_string(),
            vpn_prefix,
        })
    }
}

impl std::fmt::Display for LabelColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.column, if self.vpn_prefix { "+vpn" } else { "" })
    }
}

/// Per-flow labels from a CSV, keyed by (file name or "", flow key).
#[derive(Debug, Default)]
pub struct FlowLabels {
    map: HashMap<(String, FlowKey), String>,
    /// Keys whose rows disagree: left unlabelled.
    pub conflicts: u64,
    /// The labels that disagreed, as (first label, other label) → keys.
    pub conflict_pairs: std::collections::BTreeMap<(String, String), u64>,
    pub rows: u64,
    /// Rows with an empty label value (e.g. flows not chosen for a label set).
    pub empty: u64,
    /// Rows skipped because an endpoint does not parse, and the first of them (line, reason).
    pub bad_rows: u64,
    pub first_bad: Option<(u64, String)>,
    has_file: bool,
}

impl FlowLabels {
    pub fn load(path: &Path, col: &LabelColumn) -> Result<FlowLabels, LabelError> {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(false)
            .from_path(path)
            .map_err(|e| bad(path, format!("cannot open labels CSV: {e}")))?;
        let headers = rdr
            .headers()
            .map_err(|e| bad(path, format!("no header row: {e}")))?
            .clone();
        let find = |name: &str| headers.iter().position(|h| h.trim() == name);
        let need = |name: &str| {
            find(name).ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "missing column `{name}` (columns: {})",
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                )
            })
        };
        let (l4c, ac, bc) = (need("l4")?, need("endpoint_a")?, need("endpoint_b")?);
        let labc = need(&col.column)?;
        let vpnc = if col.vpn_prefix { Some(need("vpn")?) } else { None };
        let filec = find("file");
        let mut out = FlowLabels {
            has_file: filec.is_some(),
            ..Default::default()
        };
        let mut conflicted: std::collections::HashSet<(String, FlowKey)> = Default::default();
        for (i, rec) in rdr.records().enumerate() {
            let line = i as u64 + 2;
            let rec = rec.map_err(|e| LabelError::Line {
                path: path.to_path_buf(),
                line,
                msg: e.to_string(),
            })?;
            out.rows += 1;
            let l4 = match rec.get(l4c).unwrap_or("").trim() {
                "TCP" | "tcp" | "6" => L4::Tcp,
                "UDP" | "udp" | "17" => L4::Udp,
                _ => continue, // ICMP etc.: never matches a TCP/UDP packet
            };
            let ep = |c: usize| {
                let s = rec.get(c).unwrap_or("");
                parse_endpoint(s).ok_or_else(|| format!("bad endpoint `{s}` (expected ip:port or [ipv6]:port)"))
            };
            // One unparseable row (the nDPI corpus has one, from a fuzzed capture) must not
            // cost the whole file: it is skipped, counted and reported.
            let key = match (ep(ac), ep(bc)) {
                (Ok(a), Ok(b)) => FlowKey::new(l4, a, b),
                (Err(m), _) | (_, Err(m)) => {
                    out.bad_rows += 1;
                    out.first_bad.get_or_insert((line, m));
                    continue;
                }
            };
            let mut label = rec.get(labc).unwrap_or("").trim().to_string();
            if label.is_empty() {
                out.empty += 1;
                continue;
            }
            if let Some(v) = vpnc {
                if matches!(rec.get(v).unwrap_or("").trim(), "yes" | "1" | "true" | "vpn") {
                    label = format!("vpn_{label}");
                }
            }
            let file = filec
                .and_then(|c| rec.get(c))
                .map(|f| file_name(f.trim()))
                .unwrap_or_default();
            let k = (file, key);
            if conflicted.contains(&k) {
                continue;
            }
            match out.map.get(&k) {
                Some(old) if *old != label => {
                    *out.conflict_pairs.entry((old.clone(), label.clone())).or_default() += 1;
                    out.map.remove(&k);
                    conflicted.insert(k);
                    out.conflicts += 1;
                }
                Some(_) => {}
                None => {
                    out.map.insert(k, label);
                }
            }
        }
        if out.map.is_empty() && out.bad_rows > 0 {
            let (line, msg) = out.first_bad.clone().unwrap_or_default();
            return Err(LabelError::Line {
                path: path.to_path_buf(),
                line,
                msg: format!("{msg}; no row of the file is usable ({} bad rows)", out.bad_rows),
            });
        }
        Ok(out)
    }

    /// Warnings for the manifest: rows that could not be used, flows whose rows disagree, and
    /// a file without a `file` column (its rows then label the same endpoints in every capture).
    pub fn warnings(&self, path: &Path) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((line, msg)) = &self.first_bad {
            out.push(format!(
                "{}: {} row(s) skipped, first at line {line}: {msg}",
                path.display(),
                self.bad_rows
            ));
        }
        if self.conflicts > 0 {
            let pairs: Vec<String> = self
                .conflict_pairs
                .iter()
                .map(|((a, b), n)| format!("`{a}` against `{b}`: {n}"))
                .collect();
            out.push(format!(
                "{}: {} flow(s) have rows with different labels and are left unlabelled ({})",
                path.display(),
                self.conflicts,
                pairs.join(", ")
            ));
        }
        if !self.has_file {
            out.push(format!(
                "{}: no `file` column: each row labels its flow in every capture that has the same endpoints",
                path.display()
            ));
        }
        out
    }

    pub fn get(&self, capture: &Path, key: &FlowKey) -> Option<&str> {
        let file = if self.has_file {
            capture
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            String::new()
        };
        self.map.get(&(file, *key)).map(|s| s.as_str())
    }

    /// Every label value present.
    pub fn classes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.values().cloned().collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn file_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.to_string())
}

/// ISCX VPN-nonVPN 2016 labels of one capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscxLabel {
    pub app: &'static str,
    /// chat, email, file_transfer, streaming, p2p, voip — or `None` where the file's traffic
    /// mixes kinds (video calls: Deep Packet leaves them out of its traffic task).
    pub category: Option<&'static str>,
    pub vpn: bool,
}

/// (file-name stem prefix, application, category) in the order they must be tried: longer,
/// more specific prefixes first. Follows the dataset's own file naming (e.g.
/// `vpn_skype_chat1a.pcap`, `aim_chat_3a.pcap`, `youtubeHTML5_1.pcap`), matched case-insensitively
/// after stripping `vpn_`.
pub const ISCX_TABLE: &[(&str, &str, Option<&str>)] = &[
    ("aim_chat", "aim", Some("chat")),
    ("aimchat", "aim", Some("chat")),
    ("email", "email", Some("email")),
    ("facebook_audio", "facebook", Some("voip")),
    ("facebook_chat", "facebook", Some("chat")),
    ("facebookchat", "facebook", Some("chat")),
    ("facebook_video", "facebook", None),
    ("ftps_down", "ftps", Some("file_transfer")),
    ("ftps_up", "ftps", Some("file_transfer")),
    ("ftps", "ftps", Some("file_transfer")),
    ("gmailchat", "gmail", Some("chat")),
    ("hangout_chat", "hangouts", Some("chat")),
    ("hangouts_chat", "hangouts", Some("chat")),
    ("hangouts_audio", "hangouts", Some("voip")),
    ("hangouts_video", "hangouts", None),
    ("icq_chat", "icq", Some("chat")),
    ("icqchat", "icq", Some("chat")),
    ("netflix", "netflix", Some("streaming")),
    ("scp", "scp", Some("file_transfer")),
    ("sftp", "sftp", Some("file_transfer")),
    ("skype_audio", "skype", Some("voip")),
    ("skype_chat", "skype", Some("chat")),
    ("skype_file", "skype", Some("file_transfer")),
    ("skype_video", "skype", None),
    ("spotify", "spotify", Some("streaming")),
    ("torrent", "bittorrent", Some("p2p")),
    ("bittorrent", "bittorrent", Some("p2p")),
    ("vimeo", "vimeo", Some("streaming")),
    ("voipbuster", "voipbuster", Some("voip")),
    ("youtubehtml5", "youtube", Some("streaming")),
    ("youtube", "youtube", Some("streaming")),
];

/// Label of an ISCX VPN-nonVPN capture from its file name, or `None` when the name is not one
/// of that dataset's.
pub fn iscx_label(path: &Path) -> Option<IscxLabel> {
    let stem = path.file_stem()?.to_string_lossy().to_lowercase();
    let (vpn, rest) = match stem.strip_prefix("vpn_") {
        Some(r) => (true, r.to_string()),
        None => (false, stem),
    };
    ISCX_TABLE
        .iter()
        .find(|(prefix, _, _)| rest.starts_with(prefix))
        .map(|&(_, app, category)| IscxLabel { app, category, vpn })
}

/// Which ISCX label to use: `app`, `category` (6 classes), `traffic` (category with `vpn_`
/// prefix: Deep Packet's 12-class task) or `vpn` (vpn / nonvpn).
pub fn iscx_value(l: &IscxLabel, column: &str) -> Option<String> {
    match column {
        "app" | "application" => Some(l.app.to_string()),
        "category" => l.category.map(str::to_string),
        "traffic" => l
            .category
            .map(|c| if l.vpn { format!("vpn_{c}") } else { c.to_string() }),
        "vpn" => Some(if l.vpn { "vpn" } else { "nonvpn" }.to_string()),
        _ => None,
    }
}

/// Capture path globs → one label for the whole file. CSV `pattern,label`, `#` comments, first
/// match wins; a pattern without `/` is matched against the file name, otherwise the path.
#[derive(Debug)]
pub struct PathRules {
    rules: Vec<(globset::GlobMatcher, bool, String)>,
}

impl PathRules {
    pub fn load(path: &Path) -> Result<PathRules, LabelError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || (i == 0 && line.replace(' ', "") == "pattern,label") {
                continue;
            }
            let err = |msg: String| LabelError::Line {
                path: path.to_path_buf(),
                line: i as u64 + 1,
                msg,
            };
            let (pat, label) = line
                .rsplit_once(',')
                .ok_or_else(|| err(format!("expected `pattern,label`, got `{line}`")))?;
            let (pat, label) = (pat.trim(), label.trim());
            if label.is_empty() {
                return Err(err("empty label".into()));
            }
            let glob = globset::Glob::new(pat).map_err(|e| err(format!("bad glob `{pat}`: {e}")))?;
            rules.push((glob.compile_matcher(), pat.contains('/'), label.to_string()));
        }
        if rules.is_empty() {
            return Err(bad(path, "no rules"));
        }
        Ok(PathRules { rules })
    }

    pub fn label(&self, capture: &Path) -> Option<&str> {
        let name = capture.file_name().map(Path::new).unwrap_or(capture);
        self.rules
            .iter()
            .find(|(m, whole, _)| if *whole { m.is_match(capture) } else { m.is_match(name) })
            .map(|(_, _, l)| l.as_str())
    }

    pub fn classes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rules.iter().map(|r| r.2.clone()).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// The label source of a `prepare` run.
#[derive(Debug)]
pub enum LabelSource {
    Flows(FlowLabels),
    Iscx { column: String },
    Rules(PathRules),
}

/// Serializable description of the label source, for the manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LabelSpec {
    pub kind: String,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub column: Option<String>,
    pub class_map: Option<ClassMap>,
}

impl LabelSource {
    /// A file's label when the whole file has one (ISCX, rules); `None` for per-flow sources.
    pub fn file_label(&self, capture: &Path) -> Option<Option<String>> {
        match self {
            LabelSource::Flows(_) => None,
            LabelSource::Iscx { column } => Some(iscx_label(capture).and_then(|l| iscx_value(&l, column))),
            LabelSource::Rules(r) => Some(r.label(capture).map(str::to_string)),
        }
    }

    pub fn flow_label<'a>(&'a self, capture: &Path, key: &FlowKey) -> Option<&'a str> {
        match self {
            LabelSource::Flows(f) => f.get(capture, key),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = parse_endpoint("192.168.2.126:45380").unwrap();
        assert_eq!(e.port, 45380);
        assert!(!e.v6);
        assert_eq!(&e.addr[..4], &[192, 168, 2, 126]);
        let e = parse_endpoint("[2001:db8::1]:443").unwrap();
        assert!(e.v6);
        assert_eq!(e.port, 443);
        assert_eq!(e.to_string(), "[2001:db8::1]:443");
        assert!(parse_endpoint("10.0.0.1").is_none());
        assert!(parse_endpoint("10.0.0.1:99999").is_none());
        assert!(parse_endpoint("[zz::1]:80").is_none());
    }

    #[test]
    fn iscx_names() {
        let l = iscx_label(Path::new("x/vpn_skype_chat1a.pcap")).unwrap();
        assert_eq!((l.app, l.category, l.vpn), ("skype", Some("chat"), true));
        assert_eq!(iscx_value(&l, "traffic").unwrap(), "vpn_chat");
        let l = iscx_label(Path::new("aim_chat_3a.pcap")).unwrap();
        assert_eq!((l.app, l.category, l.vpn), ("aim", Some("chat"), false));
        let l = iscx_label(Path::new("youtubeHTML5_1.pcap")).unwrap();
        assert_eq!(l.app, "youtube");
        let l = iscx_label(Path::new("Torrent01.pcapng")).unwrap();
        assert_eq!((l.app, l.category), ("bittorrent", Some("p2p")));
        let l = iscx_label(Path::new("skype_video1a.pcap")).unwrap();
        assert_eq!(l.category, None);
        assert_eq!(iscx_value(&l, "category"), None);
        assert_eq!(iscx_value(&l, "vpn").unwrap(), "nonvpn");
        assert!(iscx_label(Path::new("random_capture.pcap")).is_none());
    }

    #[test]
    fn class_map_rename_merge_drop() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("map.csv");
        std::fs::write(&p, "from,to\n# comment\nskype,voip_apps\nzoom,voip_apps\ndns,\n").unwrap();
        let m = ClassMap::load(&p).unwrap();
        assert_eq!(m.apply("skype").as_deref(), Some("voip_apps"));
        assert_eq!(m.apply("zoom").as_deref(), Some("voip_apps"));
        assert_eq!(m.apply("dns"), None);
        assert_eq!(m.apply("other").as_deref(), Some("other"));
        std::fs::write(&p, "skype,voip\n*,\n").unwrap();
        let m = ClassMap::load(&p).unwrap();
        assert_eq!(m.apply("other"), None);
        std::fs::write(&p, "skype voip\n").unwrap();
        let e = ClassMap::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn flow_csv_join_and_conflicts() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.csv");
        std::fs::write(
            &p,
            "file,l4,endpoint_a,endpoint_b,category,vpn\n\
             a.pcap,TCP,10.0.0.1:1000,1.2.3.4:443,chat,no\n\
             a.pcap,UDP,[2001:db8::1]:5000,[2001:db8::2]:6000,voip,yes\n\
             a.pcap,TCP,10.0.0.2:1,1.2.3.4:443,chat,no\n\
             a.pcap,TCP,1.2.3.4:443,10.0.0.2:1,video,no\n\
             b.pcap,TCP,10.0.0.1:1000,1.2.3.4:443,,no\n",
        )
        .unwrap();
        let l = FlowLabels::load(&p, &"category+vpn".parse().unwrap()).unwrap();
        assert_eq!(l.conflicts, 1);
        assert_eq!(l.empty, 1);
        // The conflict is reported with its labels and count; a `file` column was given.
        let w = l.warnings(&p);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("1 flow(s)") && w[0].contains("`chat` against `video`: 1"),
            "{w:?}"
        );
        let k = FlowKey::new(
            L4::Tcp,
            parse_endpoint("1.2.3.4:443").unwrap(),
            parse_endpoint("10.0.0.1:1000").unwrap(),
        );
        assert_eq!(l.get(Path::new("dir/a.pcap"), &k), Some("chat"));
        assert_eq!(l.get(Path::new("dir/b.pcap"), &k), None);
        let k6 = FlowKey::new(
            L4::Udp,
            parse_endpoint("[2001:db8::2]:6000").unwrap(),
            parse_endpoint("[2001:db8::1]:5000").unwrap(),
        );
        assert_eq!(l.get(Path::new("a.pcap"), &k6), Some("vpn_voip"));
        let kc = FlowKey::new(
            L4::Tcp,
            parse_endpoint("10.0.0.2:1").unwrap(),
            parse_endpoint("1.2.3.4:443").unwrap(),
        );
        assert_eq!(
            l.get(Path::new("a.pcap"), &kc),
            None,
            "conflicting rows leave the flow unlabelled"
        );
        let e = FlowLabels::load(&p, &"nosuch".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing column `nosuch`"), "{e}");
    }

    #[test]
    fn malformed_endpoint_names_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.csv");
        std::fs::write(&p, "l4,endpoint_a,endpoint_b,c\nTCP,10.0.0.1:1,garbage,x\n").unwrap();
        let e = FlowLabels::load(&p, &"c".parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("garbage"), "{e}");
        // one bad row among good ones: skipped and reported, the rest kept
        std::fs::write(
            &p,
            "l4,endpoint_a,endpoint_b,c\nTCP,10.0.0.1:1,10.0.0.2:2,x\nUDP,[302e::3d00::8001]:0,10.0.0.2:2,y\n",
        )
        .unwrap();
        let l = FlowLabels::load(&p, &"c".parse().unwrap()).unwrap();
        assert_eq!((l.len(), l.bad_rows), (1, 1));
        let w = l.warnings(&p);
        assert!(w[0].contains("line 3") && w[0].contains("302e::3d00::8001"), "{w:?}");
        // No `file` column: said, since the rows then label every capture's matching flows.
        assert!(w.iter().any(|w| w.contains("no `file` column")), "{w:?}");
    }

    #[test]
    fn path_rules_first_match() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.csv");
        std::fs::write(&p, "pattern,label\n*skype*,voip\n**/chat/*.pcap,chat\n*.pcap,other\n").unwrap();
        let r = PathRules::load(&p).unwrap();
        assert_eq!(r.label(Path::new("x/my_skype_1.pcap")), Some("voip"));
        assert_eq!(r.label(Path::new("data/chat/a.pcap")), Some("chat"));
        assert_eq!(r.label(Path::new("data/a.pcap")), Some("other"));
        assert_eq!(r.label(Path::new("data/a.pcapng")), None);
    }
}
