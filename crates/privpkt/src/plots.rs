//! Plots (plotters): PNG with an embedded font, or SVG.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::chart::MeshStyle;
use plotters::coord::ranged1d::AsRangedCoord;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

/// DejaVu Sans (Bitstream Vera license, see assets/DejaVuSans.LICENSE): embedded so PNG text
/// renders the same on every machine, with no system font lookup.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT_ONCE: Once = Once::new();

fn ensure_font() {
    FONT_ONCE.call_once(|| {
        // The embedded font is valid; failure would only mean text is not drawn.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, FONT);
    });
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    Png,
    Svg,
}

impl ImageFormat {
    /// SVG for a `.svg` path, PNG otherwise.
    pub fn of_path(path: &Path) -> ImageFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("svg") => ImageFormat::Svg,
            _ => ImageFormat::Png,
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Svg => "svg",
        }
    }
}

/// Colour of class `i` (a qualitative palette).
pub fn class_color(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// Something drawable on any plotters backend.
pub trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draw `fig` into `path` as PNG or SVG.
pub fn render(path: &Path, fmt: ImageFormat, size: (u32, u32), fig: &impl Figure) -> Result<()> {
    ensure_font();
    match fmt {
        ImageFormat::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
            fig.draw(&root)?;
            root.present().map_err(|e| anyhow!("{}: {e}", path.display()))?;
        }
        ImageFormat::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
            fig.draw(&root)?;
            root.present().map_err(|e| anyhow!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Draw `fig` as an SVG document in memory (for pages that inline their plots).
pub fn svg_string(size: (u32, u32), fig: &impl Figure) -> Result<String> {
    ensure_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        fig.draw(&root)?;
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    Ok(out)
}

/// Per-class packet-size histograms as small multiples: `hists[c]` counts sizes in equal bins
/// over 0..=1500 bytes.
pub struct SizeHistograms {
    pub classes: Vec<String>,
    pub hists: Vec<Vec<u64>>,
}

impl Figure for SizeHistograms {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        size_histograms(root, &self.classes, &self.hists)
    }
}

fn size_histograms<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    classes: &[String],
    hists: &[Vec<u64>],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = classes.len().max(1);
    let cols = n.min(3);
    let rows = n.div_ceil(cols);
    let root = root
        .titled("Packet sizes per class (share of samples)", ("sans-serif", 22))
        .map_err(|e| anyhow!("{e:?}"))?;
    let areas = root.split_evenly((rows, cols));
    for (i, (name, h)) in classes.iter().zip(hists).enumerate() {
        let total = h.iter().sum::<u64>().max(1) as f64;
        let bins = h.len().max(1);
        let width = 1500.0 / bins as f64;
        let ymax = h.iter().map(|&c| c as f64 / total).fold(0.0, f64::max).max(1e-3) * 1.1;
        let mut chart = ChartBuilder::on(&areas[i])
            .caption(format!("{name} (n={})", total as u64), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..1500.0, 0.0..ymax)
            .map_err(|e| anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .x_desc("bytes")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_labels(4)
            .y_labels(4)
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        let color = class_color(i);
        chart
            .draw_series(h.iter().enumerate().map(|(b, &c)| {
                let x0 = b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64 / total)], color.filled())
            }))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    Ok(())
}

/// FlowPic examples: one row per class, `images[c]` dense R×R (size rows × time columns),
/// drawn with size growing upwards and a log colour scale.
pub struct FlowPicGrid {
    pub classes: Vec<String>,
    pub images: Vec<Vec<Vec<u16>>>,
    pub resolution: u32,
}

impl Figure for FlowPicGrid {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        flowpic_grid(root, &self.classes, &self.images, self.resolution)
    }
}

fn flowpic_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    classes: &[String],
    images: &[Vec<Vec<u16>>],
    resolution: u32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let root = root
        .titled(
            "FlowPic examples (x: time in block, y: packet size)",
            ("sans-serif", 22),
        )
        .map_err(|e| anyhow!("{e:?}"))?;
    let cols = images.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let rows = classes.len().max(1);
    let areas = root.split_evenly((rows, cols + 1));
    let r = resolution as usize;
    // Large images are pooled down to at most 128 cells a side for drawing.
    let step = r.div_ceil(128).max(1);
    let cells = r.div_ceil(step);
    for (ci, name) in classes.iter().enumerate() {
        let label_area = &areas[ci * (cols + 1)];
        label_area
            .draw(&Text::new(
                name.clone(),
                (5, 20),
                ("sans-serif", 16).into_font().color(&BLACK),
            ))
            .map_err(|e| anyhow!("{e:?}"))?;
        for (k, img) in images[ci].iter().enumerate() {
            let area = &areas[ci * (cols + 1) + 1 + k];
            let mut pooled = vec![0u32; cells * cells];
            for (idx, &c) in img.iter().enumerate() {
                if c > 0 {
                    let (row, col) = (idx / r, idx % r);
                    pooled[(row / step) * cells + col / step] += c as u32;
                }
            }
            let max = pooled.iter().copied().max().unwrap_or(0).max(1) as f64;
            let mut chart = ChartBuilder::on(area)
                .margin(4)
                .build_cartesian_2d(0..cells, 0..cells)
                .map_err(|e| anyhow!("{e:?}"))?;
            chart
                .draw_series(
                    (0..cells)
                        .flat_map(|row| (0..cells).map(move |col| (row, col)))
                        .map(|(row, col)| {
                            let v = pooled[row * cells + col] as f64;
                            let t = if v > 0.0 {
                                ((1.0 + v).ln() / (1.0 + max).ln()).clamp(0.0, 1.0)
                            } else {
                                0.0
                            };
                            let color = if v > 0.0 {
                                ViridisRGB::get_color(0.15 + 0.85 * t)
                            } else {
                                RGBColor(245, 245, 245)
                            };
                            Rectangle::new([(col, row), (col + 1, row + 1)], color.filled())
                        }),
                )
                .map_err(|e| anyhow!("{e:?}"))?;
        }
    }
    Ok(())
}

/// Confusion matrix as a heatmap: rows = true class, columns = predicted, colour = share of the
/// row (recall), numbers = counts.
pub struct ConfusionPlot {
    pub title: String,
    pub classes: Vec<String>,
    pub matrix: Vec<Vec<u64>>,
}

impl Figure for ConfusionPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let n = self.classes.len().max(1);
        let label_px = 16 + 8 * self.classes.iter().map(|c| c.len()).max().unwrap_or(4) as u32;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(label_px)
            // Room for the rotated "true" beside the longest class name.
            .y_label_area_size(label_px + 16)
            .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
            .map_err(|e| anyhow!("{e:?}"))?;
        let name = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) if *i < n => {
                let k = if flip { n - 1 - *i } else { *i };
                self.classes.get(k).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_desc("predicted")
            .y_desc("true")
            .axis_desc_style(("sans-serif", 16))
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|v| name(v, true))
            .y_label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        let m = &self.matrix;
        let share = |t: usize, p: usize| {
            let row: u64 = m[t].iter().sum();
            if row > 0 {
                m[t][p] as f64 / row as f64
            } else {
                0.0
            }
        };
        let cells: Vec<(usize, usize)> = (0..m.len())
            .flat_map(|t| (0..m[t].len()).map(move |p| (t, p)))
            .collect();
        chart
            .draw_series(cells.iter().map(|&(t, p)| {
                let y = n - 1 - t;
                let color = if m[t][p] == 0 {
                    RGBColor(248, 248, 248)
                } else {
                    ViridisRGB::get_color(0.1 + 0.9 * share(t, p))
                };
                Rectangle::new(
                    [
                        (SegmentValue::Exact(p), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(p + 1), SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                )
            }))
            .map_err(|e| anyhow!("{e:?}"))?;
        // Rotated column labels, drawn by hand: plotters' mesh clips rotated tick labels.
        for p in 0..n {
            let (x, y) = chart.backend_coord(&(SegmentValue::CenterOf(p), SegmentValue::Exact(0)));
            root.draw(&Text::new(
                self.classes.get(p).cloned().unwrap_or_default(),
                (x - 6, y + 6),
                ("sans-serif", 14)
                    .into_font()
                    .transform(FontTransform::Rotate90)
                    .color(&BLACK),
            ))
            .map_err(|e| anyhow!("{e:?}"))?;
        }
        if n <= 25 {
            let center = Pos::new(HPos::Center, VPos::Center);
            chart
                .draw_series(cells.iter().filter(|&&(t, p)| m[t][p] > 0).map(|&(t, p)| {
                    let color = if share(t, p) > 0.6 { BLACK } else { WHITE };
                    Text::new(
                        m[t][p].to_string(),
                        (SegmentValue::CenterOf(p), SegmentValue::CenterOf(n - 1 - t)),
                        ("sans-serif", 14).into_font().color(&color).pos(center),
                    )
                }))
                .map_err(|e| anyhow!("{e:?}"))?;
        }
        Ok(())
    }
}

/// One line of a [`LineChart`]: a mean per x position, with an optional ± band (error bars).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Series {
    pub name: String,
    pub mean: Vec<Option<f64>>,
    #[serde(default)]
    pub std: Vec<Option<f64>>,
}

/// A dashed horizontal reference line (a baseline).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RefLine {
    pub y: f64,
    pub label: String,
}

/// Lines over categorical x positions (ε = 1, 2, 4, 8, ∞; client counts, ...) with error bars:
/// what an experiment sweep reports, mean ± std over seeds.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x: Vec<String>,
    pub series: Vec<Series>,
    #[serde(default)]
    pub reference: Option<RefLine>,
    /// y axis range; default [0, 1] (scores).
    #[serde(default)]
    pub y_range: Option<[f64; 2]>,
}

impl LineChart {
    /// Shapes that do not fit are an error naming the series.
    pub fn check(&self) -> Result<()> {
        if self.x.is_empty() {
            return Err(anyhow!("a line chart needs at least one x position"));
        }
        for s in &self.series {
            if s.mean.len() != self.x.len() || !(s.std.is_empty() || s.std.len() == self.x.len()) {
                return Err(anyhow!(
                    "series `{}`: {} means and {} stds for {} x positions",
                    s.name,
                    s.mean.len(),
                    s.std.len(),
                    self.x.len()
                ));
            }
        }
        Ok(())
    }
}

impl Figure for LineChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        self.draw_with_legend(root, true)
    }
}

/// A chart on the coordinates that `x` and `y` ranges make (what `build_cartesian_2d` returns).
type RangedChart<'a, DB, X, Y> =
    ChartContext<'a, DB, Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>>;

/// The frame of the line figures (line chart, ROC, learning-curve panels): one caption size,
/// margin and label areas, so that figures and panels side by side line up.
fn line_frame<'a, DB, X, Y>(area: &DrawingArea<DB, Shift>, title: &str, x: X, y: Y) -> Result<RangedChart<'a, DB, X, Y>>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: AsRangedCoord,
    Y: AsRangedCoord,
{
    ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)
        .map_err(|e| anyhow!("{e:?}"))
}

/// Axis titles and label fonts of the line figures; each figure adds its own ticks and grid.
fn line_axes<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
    x_desc: &str,
    y_desc: &str,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
}

/// A legend entry's sample of a line drawn in `style`.
fn legend_stroke(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

/// The line figures' legend box, inside the plot at `position`, translucent over the data.
fn draw_series_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>, position: SeriesLabelPosition) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| anyhow!("{e:?}"))
}

impl LineChart {
    /// Draw with the legend inside the chart, or with none (a figure that draws its own legend
    /// below several panels).
    fn draw_with_legend<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, legend: bool) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let [y0, y1] = self.y_range.unwrap_or([0.0, 1.0]);
        let n = self.x.len();
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
        let mut chart = line_frame(root, &self.title, -0.5f64..(n as f64 - 0.5), y0..y1)?;
        let labels = self.x.clone();
        line_axes(&mut chart.configure_mesh(), &self.x_label, &self.y_label)
            .x_labels(n)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .disable_x_mesh()
            .light_line_style(RGBColor(246, 246, 246))
            .draw()
            .map_err(e)?;
        if let Some(r) = &self.reference {
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(-0.5, r.y), (n as f64 - 0.5, r.y)],
                    6,
                    4,
                    grey.stroke_width(2),
                ))
                .map_err(e)?
                .label(&r.label)
                .legend(legend_stroke(grey.stroke_width(2)));
        }
        for (k, s) in self.series.iter().enumerate() {
            let c = class_color(k);
            let pts: Vec<(f64, f64)> = s
                .mean
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.map(|m| (i as f64, m)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(e)?
                .label(&s.name)
                .legend(legend_stroke(c.stroke_width(2)));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
                .map_err(e)?;
            let bars = pts.iter().filter_map(|&(x, m)| {
                let sd = s.std.get(x as usize).copied().flatten()?;
                Some(ErrorBar::new_vertical(x, m - sd, m, m + sd, c.stroke_width(2), 10))
            });
            chart.draw_series(bars).map_err(e)?;
        }
        if legend {
            draw_series_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
        Ok(())
    }
}

/// A log axis's label: powers of ten as plain decimals (0.001, 0.01, ...), nothing between.
fn decade(v: &f64) -> String {
    let e = v.log10().round();
    if (v.log10() - e).abs() < 1e-6 {
        format!("{}", 10f64.powi(e as i32))
    } else {
        String::new()
    }
}

/// One ROC curve of a [`RocPlot`].
#[derive(Debug, Clone)]
pub struct RocSeries {
    pub name: String,
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
}

/// Membership-inference ROC curves on log-log axes, where the low-FPR regime that matters for
/// privacy (Carlini et al. 2022) is visible; the diagonal is chance. Rates of 0 are drawn on
/// the axes' lower edge, one step below the smallest non-zero rate.
#[derive(Debug, Clone)]
pub struct RocPlot {
    pub title: String,
    pub curves: Vec<RocSeries>,
}

impl Figure for RocPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
        let smallest = self
            .curves
            .iter()
            .flat_map(|c| c.fpr.iter().chain(&c.tpr))
            .copied()
            .filter(|&v| v > 0.0)
            .fold(1.0f64, f64::min);
        let lo = 10f64.powf((smallest.log10() - 0.5).floor()).clamp(1e-6, 1e-2);
        let mut chart = line_frame(root, &self.title, (lo..1.0).log_scale(), (lo..1.0).log_scale())?;
        line_axes(&mut chart.configure_mesh(), "false-positive rate", "true-positive rate")
            .light_line_style(RGBColor(240, 240, 240))
            .x_label_formatter(&decade)
            .y_label_formatter(&decade)
            .draw()
            .map_err(e)?;
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(lo, lo), (1.0, 1.0)],
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(e)?
            .label("chance")
            .legend(legend_stroke(grey.stroke_width(1)));
        for (k, c) in self.curves.iter().enumerate() {
            let col = class_color(k);
            let pts: Vec<(f64, f64)> = c
                .fpr
                .iter()
                .zip(&c.tpr)
                .map(|(&f, &t)| (f.max(lo), t.max(lo)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, col.stroke_width(2)))
                .map_err(e)?
                .label(&c.name)
                .legend(legend_stroke(col.stroke_width(2)));
        }
        draw_series_legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

/// One entry of a legend drawn below a figure's panels.
struct LegendEntry {
    name: String,
    color: RGBColor,
    /// A dashed reference line rather than a data line with markers.
    dashed: bool,
}

const LEGEND_ROW: i32 = 24;
const LEGEND_FONT: u32 = 16;

/// Entries laid out left to right, wrapped at `width`: each entry's (row, x).
fn legend_layout<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, entries: &[LegendEntry]) -> Vec<(i32, i32)> {
    let width = root.dim_in_pixel().0 as i32;
    let font: TextStyle = ("sans-serif", LEGEND_FONT).into();
    let (mut row, mut x) = (0, 16);
    let mut out = Vec::with_capacity(entries.len());
    for en in entries {
        let text_w = root
            .estimate_text_size(&en.name, &font)
            .map(|(w, _)| w as i32)
            .unwrap_or(8 * en.name.chars().count() as i32);
        let w = 30 + text_w + 26;
        if x > 16 && x + w > width - 8 {
            row += 1;
            x = 16;
        }
        out.push((row, x));
        x += w;
    }
    out
}

/// Split off a legend strip at the bottom of `root` (so the panels' data is never covered,
/// whatever its shape), draw the entries there and return the area left for the panels.
fn with_bottom_legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    if entries.is_empty() {
        return Ok(root.clone());
    }
    let layout = legend_layout(root, entries);
    let rows = layout.iter().map(|&(r, _)| r).max().unwrap_or(0) + 1;
    let height = root.dim_in_pixel().1 as i32;
    let (top, strip) = root.split_vertically(height - rows * LEGEND_ROW - 10);
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
    for (en, &(row, x)) in entries.iter().zip(&layout) {
        let y = 4 + row * LEGEND_ROW + LEGEND_ROW / 2;
        if en.dashed {
            for seg in [(x, x + 7), (x + 11, x + 18), (x + 22, x + 26)] {
                strip
                    .draw(&PathElement::new(
                        vec![(seg.0, y), (seg.1, y)],
                        en.color.stroke_width(2),
                    ))
                    .map_err(e)?;
            }
        } else {
            strip
                .draw(&PathElement::new(vec![(x, y), (x + 26, y)], en.color.stroke_width(2)))
                .map_err(e)?;
            strip.draw(&Circle::new((x + 13, y), 4, en.color.filled())).map_err(e)?;
        }
        strip
            .draw(&Text::new(
                en.name.clone(),
                (x + 32, y - LEGEND_FONT as i32 / 2 - 1),
                ("sans-serif", LEGEND_FONT).into_font().color(&BLACK),
            ))
            .map_err(e)?;
    }
    Ok(top)
}

/// The privacy–utility–leakage trade-off: test macro-F1 (left) and membership-inference AUC
/// (right) over the privacy budget, one line per configuration with the same colour in both
/// panels, and one legend below both so neither panel's data is hidden behind it.
#[derive(Debug, Clone)]
pub struct TradeoffPlot {
    pub title: String,
    pub utility: LineChart,
    pub leakage: LineChart,
}

impl Figure for TradeoffPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let root = root
            .titled(&self.title, ("sans-serif", 22))
            .map_err(|e| anyhow!("{e:?}"))?;
        let grey = RGBColor(120, 120, 120);
        let entries: Vec<LegendEntry> = self
            .utility
            .series
            .iter()
            .enumerate()
            .map(|(k, s)| LegendEntry {
                name: s.name.clone(),
                color: class_color(k),
                dashed: false,
            })
            .chain(
                [&self.utility.reference, &self.leakage.reference]
                    .into_iter()
                    .flatten()
                    .map(|r| LegendEntry {
                        name: r.label.clone(),
                        color: grey,
                        dashed: true,
                    }),
            )
            .collect();
        let top = with_bottom_legend(&root, &entries)?;
        let (w, _) = top.dim_in_pixel();
        let (left, right) = top.split_horizontally(w / 2);
        self.utility.draw_with_legend(&left, false)?;
        self.leakage.draw_with_legend(&right, false)?;
        Ok(())
    }
}

/// [`TradeoffPlot`] of an experiment's summary: x = the distinct ε targets ascending, then
/// `no DP`; one line per [`SummaryRow::group`](crate::results::SummaryRow::group); mean ± std
/// over seeds (bars only where there are several seeds). The left panel's dashed line is the
/// header-only baseline (mean over cells), the right panel's is chance (AUC 0.5) for the first
/// attack of the settings. `None` without summary rows.
pub fn tradeoff_plot(r: &crate::results::Results) -> Option<TradeoffPlot> {
    use crate::results::{trim_float, SummaryRow};
    if r.summary.is_empty() {
        return None;
    }
    let mut eps: Vec<f64> = r.summary.iter().filter_map(|s| s.epsilon_target).collect();
    eps.sort_by(f64::total_cmp);
    eps.dedup_by(|a, b| a.to_bits() == b.to_bits());
    let no_dp = r.summary.iter().any(|s| s.epsilon_target.is_none());
    let mut x: Vec<String> = eps.iter().map(|e| format!("ε={}", trim_float(*e))).collect();
    if no_dp {
        x.push("no DP".into());
    }
    let pos = |s: &SummaryRow| match s.epsilon_target {
        Some(e) => eps.iter().position(|v| v.to_bits() == e.to_bits()),
        None => Some(eps.len()),
    };
    let groups = summary_groups(r);
    let attack = r.settings.attacks.first().cloned().or_else(|| {
        r.summary
            .iter()
            .flat_map(|s| &s.attacks)
            .map(|a| a.attack.clone())
            .next()
    });
    let series = |value: &dyn Fn(&SummaryRow) -> Option<crate::results::Stat>| -> Vec<Series> {
        groups
            .iter()
            .map(|g| {
                let mut mean = vec![None; x.len()];
                let mut std = vec![None; x.len()];
                for s in r.summary.iter().filter(|s| s.group == *g) {
                    if let (Some(i), Some(st)) = (pos(s), value(s)) {
                        if st.mean.is_finite() {
                            mean[i] = Some(st.mean);
                            std[i] = (s.seeds.len() > 1 && st.std.is_finite()).then_some(st.std);
                        }
                    }
                }
                Series {
                    name: g.to_string(),
                    mean,
                    std,
                }
            })
            .collect()
    };
    let utility = series(&|s| Some(s.macro_f1));
    let leakage = series(&|s| {
        let a = attack.as_deref()?;
        s.attacks.iter().find(|x| x.attack == a).map(|x| x.auc)
    });
    let baselines: Vec<f64> = r
        .cells
        .iter()
        .map(|c| c.utility.baseline_macro_f1)
        .filter(|v| v.is_finite())
        .collect();
    let baseline = (!baselines.is_empty()).then(|| baselines.iter().sum::<f64>() / baselines.len() as f64);
    // AUC: keep chance and every bar in view without flattening the differences into [0, 1].
    let (lo, hi) = leakage
        .iter()
        .flat_map(|s| s.mean.iter().zip(&s.std))
        .filter_map(|(m, sd)| m.map(|m| (m - sd.unwrap_or(0.0), m + sd.unwrap_or(0.0))))
        .fold((0.45f64, 0.7f64), |(lo, hi), (a, b)| {
            (lo.min(a - 0.03), hi.max(b + 0.03))
        });
    let x_label = "privacy budget per organisation".to_string();
    let attack_name = attack.unwrap_or_else(|| "none".into());
    Some(TradeoffPlot {
        title: "Privacy–utility–leakage trade-off (mean ± std over seeds)".into(),
        utility: LineChart {
            title: "test macro-F1".into(),
            x_label: x_label.clone(),
            y_label: "macro-F1".into(),
            x: x.clone(),
            series: utility,
            reference: baseline.map(|b| RefLine {
                y: b,
                label: format!("header-only baseline macro-F1 ({})", crate::results::fmt3(b)),
            }),
            y_range: Some([0.0, 1.0]),
        },
        leakage: LineChart {
            title: format!("membership-inference AUC ({attack_name} attack)"),
            x_label,
            y_label: "attack AUC".into(),
            x,
            series: leakage,
            reference: Some(RefLine {
                y: 0.5,
                label: "chance AUC (0.5)".into(),
            }),
            y_range: Some([lo.max(0.0), hi.min(1.0)]),
        },
    })
}

/// The trade-off plot's lines in order: line `k` is drawn in `class_color(k)`.
pub fn summary_groups(r: &crate::results::Results) -> Vec<&str> {
    let mut groups: Vec<&str> = Vec::new();
    for s in &r.summary {
        if !groups.contains(&s.group.as_str()) {
            groups.push(&s.group);
        }
    }
    groups
}

/// One learning curve of a [`CurvesPlot`].
#[derive(Debug, Clone)]
pub struct CurveLine {
    pub name: String,
    /// Index into [`class_color`], so a curve can keep the colour its run has elsewhere.
    pub color: usize,
    /// (epoch or round, score).
    pub points: Vec<(f64, f64)>,
}

/// One panel of a [`CurvesPlot`].
#[derive(Debug, Clone)]
pub struct CurvePanel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<CurveLine>,
}

/// Learning curves in panels side by side (curves measured differently, such as validation
/// F1 per epoch and test F1 per round, belong in different panels), with one legend below.
#[derive(Debug, Clone)]
pub struct CurvesPlot {
    pub title: String,
    pub panels: Vec<CurvePanel>,
}

impl Figure for CurvesPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e:?}");
        let root = root.titled(&self.title, ("sans-serif", 22)).map_err(e)?;
        let entries: Vec<LegendEntry> = self
            .panels
            .iter()
            .flat_map(|p| &p.lines)
            .map(|l| LegendEntry {
                name: l.name.clone(),
                color: class_color(l.color),
                dashed: false,
            })
            .collect();
        let top = with_bottom_legend(&root, &entries)?;
        let areas = top.split_evenly((1, self.panels.len().max(1)));
        for (p, area) in self.panels.iter().zip(&areas) {
            let steps = p
                .lines
                .iter()
                .flat_map(|l| &l.points)
                .map(|&(x, _)| x)
                .fold(1.0f64, f64::max);
            let mut chart = line_frame(area, &p.title, 0.5f64..steps + 0.5, 0.0f64..1.0)?;
            line_axes(&mut chart.configure_mesh(), &p.x_label, &p.y_label)
                .x_labels((steps as usize).min(12))
                .x_label_formatter(&|v| {
                    if (v - v.round()).abs() < 1e-6 {
                        format!("{}", v.round())
                    } else {
                        String::new()
                    }
                })
                .light_line_style(RGBColor(246, 246, 246))
                .draw()
                .map_err(e)?;
            for l in &p.lines {
                let c = class_color(l.color);
                chart
                    .draw_series(LineSeries::new(l.points.clone(), c.stroke_width(2)))
                    .map_err(e)?;
                chart
                    .draw_series(l.points.iter().map(|&pt| Circle::new(pt, 3, c.filled())))
                    .map_err(e)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_plot_renders_both_formats() {
        let d = tempfile::tempdir().unwrap();
        let fig = ConfusionPlot {
            title: "test".into(),
            classes: vec!["chat".into(), "streaming".into(), "vpn_voip".into()],
            matrix: vec![vec![50, 3, 0], vec![4, 40, 6], vec![0, 0, 12]],
        };
        render(&d.path().join("c.png"), ImageFormat::Png, (500, 500), &fig).unwrap();
        render(&d.path().join("c.svg"), ImageFormat::Svg, (500, 500), &fig).unwrap();
        let svg = std::fs::read_to_string(d.path().join("c.svg")).unwrap();
        assert!(
            svg.contains("vpn_voip") && svg.contains(">\n40\n<"),
            "class names and counts drawn"
        );
        assert!(std::fs::metadata(d.path().join("c.png")).unwrap().len() > 1000);
    }

    #[test]
    fn tradeoff_plot_of_a_summary() {
        let mut r = crate::report::tests::fixture();
        let p = tradeoff_plot(&r).unwrap();
        assert_eq!(p.utility.x, ["ε=8", "no DP"]);
        let names: Vec<&str> = p.utility.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["centralised, sae", "FedAvg, 3 orgs (iid), sae"]);
        assert_eq!(summary_groups(&r), names, "legend order = colour order");
        let cen = &p.utility.series[0];
        assert_eq!(cen.mean[0], None, "centralised ran without DP only");
        assert!((cen.mean[1].unwrap() - (0.81234 + 0.79876) / 2.0).abs() < 1e-12);
        assert!(cen.std[1].unwrap() > 0.0, "two seeds: an error bar");
        assert_eq!(p.utility.series[1].std, [None, None], "one seed: no error bar");
        assert!((p.utility.reference.as_ref().unwrap().y - 0.31234).abs() < 1e-12);
        assert_eq!(p.leakage.reference.as_ref().unwrap().y, 0.5);
        let [lo, hi] = p.leakage.y_range.unwrap();
        assert!(lo < 0.5 && hi > 0.58, "chance and every AUC in view");
        let svg = svg_string((1000, 460), &p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("chance AUC (0.5)") && svg.contains("ε=8"));
        assert!(svg.matches("<polyline").count() >= 4, "four data lines at least");
        r.summary.clear();
        assert!(tradeoff_plot(&r).is_none());
    }

    #[test]
    fn curves_plot_renders() {
        let fig = CurvesPlot {
            title: "curves".into(),
            panels: vec![CurvePanel {
                title: "a".into(),
                x_label: "epoch".into(),
                y_label: "macro-F1".into(),
                lines: vec![CurveLine {
                    name: "run <1>".into(),
                    color: 3,
                    points: vec![(1.0, 0.2), (2.0, 0.5), (3.0, 0.6)],
                }],
            }],
        };
        let svg = svg_string((600, 400), &fig).unwrap();
        assert!(svg.contains("run &lt;1&gt;"), "legend text escaped");
        let c = class_color(3);
        assert!(
            svg.contains(&format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)),
            "the line's own colour"
        );
    }
}
