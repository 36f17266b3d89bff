//! Progress bars, number formatting and report output shared by the commands.

use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr drawn with `template` (one bar style for every command); hidden
/// when `quiet` (JSON output) or not a terminal.
pub fn progress_bar(len: u64, template: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if quiet {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

/// A byte-counting progress bar on stderr; hidden when `quiet` (JSON output) or not a terminal.
pub fn bytes_bar(total: u64, msg: &str, quiet: bool) -> ProgressBar {
    let pb = progress_bar(
        total,
        "{msg:12} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        quiet,
    );
    pb.set_message(msg.to_string());
    pb
}

pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Parse sizes like `500K`, `2GB`, `1.5GiB`, `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad size `{s}` (e.g. 500K, 20MB, 2GB)"))?;
    let mult = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("bad size unit `{u}` in `{s}` (use K, M or G)")),
    };
    Ok((n * mult) as u64)
}

/// One line stating a model's recorded privacy guarantee (DP-SGD or DP-FedAvg).
pub fn privacy_line(p: &serde_json::Value) -> String {
    let num = |k: &str, prec: usize| p[k].as_f64().map_or("?".into(), |v| format!("{v:.prec$}"));
    format!(
        "{} ({}, {})-DP per {} by the {} accountant: σ = {}, C = {}, q = {}, {} steps",
        p["mechanism"].as_str().unwrap_or("DP"),
        num("epsilon", 3),
        p["delta"],
        p["unit"].as_str().unwrap_or("?"),
        p["accountant"].as_str().unwrap_or("?"),
        num("sigma", 4),
        p["clip"],
        num("q", 5),
        p["steps"]
    )
}

/// A line above the progress bar, or on stderr when the bar is hidden (not a terminal), so
/// logs of unattended runs keep the per-epoch summaries.
pub fn say(bar: &ProgressBar, msg: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", msg.as_ref());
    } else {
        bar.println(msg);
    }
}

/// A `--json PATH` report option names stdout with `-`; the human summary then stays off
/// stdout so the JSON can be piped.
pub fn json_to_stdout(dest: Option<&Path>) -> bool {
    dest.is_some_and(|p| p.as_os_str() == "-")
}

/// Write `report` as pretty JSON to a `--json PATH` destination (`-`: stdout), if one is given.
pub fn write_json_report(dest: Option<&Path>, report: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    match dest {
        Some(_) if json_to_stdout(dest) => println!("{json}"),
        Some(p) => std::fs::write(p, json).with_context(|| format!("{}: cannot write", p.display()))?,
        None => {}
    }
    Ok(())
}

/// The command line as a user would type it again (`privpkt ...`, whatever the binary's path),
/// for the record in results files.
pub fn command_line() -> String {
    std::iter::once("privpkt".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error and its causes on one line, each said once: library errors often put their
/// source in their own message too, and a plain `{:#}` would then print it twice ("X: X").
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("500K").unwrap(), 512_000);
        assert_eq!(super::parse_size("2GB").unwrap(), 2 << 30);
        assert_eq!(super::parse_size("1.5m").unwrap(), 1_572_864);
        assert!(super::parse_size("12 parsecs").is_err());
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn error_line_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "m.safetensors: {}", self.0)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wrapped(io)).context("loading the model");
        assert_eq!(
            super::error_line(&e),
            "loading the model: m.safetensors: No such file or directory"
        );
        let plain = anyhow::anyhow!("bad").context("plan.toml");
        assert_eq!(super::error_line(&plain), "plan.toml: bad");
    }
}
