mod common;
use privpkt_synth::*;
#[test]
fn dump() {
    let dir = std::path::Path::new("/tmp/synth-dump");
    let _ = std::fs::remove_dir_all(dir);
    let cfg = SynthConfig {
        seed: 1,
        captures_per_class: 1,
        flows_per_capture: 4,
        max_packets_per_flow: 400,
        ..SynthConfig::default()
    };
    generate(&cfg, dir, &|_| {}).unwrap();
    let ds = common::load(dir);
    let want = std::env::var("DUMP").unwrap_or("chat".into());
    for (i, r) in ds.rows.iter().enumerate() {
        if !r.file.starts_with(&want) {
            continue;
        }
        println!(
            "== {} {} {} {} {} {} pkts={} bytes={}",
            r.file, r.flow_idx, r.l4, r.a, r.b, r.app_family, r.pkts, r.bytes
        );
        let f = &ds.flows[i];
        let t0 = f[0].0;
        let mut prev = t0;
        for (n, (t, d)) in f.iter().enumerate() {
            if n > 60 && n < f.len() - 5 {
                continue;
            }
            let dir = if d.src == r.a { ">" } else { "<" };
            let fl = d
                .tcp
                .as_ref()
                .map(|t| {
                    format!(
                        "{}{}{}{} seq={} ack={}",
                        if t.syn { "S" } else { "" },
                        if t.ack { "A" } else { "" },
                        if t.fin { "F" } else { "" },
                        if t.rst { "R" } else { "" },
                        t.seq,
                        t.ack_no
                    )
                })
                .unwrap_or_default();
            let head: Vec<String> = d.payload.iter().take(8).map(|b| format!("{b:02x}")).collect();
            println!(
                "{n:4} {:12.6} +{:9.3}ms {dir} ip={:5} pl={:5} {fl} {}",
                (t - t0) as f64 / 1e9,
                (t - prev) as f64 / 1e6,
                d.ip_len,
                d.payload.len(),
                head.join("")
            );
            prev = *t;
        }
        if i > 40 {
            break;
        }
    }
}
