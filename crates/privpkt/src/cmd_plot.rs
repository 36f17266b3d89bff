//! `privpkt plot`: draw a chart from a JSON description, so experiment scripts get the same
//! plots as the rest of privpkt without a plotting library of their own.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::plots::{render, ImageFormat, LineChart};

#[derive(Args, Debug, Clone)]
#[command(
    after_help = "The JSON describes a line chart over categorical x positions, with mean ± std \
error bars per series and an optional dashed reference line:\n\n  {\"title\": \"...\", \"x_label\": \"ε\", \
\"y_label\": \"macro-F1\", \"x\": [\"1\", \"2\", \"∞\"],\n   \"series\": [{\"name\": \"packets\", \"mean\": [0.1, \
0.2, 0.5], \"std\": [0.01, 0.02, 0.03]}],\n   \"reference\": {\"y\": 0.58, \"label\": \"header-only baseline\"}, \
\"y_range\": [0, 1]}\n\nA missing point is null."
)]
pub struct PlotArgs {
    /// Chart description (JSON).
    pub spec: PathBuf,
    /// Output image (.png or .svg; the extension picks the format).
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(a: PlotArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.spec).with_context(|| format!("{}: cannot read", a.spec.display()))?;
    let chart: LineChart =
        serde_json::from_str(&text).with_context(|| format!("{}: not a line-chart description", a.spec.display()))?;
    chart.check().with_context(|| a.spec.display().to_string())?;
    let fmt = ImageFormat::of_path(&a.out);
    render(&a.out, fmt, (760, 480), &chart)?;
    println!("{}", a.out.display());
    Ok(())
}
