//! Plots (plotters): PNG with an embedded font, or SVG.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
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
