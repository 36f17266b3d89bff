//! report.html: a self-contained page (styles and plots inline, no scripts, nothing fetched)
//! from [`Results`], so it can be mailed, archived or opened offline and still show everything.
//!
//! Every number in the summary, per-class and per-cell tables is its own element carrying
//! `data-row` (summary index) or `data-cell` (cell id) and `data-metric`, with exactly
//! [`fmt3`]'s text: the browser test reads them back and compares them with `results.json`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::style::RGBColor;

use crate::plots::{
    class_color, summary_groups, svg_string, tradeoff_plot, ConfusionPlot, CurveLine, CurvePanel, CurvesPlot, RocPlot,
    RocSeries,
};
use crate::results::{epsilon_label, fmt3, trim_float, CellResult, Results, Setting, Stat};

/// Write the report page for `r` to `out`.
pub fn write_report(r: &Results, out: &Path) -> Result<()> {
    let html = render_html(r)?;
    std::fs::write(out, html).with_context(|| format!("{}: cannot write", out.display()))
}

/// The whole page as one string.
pub fn render_html(r: &Results) -> Result<String> {
    let mut h = String::with_capacity(1 << 20);
    let title = esc(&r.title);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"privpkt {}\">\n<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        esc(&r.privpkt_version)
    );
    header(&mut h, r);
    glance(&mut h, r);
    tradeoff(&mut h, r)?;
    summary_table(&mut h, r);
    curves(&mut h, r)?;
    attacks(&mut h, r)?;
    data(&mut h, r);
    per_class(&mut h, r)?;
    cells_table(&mut h, r);
    how_to_read(&mut h, r);
    let _ = write!(
        h,
        "<footer>Written by privpkt {} from results.json; every number here is one number there.</footer>\n\
         </main>\n</body>\n</html>\n",
        esc(&r.privpkt_version)
    );
    Ok(h)
}

const CSS: &str = r#"
:root{--fg:#1c2330;--muted:#5d6776;--line:#e4e8ee;--soft:#f5f7fa;--accent:#3b5b92}
*{box-sizing:border-box}
html{background:#eef1f5}
body{margin:0;color:var(--fg);font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:36px 48px 56px;background:#fff;min-height:100vh;box-shadow:0 0 0 1px #e2e6ec}
h1{font-size:28px;line-height:1.25;margin:0 0 6px;letter-spacing:-.01em}
h2{font-size:20px;margin:44px 0 14px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:24px 0 8px}
p{margin:8px 0;max-width:80ch}
a{color:var(--accent)}
.meta{color:var(--muted);font-size:14px;margin:0}
.meta span+span:before{content:"·";margin:0 8px;color:#aab2bd}
pre.cmd{background:var(--soft);border:1px solid var(--line);border-radius:6px;padding:8px 12px;margin:12px 0 0;white-space:pre-wrap;word-break:break-all}
code,pre{font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
nav.toc{margin:18px 0 0;display:flex;flex-wrap:wrap;gap:6px}
nav.toc a{font-size:13px;text-decoration:none;color:#33415a;background:var(--soft);border:1px solid var(--line);border-radius:999px;padding:2px 11px}
nav.toc a:hover{background:#e8edf5}
ul.glance{list-style:none;padding:0;margin:0;display:grid;grid-template-columns:repeat(auto-fit,minmax(270px,1fr));gap:12px}
ul.glance li{background:var(--soft);border-left:4px solid var(--accent);border-radius:6px;padding:11px 14px;font-size:14.5px}
.note{color:var(--muted);font-size:13.5px}
.scroll{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;font-size:13.5px;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
thead th{background:var(--soft);font-weight:600;font-size:12.5px;color:#3a4452;border-bottom:2px solid #cfd6df;white-space:nowrap}
thead tr.sub th{font-weight:500;color:var(--muted)}
tbody tr:nth-child(even){background:#fafbfd}
tbody tr:hover{background:#f0f4fa}
td.n,th.n{text-align:right;white-space:nowrap}
td.n .sd{color:var(--muted);font-size:12px}
td.n .sd:before{content:"± "}
td.best{font-weight:700}
td.dim{color:#9aa3ae;text-align:right}
th.cell{white-space:normal;min-width:120px;max-width:190px;font-weight:500}
table.kv td code{word-break:break-all}
table.kv td{max-width:440px}
table.dense{font-size:12.5px}
table.dense th,table.dense td{padding:5px 7px}
table.dense thead th{white-space:normal;vertical-align:bottom}
td.nw{white-space:nowrap}
.sticky td:first-child,.sticky th:first-child{position:sticky;left:0;z-index:1;background:#fff}
.sticky thead th:first-child{background:var(--soft)}
.sticky tbody tr:nth-child(even) td:first-child{background:#fafbfd}
tbody th{font-weight:500;text-align:left;white-space:nowrap;color:#3a4452}
.file{font:11px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;color:var(--muted)}
table.kv th{background:none;border-bottom:1px solid var(--line);color:var(--muted);font-weight:500;font-size:13px;white-space:nowrap}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:8px;vertical-align:-1px}
.bar{display:flex;height:12px;width:160px;margin-left:auto;border-radius:3px;overflow:hidden;background:#edf0f3}
.bar span{display:block;height:100%}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:20px;align-items:start}
figure.plot{margin:14px 0;padding:14px 14px 10px;border:1px solid var(--line);border-radius:8px;background:#fff}
figure.plot svg{display:block;max-width:100%;height:auto;margin:0 auto}
figcaption{font-size:13.5px;color:var(--muted);margin-top:8px;max-width:110ch}
footer{margin-top:48px;padding-top:12px;border-top:1px solid var(--line);color:var(--muted);font-size:12.5px}
@media print{html{background:#fff}main{box-shadow:none;padding:0}figure.plot,table{break-inside:avoid}}
"#;

/// HTML text or attribute value.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn swatch(c: RGBColor) -> String {
    format!("<span class=\"swatch\" style=\"background:{}\"></span>", hex(c))
}

/// Which table a number belongs to, for its data attribute.
#[derive(Clone, Copy)]
enum Key<'a> {
    Row(usize),
    Cell(&'a str),
}

/// A machine-checkable number: `<span data-…="…" data-metric="…">fmt3</span>`.
fn num(key: Key, metric: &str, v: f64) -> String {
    let k = match key {
        Key::Row(i) => format!("data-row=\"{i}\""),
        Key::Cell(id) => format!("data-cell=\"{}\"", esc(id)),
    };
    format!("<span {k} data-metric=\"{}\">{}</span>", esc(metric), fmt3(v))
}

/// A table cell of mean ± std; the std only with several seeds (with one it is 0 by definition).
fn stat_td(key: Key, metric: &str, s: Stat, seeds: usize) -> String {
    // `macro_f1` → `macro_f1_std`, `auc:loss` → `auc_std:loss`.
    let std_metric = match metric.split_once(':') {
        Some((m, a)) => format!("{m}_std:{a}"),
        None => format!("{metric}_std"),
    };
    let sd = if seeds > 1 {
        format!(" <span class=\"sd\">{}</span>", num(key, &std_metric, s.std))
    } else {
        String::new()
    };
    format!("<td class=\"n\">{}{sd}</td>", num(key, metric, s.mean))
}

const DASH: &str = "<td class=\"dim\" title=\"not applicable\">—</td>";

/// `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days; no time-zone database needed).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Attack names: the settings' order first, then any a cell adds.
fn attack_names(r: &Results) -> Vec<String> {
    let mut names = r.settings.attacks.clone();
    for a in r.cells.iter().flat_map(|c| &c.attacks) {
        if !names.contains(&a.attack) {
            names.push(a.attack.clone());
        }
    }
    names
}

/// The cell's label, with its seed where its configuration ran several.
fn cell_name(r: &Results, c: &CellResult) -> String {
    let multi = r.summary.iter().any(|s| s.seeds.len() > 1 && s.cells.contains(&c.id));
    if multi {
        format!("{}, seed {}", c.label, c.seed)
    } else {
        c.label.clone()
    }
}

/// Mean header-only baseline macro-F1 over the cells (one number: every cell shares the data).
fn baseline(r: &Results) -> Option<f64> {
    let v: Vec<f64> = r
        .cells
        .iter()
        .map(|c| c.utility.baseline_macro_f1)
        .filter(|v| v.is_finite())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The cell whose flow confusion is shown: the highest test macro-F1, first on ties.
fn best_cell(r: &Results) -> Option<&CellResult> {
    r.cells.iter().fold(None, |best: Option<&CellResult>, c| match best {
        Some(b) if b.utility.macro_f1 >= c.utility.macro_f1 || c.utility.macro_f1.is_nan() => Some(b),
        _ => Some(c),
    })
}

/// Palette size of [`class_color`]: more per-cell lines than this would share colours.
const PALETTE: usize = 10;

/// Whether the learning-curve and ROC plots draw one line per configuration (its first seed's
/// cell) rather than one per cell: only when the cells would not fit the palette.
fn per_config(r: &Results) -> bool {
    r.cells.len() > PALETTE && r.summary.len() < r.cells.len()
}

/// The cells those plots draw, in drawing order (the order fixes their colours).
fn plotted_cells(r: &Results) -> Vec<&CellResult> {
    if per_config(r) {
        r.summary
            .iter()
            .filter_map(|s| r.cells.iter().find(|c| s.cells.first() == Some(&c.id)))
            .collect()
    } else {
        r.cells.iter().collect()
    }
}

/// A cell's colour index in those plots (its configuration's when they draw configurations).
fn cell_color(r: &Results, c: &CellResult) -> usize {
    if per_config(r) {
        r.summary.iter().position(|s| s.cells.contains(&c.id)).unwrap_or(0)
    } else {
        r.cells.iter().position(|x| x.id == c.id).unwrap_or(0)
    }
}

/// What the per-cell plots' lines are, for their captions.
fn which_lines(r: &Results) -> &'static str {
    if per_config(r) {
        "One line per configuration (its first seed's cell), coloured as its swatch in the cells table."
    } else {
        "One line per cell, coloured as its swatch in the cells table."
    }
}

fn figure(h: &mut String, id: &str, svg: &str, caption: &str) {
    let _ = write!(
        h,
        "<figure class=\"plot\" id=\"{id}\">\n{svg}\n<figcaption>{caption}</figcaption>\n</figure>\n"
    );
}

fn header(h: &mut String, r: &Results) {
    let _ = write!(
        h,
        "<header>\n<h1>{}</h1>\n<p class=\"meta\"><span>privpkt {}</span><span>created {}</span>\
         <span>{} s in total</span><span>{} cells, {} configurations</span></p>\n<pre class=\"cmd\">{}</pre>\n",
        esc(&r.title),
        esc(&r.privpkt_version),
        utc(r.created_unix),
        fmt3(r.seconds),
        r.cells.len(),
        r.summary.len(),
        esc(&r.command)
    );
    h.push_str(
        "<nav class=\"toc\"><a href=\"#glance\">At a glance</a><a href=\"#tradeoff\">Trade-off</a>\
         <a href=\"#summary\">Summary</a><a href=\"#curves\">Learning curves</a>\
         <a href=\"#attacks\">Membership inference</a><a href=\"#data\">Data</a>\
         <a href=\"#per-class\">Per class</a><a href=\"#cells\">Cells</a><a href=\"#how-to-read\">How to read</a></nav>\n\
         </header>\n",
    );
}

/// Plain-language findings, each computed from the summary; nothing that the numbers do not show.
fn glance(h: &mut String, r: &Results) {
    let mut items: Vec<String> = Vec::new();
    let b = |x: f64| format!("<b>{}</b>", fmt3(x));
    let base = baseline(r);
    let best = |rows: &mut dyn Iterator<Item = &crate::results::SummaryRow>| {
        rows.filter(|s| s.macro_f1.mean.is_finite())
            .max_by(|a, b| a.macro_f1.mean.total_cmp(&b.macro_f1.mean))
            .cloned()
    };
    let nodp = best(&mut r.summary.iter().filter(|s| s.epsilon_target.is_none()));
    if let Some(s) = &nodp {
        let sd = if s.seeds.len() > 1 {
            format!(" ± {} over {} seeds", fmt3(s.macro_f1.std), s.seeds.len())
        } else {
            String::new()
        };
        let mut t = format!(
            "Without DP, the best configuration is <b>{}</b>: test macro-F1 {}{sd} (flow macro-F1 {}).",
            esc(&s.label),
            b(s.macro_f1.mean),
            fmt3(s.flow_macro_f1.mean)
        );
        if let Some(bl) = base {
            let d = s.macro_f1.mean - bl;
            let _ = write!(
                t,
                " The header-only baseline reaches {}, so this configuration is {} {} it.",
                b(bl),
                fmt3(d.abs()),
                if d >= 0.0 { "above" } else { "below" }
            );
        }
        items.push(t);
    } else if let Some(bl) = base {
        items.push(format!(
            "No configuration ran without DP. The header-only baseline reaches macro-F1 {}.",
            b(bl)
        ));
    }
    let min_eps = r.summary.iter().filter_map(|s| s.epsilon_target).min_by(f64::total_cmp);
    let pairs: Vec<_> = match min_eps {
        Some(e) => summary_groups(r)
            .into_iter()
            .filter_map(|g| {
                let of = |dp: Option<f64>| {
                    r.summary
                        .iter()
                        .find(|s| s.group == g && s.epsilon_target.map(f64::to_bits) == dp.map(f64::to_bits))
                };
                Some((g, of(None)?, of(Some(e))?))
            })
            .collect(),
        None => Vec::new(),
    };
    if let Some(e) = min_eps {
        if pairs.is_empty() {
            items.push(format!(
                "DP ran at ε down to {} per organisation (δ = {}), with no run of the same configuration \
                 without DP to compare with.",
                trim_float(e),
                r.settings.delta
            ));
        } else {
            let parts: Vec<String> = pairs
                .iter()
                .map(|(g, off, on)| {
                    let d = on.macro_f1.mean - off.macro_f1.mean;
                    format!(
                        "{}: macro-F1 {} vs {} without DP ({} {})",
                        esc(g),
                        b(on.macro_f1.mean),
                        fmt3(off.macro_f1.mean),
                        fmt3(d.abs()),
                        if d <= 0.0 { "lower" } else { "higher" }
                    )
                })
                .collect();
            items.push(format!(
                "At the smallest budget, ε = {} per organisation (δ = {}): {}.",
                trim_float(e),
                r.settings.delta,
                parts.join("; ")
            ));
        }
    } else {
        items.push("No configuration ran with DP, so this run says nothing about the cost of privacy.".into());
    }
    if let Some(a) = attack_names(r).first() {
        let auc = |s: &crate::results::SummaryRow| s.attacks.iter().find(|x| &x.attack == a).map(|x| x.auc.mean);
        let tpr = |s: &crate::results::SummaryRow| {
            s.attacks
                .iter()
                .find(|x| &x.attack == a)
                .map(|x| x.tpr_at_1pct_fpr.mean)
        };
        let with_dp: Vec<String> = pairs
            .iter()
            .filter_map(|(g, off, on)| {
                Some(format!(
                    "{}: AUC {} without DP, {} at ε = {} (TPR at 1% FPR {} vs {})",
                    esc(g),
                    b(auc(off)?),
                    b(auc(on)?),
                    trim_float(on.epsilon_target?),
                    fmt3(tpr(off)?),
                    fmt3(tpr(on)?)
                ))
            })
            .collect();
        if !with_dp.is_empty() {
            items.push(format!(
                "The {} membership-inference attack on training flows: {}. An AUC of 0.5 is chance.",
                esc(a),
                with_dp.join("; ")
            ));
        } else if let Some((s, v)) = r
            .summary
            .iter()
            .filter_map(|s| Some((s, auc(s)?)))
            .max_by(|x, y| x.1.total_cmp(&y.1))
        {
            items.push(format!(
                "The {} membership-inference attack reaches at most AUC {} (against {}). An AUC of 0.5 is chance.",
                esc(a),
                b(v),
                esc(&s.label)
            ));
        }
    }
    let cen = best(
        &mut r
            .summary
            .iter()
            .filter(|s| s.epsilon_target.is_none() && s.setting == Setting::Centralised),
    );
    let fed = best(
        &mut r
            .summary
            .iter()
            .filter(|s| s.epsilon_target.is_none() && s.setting == Setting::Fedavg),
    );
    if let (Some(c), Some(f)) = (cen, fed) {
        items.push(format!(
            "Without DP, federated training ({}) reaches macro-F1 {}, against {} for centralised training ({}).",
            esc(&f.label),
            b(f.macro_f1.mean),
            b(c.macro_f1.mean),
            esc(&c.label)
        ));
    }
    let _ = write!(
        h,
        "<section id=\"glance\">\n<h2>At a glance</h2>\n<ul class=\"glance\">\n{}</ul>\n\
         <p class=\"note\">Test split: {} samples from {} flows. Means over seeds; see the tables for the spread.</p>\n</section>\n",
        items.iter().map(|i| format!("<li>{i}</li>\n")).collect::<String>(),
        r.data.samples[2],
        r.data.flows[2]
    );
}

fn tradeoff(h: &mut String, r: &Results) -> Result<()> {
    h.push_str("<section id=\"tradeoff\">\n<h2>Privacy, utility and leakage</h2>\n");
    match tradeoff_plot(r) {
        Some(p) => {
            let svg = svg_string((1160, 520), &p)?;
            let attack = attack_names(r).first().cloned().unwrap_or_else(|| "no".into());
            figure(
                h,
                "plot-tradeoff",
                &svg,
                &format!(
                    "Left: test macro-F1; right: AUC of the {} membership-inference attack, both over the DP budget ε \
                     per organisation (δ = {}). One line per configuration, mean ± std over seeds (bars only where a \
                     configuration ran several seeds). Dashed: the header-only baseline (left) and chance (right).",
                    esc(&attack),
                    r.settings.delta
                ),
            );
        }
        None => h.push_str("<p class=\"note\">No finished cells yet.</p>\n"),
    }
    h.push_str("</section>\n");
    Ok(())
}

fn summary_table(h: &mut String, r: &Results) {
    let attacks = attack_names(r);
    let groups = summary_groups(r);
    let _ = write!(
        h,
        "<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"scroll\"><table>\n<thead><tr>\
         <th rowspan=\"2\">configuration</th><th rowspan=\"2\" class=\"n\">seeds</th>\
         <th rowspan=\"2\" class=\"n\">macro-F1</th><th rowspan=\"2\" class=\"n\">flow macro-F1</th>\
         <th rowspan=\"2\" class=\"n\">accuracy</th><th rowspan=\"2\" class=\"n\">ε spent</th>{}</tr>\n<tr class=\"sub\">{}</tr></thead>\n<tbody>\n",
        attacks
            .iter()
            .map(|a| format!("<th colspan=\"2\" class=\"n\">{} attack</th>", esc(a)))
            .collect::<String>(),
        "<th class=\"n\">AUC</th><th class=\"n\">TPR@1%FPR</th>".repeat(attacks.len())
    );
    for (i, s) in r.summary.iter().enumerate() {
        let k = Key::Row(i);
        let n = s.seeds.len();
        let color = groups
            .iter()
            .position(|g| *g == s.group)
            .map(class_color)
            .unwrap_or(RGBColor(0, 0, 0));
        let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
        let _ = write!(
            h,
            "<tr><td>{}{}</td><td class=\"n\" title=\"seeds {}\">{n}</td>{}{}{}",
            swatch(color),
            esc(&s.label),
            seeds.join(", "),
            stat_td(k, "macro_f1", s.macro_f1, n),
            stat_td(k, "flow_macro_f1", s.flow_macro_f1, n),
            stat_td(k, "accuracy", s.accuracy, n)
        );
        match s.epsilon {
            Some(e) => {
                let _ = write!(h, "<td class=\"n\">{}</td>", num(k, "epsilon", e));
            }
            None => h.push_str("<td class=\"dim\" title=\"no DP\">∞</td>"),
        }
        for a in &attacks {
            match s.attacks.iter().find(|x| &x.attack == a) {
                Some(x) => {
                    h.push_str(&stat_td(k, &format!("auc:{a}"), x.auc, n));
                    h.push_str(&stat_td(k, &format!("tpr1:{a}"), x.tpr_at_1pct_fpr, n));
                }
                None => {
                    h.push_str(DASH);
                    h.push_str(DASH);
                }
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n");
    let bl = baseline(r).map(fmt3).unwrap_or_else(|| "–".into());
    let _ = write!(
        h,
        "<p class=\"note\">Test split, mean ± sample standard deviation over seeds (no ± with one seed). \
         Flow macro-F1: majority vote over each flow's samples. ε spent: the accountant's ε of the training as run \
         (the largest over seeds; for FedAvg the worst organisation's), ∞ without DP. The swatch is the line's colour \
         in the trade-off plot. Header-only baseline macro-F1: {bl}.</p>\n</section>\n"
    );
}

fn curves(h: &mut String, r: &Results) -> Result<()> {
    let with_curve = |s: Setting| -> Vec<CurveLine> {
        plotted_cells(r)
            .into_iter()
            .filter(|c| c.setting == s && !c.curve.is_empty())
            .map(|c| CurveLine {
                name: cell_name(r, c),
                color: cell_color(r, c),
                points: c.curve.iter().map(|p| (p.step as f64, p.macro_f1)).collect(),
            })
            .collect()
    };
    let mut panels = Vec::new();
    let cen = with_curve(Setting::Centralised);
    if !cen.is_empty() {
        panels.push(CurvePanel {
            title: "centralised: validation macro-F1".into(),
            x_label: "epoch".into(),
            y_label: "macro-F1".into(),
            lines: cen,
        });
    }
    let fed = with_curve(Setting::Fedavg);
    if !fed.is_empty() {
        panels.push(CurvePanel {
            title: "federated: global test macro-F1".into(),
            x_label: "round".into(),
            y_label: "macro-F1".into(),
            lines: fed,
        });
    }
    h.push_str("<section id=\"curves\">\n<h2>Learning curves</h2>\n");
    if panels.is_empty() {
        h.push_str("<p class=\"note\">No cell recorded a learning curve.</p>\n</section>\n");
        return Ok(());
    }
    let fig = CurvesPlot {
        title: "Learning curves".into(),
        panels,
    };
    let svg = svg_string((1160, 500), &fig)?;
    figure(
        h,
        "plot-curves",
        &svg,
        &format!(
            "Centralised cells: macro-F1 on the validation split after each epoch (what early stopping watches). \
             Federated cells: the global model's macro-F1 on the test split after each round, drawn as a curve only; \
             the reported model is not chosen by it. {}",
            which_lines(r)
        ),
    );
    h.push_str("</section>\n");
    Ok(())
}

fn attacks(h: &mut String, r: &Results) -> Result<()> {
    h.push_str("<section id=\"attacks\">\n<h2>Membership inference</h2>\n");
    if r.cells.is_empty() {
        h.push_str("<p class=\"note\">No finished cells yet.</p>\n</section>\n");
        return Ok(());
    }
    let Some(a) = attack_names(r).into_iter().next() else {
        h.push_str("<p class=\"note\">No attack ran.</p>\n</section>\n");
        return Ok(());
    };
    // Every plotted cell keeps its position (and so its colour); one without this attack draws nothing.
    let curves: Vec<RocSeries> = plotted_cells(r)
        .into_iter()
        .map(|c| match c.attacks.iter().find(|x| x.attack == a) {
            Some(x) => RocSeries {
                name: format!("{} (AUC {})", cell_name(r, c), fmt3(x.auc)),
                fpr: x.roc_fpr.clone(),
                tpr: x.roc_tpr.clone(),
            },
            None => RocSeries {
                name: format!("{} (not attacked)", cell_name(r, c)),
                fpr: Vec::new(),
                tpr: Vec::new(),
            },
        })
        .collect();
    let unit = r
        .cells
        .iter()
        .flat_map(|c| &c.attacks)
        .find(|x| x.attack == a)
        .map(|x| x.unit.clone())
        .unwrap_or_else(|| r.settings.privacy_unit.clone());
    let fig = RocPlot {
        title: format!("{a} attack: ROC of membership inference (log-log)"),
        curves,
    };
    let svg = svg_string((960, 620), &fig)?;
    figure(
        h,
        "plot-roc",
        &svg,
        &format!(
            "ROC curves of the {} attack on log-log axes, so the low false-positive regime (where a confident \
             attack would show) is visible. Members are training {unit}s, non-members held-out {unit}s; the dashed \
             diagonal is chance. {}",
            esc(&a),
            which_lines(r)
        ),
    );
    h.push_str("</section>\n");
    Ok(())
}

fn class_bar(counts: &[u64]) -> String {
    let total: u64 = counts.iter().sum();
    let mut s = String::from("<div class=\"bar\">");
    if total > 0 {
        for (i, &c) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
            let _ = write!(
                s,
                "<span style=\"width:{:.3}%;background:{}\"></span>",
                100.0 * c as f64 / total as f64,
                hex(class_color(i))
            );
        }
    }
    s.push_str("</div>");
    s
}

fn data(h: &mut String, r: &Results) {
    let d = &r.data;
    let st = &r.settings;
    let _ = write!(
        h,
        "<section id=\"data\">\n<h2>Data and setup</h2>\n<div class=\"grid2\">\n<div>\n<table class=\"kv\"><tbody>\n\
         <tr><th>source</th><td>{}</td></tr>\n<tr><th>dataset</th><td><code>{}</code></td></tr>\n\
         <tr><th>manifest sha256</th><td><code>{}</code></td></tr>\n<tr><th>representation</th><td>{}</td></tr>\n\
         <tr><th>label column</th><td>{}</td></tr>\n<tr><th>split by</th><td>{}</td></tr>\n\
         <tr><th>classes</th><td>{}</td></tr>\n</tbody></table>\n\
         <h3>Splits</h3>\n<table><thead><tr><th>split</th><th class=\"n\">samples</th><th class=\"n\">flows</th></tr></thead><tbody>\n",
        esc(&d.source),
        esc(&d.dataset),
        esc(&d.manifest_sha256),
        esc(&d.repr),
        esc(&d.label_column),
        esc(&d.split_by),
        d.classes.len()
    );
    for (i, name) in ["train", "validation", "test"].iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            d.samples[i], d.flows[i]
        );
    }
    let _ = write!(
        h,
        "</tbody></table>\n</div>\n<div>\n<table class=\"kv\"><tbody>\n\
         <tr><th>centralised epochs</th><td>{}</td></tr>\n<tr><th>federated rounds × local epochs</th><td>{} × {}</td></tr>\n\
         <tr><th>optimizer, learning rate</th><td>{}, {}</td></tr>\n<tr><th>batch size</th><td>{}</td></tr>\n\
         <tr><th>DP-SGD clipping norm</th><td>{}</td></tr>\n<tr><th>δ</th><td>{}</td></tr>\n\
         <tr><th>privacy unit</th><td>{}</td></tr>\n<tr><th>accountant</th><td>{}</td></tr>\n\
         <tr><th>attacks</th><td>{}</td></tr>\n</tbody></table>\n</div>\n</div>\n",
        st.epochs,
        st.rounds,
        st.local_epochs,
        esc(&st.optimizer),
        st.lr,
        st.batch_size,
        st.clip,
        st.delta,
        esc(&st.privacy_unit),
        esc(&st.accountant),
        esc(&st.attacks.join(", "))
    );
    let total: u64 = d.train_class_counts.iter().sum();
    h.push_str(
        "<h3>Classes (train split)</h3>\n<div class=\"scroll\"><table><thead><tr><th>class</th>\
         <th class=\"n\">train samples</th><th class=\"n\">share</th><th></th></tr></thead><tbody>\n",
    );
    let max = d.train_class_counts.iter().copied().max().unwrap_or(0).max(1);
    for (i, c) in d.classes.iter().enumerate() {
        let n = d.train_class_counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            h,
            "<tr><td>{}{}</td><td class=\"n\">{n}</td><td class=\"n\">{:.1}%</td>\
             <td><div class=\"bar\" style=\"width:200px\"><span style=\"width:{:.3}%;background:{}\"></span></div></td></tr>",
            swatch(class_color(i)),
            esc(c),
            100.0 * n as f64 / total.max(1) as f64,
            100.0 * n as f64 / max as f64,
            hex(class_color(i))
        );
    }
    h.push_str("</tbody></table></div>\n");
    // Organisations: one table per distinct partition (cells differing only in ε share one).
    let mut parts: Vec<(Vec<&CellResult>, &Vec<crate::results::OrgData>)> = Vec::new();
    for c in r
        .cells
        .iter()
        .filter(|c| c.setting == Setting::Fedavg && !c.organisations_data.is_empty())
    {
        match parts.iter_mut().find(|(_, o)| **o == c.organisations_data) {
            Some((cs, _)) => cs.push(c),
            None => parts.push((vec![c], &c.organisations_data)),
        }
    }
    if !parts.is_empty() {
        h.push_str(
            "<h3>Organisations' shares of the train split</h3>\n<p class=\"note\">Each federated partition once \
             (cells that differ only in ε share it). The bar shows the class mix, coloured as in the class table.</p>\n",
        );
    }
    for (cs, orgs) in parts {
        let c0 = cs[0];
        let names: Vec<String> = cs.iter().map(|c| esc(&epsilon_label(c.epsilon_target))).collect();
        // Organisations as columns: ten of them still fit, however many classes there are.
        let _ = write!(
            h,
            "<p><b>{} organisations, {} partition</b>, seed {} <span class=\"note\">({}; model {})</span></p>\n\
             <div class=\"scroll\"><table class=\"dense\"><thead><tr><th></th>{}</tr></thead><tbody>\n",
            c0.organisations,
            esc(&c0.partition),
            c0.seed,
            names.join(", "),
            esc(&c0.model),
            (1..=orgs.len())
                .map(|k| format!("<th class=\"n\">org {k}</th>"))
                .collect::<String>()
        );
        let row = |h: &mut String, head: &str, f: &dyn Fn(&crate::results::OrgData) -> String| {
            let _ = write!(h, "<tr><th>{head}</th>");
            for o in orgs.iter() {
                let _ = write!(h, "<td class=\"n\">{}</td>", f(o));
            }
            h.push_str("</tr>\n");
        };
        row(h, "train samples", &|o| o.samples.to_string());
        row(h, "train flows", &|o| o.flows.to_string());
        row(h, "class mix", &|o| class_bar(&o.class_counts));
        for (i, c) in d.classes.iter().enumerate() {
            row(h, &format!("{}{}", swatch(class_color(i)), esc(c)), &|o| {
                o.class_counts.get(i).map(u64::to_string).unwrap_or_default()
            });
        }
        h.push_str("</tbody></table></div>\n");
    }
    h.push_str("</section>\n");
}

fn per_class(h: &mut String, r: &Results) -> Result<()> {
    let classes = &r.data.classes;
    h.push_str("<section id=\"per-class\">\n<h2>Per class</h2>\n");
    if r.cells.is_empty() {
        h.push_str("<p class=\"note\">No finished cells yet.</p>\n</section>\n");
        return Ok(());
    }
    // Every cell is tested on the same split, so any cell's confusion rows count the test flows.
    let test_flows: Vec<u64> = r.cells[0]
        .utility
        .flow_confusion
        .iter()
        .map(|row| row.iter().sum())
        .collect();
    let _ = write!(
        h,
        "<p class=\"note\">Test F1 per class and cell; the best per class in bold. Classes with few test flows \
         have noisy F1.</p>\n<div class=\"scroll\"><table class=\"sticky\"><thead><tr><th>class</th><th class=\"n\">test flows</th>{}</tr></thead><tbody>\n",
        r.cells
            .iter()
            .map(|c| format!(
                "<th class=\"cell n\">{}{}</th>",
                swatch(class_color(cell_color(r, c))),
                esc(&cell_name(r, c))
            ))
            .collect::<String>()
    );
    for (k, name) in classes.iter().enumerate() {
        let vals: Vec<Option<f64>> = r.cells.iter().map(|c| c.utility.per_class_f1.get(k).copied()).collect();
        let top = vals
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f64::NAN, f64::max);
        let _ = write!(
            h,
            "<tr><td class=\"nw\">{}{}</td><td class=\"n\">{}</td>",
            swatch(class_color(k)),
            esc(name),
            test_flows.get(k).map(u64::to_string).unwrap_or_default()
        );
        for (c, v) in r.cells.iter().zip(&vals) {
            match v {
                Some(v) => {
                    let cls = if top > 0.0 && fmt3(*v) == fmt3(top) {
                        "n best"
                    } else {
                        "n"
                    };
                    let _ = write!(
                        h,
                        "<td class=\"{cls}\">{}</td>",
                        num(Key::Cell(&c.id), &format!("f1:{name}"), *v)
                    );
                }
                None => h.push_str(DASH),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></div>\n");
    if let Some(best) = best_cell(r) {
        let n = classes.len().max(1) as u32;
        let side = (360 + 36 * n).clamp(480, 820);
        let fig = ConfusionPlot {
            title: format!("flow confusion: {}", cell_name(r, best)),
            classes: classes.clone(),
            matrix: best.utility.flow_confusion.clone(),
        };
        let svg = svg_string((side + 60, side), &fig)?;
        figure(
            h,
            "plot-confusion",
            &svg,
            &format!(
                "Test flows of the cell with the highest test macro-F1 ({}), each classified by majority vote over its \
                 samples: rows are the true class, columns the predicted one; colour is the share of the row, numbers \
                 are flows.",
                esc(&cell_name(r, best))
            ),
        );
    }
    h.push_str("</section>\n");
    Ok(())
}

fn cells_table(h: &mut String, r: &Results) {
    let attacks = attack_names(r);
    let _ = write!(
        h,
        "<section id=\"cells\">\n<h2>Cells</h2>\n<p class=\"note\">Every trained model. The swatch is the cell's colour \
         in the learning-curve and ROC plots (its configuration's when those draw one line per configuration). σ: noise multiplier; steps: DP-SGD steps (for FedAvg, of the worst \
         organisation).</p>\n<div class=\"scroll\"><table class=\"dense sticky\"><thead><tr><th>cell</th><th>configuration<br>model file</th>\
         <th class=\"n\">seed</th><th class=\"n\">macro-F1</th><th class=\"n\">flow macro-F1</th><th class=\"n\">accuracy</th>\
         <th class=\"n\">baseline macro-F1</th><th class=\"n\">ε spent</th><th class=\"n\">σ</th><th class=\"n\">steps</th>{}\
         <th class=\"n\">train s</th><th class=\"n\">attack s</th></tr></thead><tbody>\n",
        attacks
            .iter()
            .map(|a| format!(
                "<th class=\"n\">AUC {0}</th><th class=\"n\">TPR@1%FPR {0}</th>",
                esc(a)
            ))
            .collect::<String>()
    );
    for c in &r.cells {
        let k = Key::Cell(&c.id);
        let u = &c.utility;
        let _ = write!(
            h,
            "<tr><td class=\"nw\">{}<code>{}</code></td><td class=\"nw\">{}<br><span class=\"file\">{}</span></td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td>",
            swatch(class_color(cell_color(r, c))),
            esc(&c.id),
            esc(&c.label),
            esc(&c.model_file),
            c.seed,
            num(k, "macro_f1", u.macro_f1),
            num(k, "flow_macro_f1", u.flow_macro_f1),
            num(k, "accuracy", u.accuracy),
            num(k, "baseline_macro_f1", u.baseline_macro_f1)
        );
        match &c.privacy {
            Some(p) => {
                let _ = write!(
                    h,
                    "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                    num(k, "epsilon", p.epsilon),
                    num(k, "sigma", p.sigma),
                    p.steps
                );
            }
            None => h.push_str(&format!("<td class=\"dim\" title=\"no DP\">∞</td>{DASH}{DASH}")),
        }
        for a in &attacks {
            match c.attacks.iter().find(|x| &x.attack == a) {
                Some(x) => {
                    let _ = write!(
                        h,
                        "<td class=\"n\">{}</td><td class=\"n\">{}</td>",
                        num(k, &format!("auc:{a}"), x.auc),
                        num(k, &format!("tpr1:{a}"), x.tpr_at_1pct_fpr)
                    );
                }
                None => {
                    h.push_str(DASH);
                    h.push_str(DASH);
                }
            }
        }
        let _ = writeln!(
            h,
            "<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            num(k, "train_seconds", c.train_seconds),
            num(k, "attack_seconds", c.attack_seconds)
        );
    }
    h.push_str("</tbody></table></div>\n</section>\n");
}

fn how_to_read(h: &mut String, r: &Results) {
    let st = &r.settings;
    let unit = esc(&st.privacy_unit);
    let split = esc(&r.data.split_by);
    let _ = write!(
        h,
        "<section id=\"how-to-read\">\n<h2>How to read this</h2>\n\
         <h3>What ε means here</h3>\n\
         <p>A configuration with ε trains with DP-SGD at the level of one {unit}: two training sets that differ in \
         one {unit} (all its samples) of one organisation give output distributions within e<sup>ε</sup> and δ = {} of \
         each other. Each {unit}'s gradient is clipped to norm {} and Gaussian noise is added; the {} accountant \
         turns noise multiplier σ, sampling rate and steps into the ε reported as “ε spent”. In FedAvg every \
         organisation runs DP-SGD on its own flows, so ε is per organisation and a cell reports the worst \
         organisation's; the configuration name carries the requested budget.</p>\n\
         <h3>What it does not cover</h3>\n<p>The guarantee is about the {unit}s in the training data, nothing else. \
         The server learns each organisation's number of training examples (and so its share of the data), which \
         DP-SGD does not hide. The noise is drawn with ordinary floating-point arithmetic; such implementations can \
         leak through floating-point artefacts (Mironov, CCS 2012), so the ε is that of the ideal mechanism. \
         Without DP (“∞”) there is no guarantee at all, whatever the attacks show.</p>\n\
         <h3>Baselines and attacks</h3>\n<p>The header-only baseline predicts the majority class of each protocol and \
         port combination, fit on the train split: a model that does not beat it has learned nothing the packet \
         headers alone would not give. The membership-inference attacks ({}) try to tell training {unit}s (members) \
         from held-out ones (non-members) using the model's outputs; AUC 0.5 is chance, and TPR at 1% FPR measures \
         how many members a confident attacker finds. Attacks give a lower bound on leakage: a weak attack at AUC \
         ≈ 0.5 does not prove privacy, which only the DP guarantee gives.</p>\n\
         <h3>Evaluation protocol</h3>\n<p>The dataset is split into train, validation and test by {split}, so no \
         {split} contributes samples to two splits. Centralised training selects its epoch on the validation split; \
         the test split gives each cell's final numbers once. Federated learning curves evaluate the global model on \
         the test split every round for the plot only; the reported model is the last round's. Flow-level scores \
         take the majority vote over each test flow's samples. Means and standard deviations are over seeds.</p>\n\
         </section>\n",
        st.delta,
        st.clip,
        esc(&st.accountant),
        esc(&st.attacks.join(", "))
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::results::{summarise, AttackSummary, CurvePoint, DataInfo, OrgData, Privacy, Settings, Utility};

    fn cell(setting: Setting, eps: Option<f64>, seed: u64, f1: f64) -> CellResult {
        let orgs = if setting == Setting::Fedavg { 3 } else { 1 };
        let partition = if orgs > 1 { "iid" } else { "-" };
        let label = crate::results::config_label(setting, orgs, partition, "sae", eps);
        CellResult {
            id: format!(
                "{}-{}-{}",
                setting.name(),
                eps.map(trim_float).unwrap_or("nodp".into()),
                seed
            ),
            label,
            setting,
            organisations: orgs,
            partition: partition.into(),
            model: "sae".into(),
            epsilon_target: eps,
            seed,
            utility: Utility {
                macro_f1: f1,
                accuracy: f1 + 0.0211,
                balanced_accuracy: f1 - 0.01,
                flow_macro_f1: f1 + 0.0432,
                flow_accuracy: f1 + 0.05,
                baseline_macro_f1: 0.31234,
                baseline_flow_macro_f1: 0.35,
                per_class_f1: vec![f1 + 0.1, f1 - 0.1, f1],
                flow_confusion: vec![vec![9, 1, 0], vec![2, 7, 1], vec![0, 0, 10]],
                test_samples: 240,
                test_flows: 30,
            },
            privacy: eps.map(|e| Privacy {
                mechanism: "dp-sgd".into(),
                epsilon: e - 0.0123,
                delta: 1e-5,
                unit: "flow".into(),
                sigma: 1.2345,
                clip: 1.0,
                accountant: "rdp".into(),
                steps: 120,
            }),
            attacks: vec![AttackSummary {
                attack: "loss".into(),
                members: 50,
                non_members: 30,
                unit: "flow".into(),
                auc: 0.5 + f1 / 10.0,
                advantage: 0.1,
                balanced_accuracy: 0.55,
                tpr_at_1pct_fpr: 0.0234 + seed as f64 / 1000.0,
                tpr_at_0_1pct_fpr: 0.0,
                shadows: 0,
                roc_fpr: vec![0.0, 0.01, 0.1, 0.5, 1.0],
                roc_tpr: vec![0.0, 0.02, 0.15, 0.6, 1.0],
            }],
            curve: (1..=3)
                .map(|s| CurvePoint {
                    step: s,
                    macro_f1: f1 * s as f64 / 3.0,
                    epsilon: eps.map(|e| e * s as f64 / 3.0),
                })
                .collect(),
            organisations_data: if orgs > 1 {
                (0..3)
                    .map(|_| OrgData {
                        samples: 100,
                        flows: 12,
                        class_counts: vec![40, 30, 30],
                    })
                    .collect()
            } else {
                Vec::new()
            },
            train_seconds: 1.5 + seed as f64,
            attack_seconds: 0.25,
            model_file: format!("models/{seed}.safetensors"),
        }
    }

    /// Four cells: centralised without DP over two seeds, FedAvg without DP and with ε = 8.
    pub(crate) fn fixture() -> Results {
        let cells = vec![
            cell(Setting::Centralised, None, 1, 0.81234),
            cell(Setting::Centralised, None, 2, 0.79876),
            cell(Setting::Fedavg, None, 1, 0.74444),
            cell(Setting::Fedavg, Some(8.0), 1, 0.61111),
        ];
        Results {
            privpkt_version: "0.1.0".into(),
            title: "tiny <script>alert(1)</script> & co".into(),
            command: "privpkt experiment plan.toml --out \"x\"".into(),
            created_unix: 1_700_000_000,
            data: DataInfo {
                source: "synthetic (seed 7)".into(),
                dataset: "ds".into(),
                manifest_sha256: "ab".repeat(32),
                repr: "deeppacket".into(),
                label_column: "category".into(),
                classes: vec!["chat".into(), "stream<ing>".into(), "vpn_voip".into()],
                samples: [800, 200, 240],
                flows: [36, 10, 30],
                train_class_counts: vec![320, 240, 240],
                split_by: "flow".into(),
            },
            settings: Settings {
                epochs: 3,
                rounds: 3,
                local_epochs: 1,
                optimizer: "adam".into(),
                lr: 0.001,
                batch_size: 64,
                delta: 1e-5,
                clip: 1.0,
                privacy_unit: "flow".into(),
                accountant: "rdp".into(),
                attacks: vec!["loss".into()],
            },
            summary: summarise(&cells),
            cells,
            seconds: 12.3456,
        }
    }

    #[test]
    fn numbers_carry_their_data_attributes() {
        let r = fixture();
        let html = render_html(&r).unwrap();
        let has = |key: &str, metric: &str, v: f64| {
            let needle = format!("{key} data-metric=\"{metric}\">{}</span>", fmt3(v));
            assert!(html.contains(&needle), "missing {needle}");
        };
        for (i, s) in r.summary.iter().enumerate() {
            let k = format!("data-row=\"{i}\"");
            has(&k, "macro_f1", s.macro_f1.mean);
            has(&k, "flow_macro_f1", s.flow_macro_f1.mean);
            has(&k, "accuracy", s.accuracy.mean);
            has(&k, "auc:loss", s.attacks[0].auc.mean);
            has(&k, "tpr1:loss", s.attacks[0].tpr_at_1pct_fpr.mean);
            let std = format!("{k} data-metric=\"macro_f1_std\"");
            assert_eq!(html.contains(&std), s.seeds.len() > 1, "std only with several seeds");
            if s.seeds.len() > 1 {
                has(&k, "macro_f1_std", s.macro_f1.std);
                has(&k, "tpr1_std:loss", s.attacks[0].tpr_at_1pct_fpr.std);
            }
            assert_eq!(
                html.contains(&format!("{k} data-metric=\"epsilon\"")),
                s.epsilon.is_some()
            );
        }
        assert_eq!(r.summary[0].seeds.len(), 2, "the fixture averages two seeds");
        for c in &r.cells {
            let k = format!("data-cell=\"{}\"", c.id);
            has(&k, "macro_f1", c.utility.macro_f1);
            has(&k, "flow_macro_f1", c.utility.flow_macro_f1);
            has(&k, "auc:loss", c.attacks[0].auc);
            has(&k, "f1:stream&lt;ing&gt;", c.utility.per_class_f1[1]);
            if let Some(p) = &c.privacy {
                has(&k, "epsilon", p.epsilon);
                has(&k, "sigma", p.sigma);
            }
        }
        assert!(html.contains(">7.988<"), "ε spent of the DP cell: 8 - 0.0123");
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let html = render_html(&fixture()).unwrap();
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<title>tiny &lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>"));
        assert!(
            !html.contains("<script"),
            "no scripts at all, and the title's is escaped"
        );
        for bad in [
            "src=\"http",
            "href=\"http",
            "src='http",
            "href='http",
            "url(http",
            "@import",
            "<link",
            "<iframe",
        ] {
            assert!(!html.contains(bad), "external resource: {bad}");
        }
        assert!(html.contains("--out &quot;x&quot;"), "command escaped");
        assert!(html.contains("2023-11-14 22:13:20 UTC"));
    }

    #[test]
    fn one_svg_per_plot() {
        let html = render_html(&fixture()).unwrap();
        let figures: Vec<&str> = html.split("<figure class=\"plot\"").skip(1).collect();
        let ids: Vec<&str> = figures
            .iter()
            .map(|f| f.split('"').nth(1).unwrap_or_default())
            .collect();
        assert_eq!(ids, ["plot-tradeoff", "plot-curves", "plot-roc", "plot-confusion"]);
        for f in &figures {
            let body = &f[..f.find("</figure>").unwrap()];
            assert_eq!(body.matches("<svg").count(), 1, "one inline svg per figure");
            assert!(body.contains("</svg>") && body.contains("<figcaption>"));
        }
        assert_eq!(html.matches("<svg").count(), figures.len());
    }

    #[test]
    fn findings_follow_the_numbers() {
        let r = fixture();
        let html = render_html(&r).unwrap();
        let glance = &html[html.find("id=\"glance\"").unwrap()..html.find("id=\"tradeoff\"").unwrap()];
        // Best without DP: centralised (mean of 0.81234 and 0.79876).
        assert!(glance.contains("<b>centralised, sae, no DP</b>"), "{glance}");
        assert!(glance.contains(&format!("<b>{}</b>", fmt3((0.81234 + 0.79876) / 2.0))));
        // The DP cost at ε = 8 for FedAvg: 0.611 vs 0.744.
        assert!(glance.contains("ε = 8 per organisation"));
        assert!(
            glance.contains("<b>0.611</b> vs 0.744 without DP (0.133 lower)"),
            "{glance}"
        );
        assert!(glance.contains("header-only baseline reaches <b>0.312</b>"));
    }

    #[test]
    fn empty_results_still_render() {
        let mut r = fixture();
        r.cells.clear();
        r.summary.clear();
        let html = render_html(&r).unwrap();
        assert!(!html.contains("<svg"));
        assert!(html.contains("No finished cells yet."));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
