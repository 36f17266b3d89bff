//! `privpkt report`: report.html from an experiment's results.json.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::results::Results;

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "The page is self-contained (styles and plots inline as SVG, no scripts, nothing fetched): \
open it offline, archive it or mail it. It shows plain-language findings computed from the numbers, the \
privacy–utility–leakage plot (test macro-F1 and attack AUC over ε), the summary over seeds, learning curves, \
membership-inference ROC curves, the data and each organisation's share, per-class F1 with the best cell's flow \
confusion, every cell's details, and what ε does and does not cover. Every number is results.json's in one fixed \
format (three decimals), so the page can be checked against the file.\n\nExamples:\n  \
privpkt report sweep/results.json                    # writes sweep/report.html\n  \
privpkt report sweep/results.json --out /tmp/r.html"
)]
pub struct ReportArgs {
    /// results.json written by `privpkt experiment` or `privpkt demo`.
    pub results: PathBuf,
    /// The HTML page to write [default: report.html beside the results].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.results).with_context(|| format!("{}: cannot read", a.results.display()))?;
    let r: Results =
        serde_json::from_str(&text).with_context(|| format!("{}: not a privpkt results.json", a.results.display()))?;
    let out = a.out.unwrap_or_else(|| a.results.with_file_name("report.html"));
    crate::report::write_report(&r, &out)?;
    println!("{}", out.display());
    Ok(())
}
