//! `loss.png`: the loss curve of a training run, drawn from its `metrics.csv`. The raw loss reports are a thin light
//! line; over them a thick dark line smooths them (an EMA of log₁₀ loss); the y axis is logarithmic. Reading the
//! log ([`read_losses`]) and drawing ([`loss_curve`]) are separate, so the drawing is tested on a known series. Text
//! is a built-in 3×5 pixel font: nothing depends on the fonts installed.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};

pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 480;
/// Colour of the raw loss line.
pub const RAW: Rgb<u8> = Rgb([160, 195, 235]);
/// Colour of the smoothed loss line.
pub const SMOOTHED: Rgb<u8> = Rgb([20, 80, 170]);
const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const GRID: Rgb<u8> = Rgb([228, 228, 228]);
const INK: Rgb<u8> = Rgb([60, 60, 60]);
/// The smoothing time constant, as a fraction of the run's steps: a 10,000-step run averages over ~200 steps.
const SMOOTHING_FRACTION: f64 = 1.0 / 50.0;

/// (step, loss) of every row of a metrics log, located by the header's `step` and `loss` columns.
pub fn read_losses(csv: &Path) -> Result<Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(csv).map_err(|e| Error::io(csv, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            Error::data(
                csv,
                format!("the header has no `{name}` column: {header:?}"),
            )
        })
    };
    let (step, loss) = (column("step")?, column("loss")?);
    Ok(lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            Some((
                fields.get(step)?.trim().parse().ok()?,
                fields.get(loss)?.trim().parse().ok()?,
            ))
        })
        .collect())
}

/// Draws the loss curve of `csv` (a metrics log) into `png`, atomically: a reader never sees half an image.
pub fn write_loss_png(csv: &Path, png: &Path) -> Result<()> {
    let img = image::DynamicImage::ImageRgb8(loss_curve(&read_losses(csv)?));
    write_atomically(png, &crate::image_io::png_bytes(&img)?)
}

/// Where data goes in the image: the plot area in pixels and the step and log₁₀(loss) ranges it spans.
#[derive(Clone, Debug)]
pub struct Axes {
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    steps: (f64, f64),
    log_loss: (f64, f64),
}

impl Axes {
    /// The axes for `points` (those with a finite positive loss), or `None` if there are none.
    pub fn fit(points: &[(u64, f64)]) -> Option<Axes> {
        let points = plottable(points);
        let (first, last) = (points.first()?.0 as f64, points.last()?.0 as f64);
        let steps = if last > first {
            (first, last)
        } else {
            (first - 1.0, first + 1.0)
        };
        let logs = points.iter().map(|p| p.1.log10());
        let (lo, hi) = logs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        // A margin above and below, so the extremes do not sit on the frame (and a flat series has a range).
        let pad = (0.05 * (hi - lo)).max(0.05);
        Some(Axes {
            left: 70.0,
            right: WIDTH as f64 - 20.0,
            top: 30.0,
            bottom: HEIGHT as f64 - 40.0,
            steps,
            log_loss: (lo - pad, hi + pad),
        })
    }

    /// Pixel column of `step`.
    pub fn x(&self, step: f64) -> f64 {
        let (a, b) = self.steps;
        self.left + (step - a) / (b - a) * (self.right - self.left)
    }

    /// Pixel row of `loss` (log scale: equal ratios are equal distances).
    pub fn y(&self, loss: f64) -> f64 {
        let (a, b) = self.log_loss;
        self.bottom - (loss.log10() - a) / (b - a) * (self.bottom - self.top)
    }
}

/// The points a log axis can show, in step order.
fn plottable(points: &[(u64, f64)]) -> Vec<(u64, f64)> {
    let mut kept: Vec<(u64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.1.is_finite() && p.1 > 0.0)
        .collect();
    kept.sort_by_key(|p| p.0);
    kept
}

/// The smoothed loss at each of `points` (sorted by step, losses positive): an exponential moving average of
/// log₁₀ loss whose weights decay with the distance in steps, so uneven report intervals (resumes, extra reports
/// at checkpoints) weigh by time, not by row. Log space, because the axis is: one spike does not lift the line
/// for long, and a flat stretch lies on its points. Bias-corrected, so the line starts on the first point.
pub fn smooth(points: &[(u64, f64)]) -> Vec<f64> {
    let span = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (b.0 - a.0) as f64,
        _ => return Vec::new(),
    };
    let tau = (span * SMOOTHING_FRACTION).max(1.0);
    let (mut sum, mut weight, mut previous) = (0.0, 0.0, points[0].0);
    points
        .iter()
        .map(|&(step, loss)| {
            let keep = (-((step - previous).max(1) as f64) / tau).exp();
            previous = step;
            sum = keep * sum + (1.0 - keep) * loss.log10();
            weight = keep * weight + (1.0 - keep);
            10f64.powf(sum / weight)
        })
        .collect()
}

/// The loss curve of `points` (step, loss) as a WIDTH × HEIGHT image; non-finite and non-positive losses are left
/// out (a log axis cannot show them), and with none left the image holds the empty frame.
pub fn loss_curve(points: &[(u64, f64)]) -> RgbImage {
    let mut img = RgbImage::from_pixel(WIDTH, HEIGHT, BACKGROUND);
    let Some(axes) = Axes::fit(points) else {
        frame(
            &mut img,
            70.0,
            WIDTH as f64 - 20.0,
            30.0,
            HEIGHT as f64 - 40.0,
        );
        text(&mut img, 70, 10, "LOSS: NO DATA");
        return img;
    };
    let points = plottable(points);
    let mut canvas = Canvas {
        img: &mut img,
        axes: &axes,
    };
    for (value, label) in step_ticks(axes.steps) {
        let x = axes.x(value).round();
        canvas.segment((x, axes.top), (x, axes.bottom), GRID, false);
        let width = label.len() as i64 * ADVANCE;
        text(
            canvas.img,
            x as i64 - width / 2,
            axes.bottom as i64 + 8,
            &label,
        );
    }
    for (value, label) in loss_ticks(axes.log_loss) {
        let y = axes.y(value).round();
        canvas.segment((axes.left, y), (axes.right, y), GRID, false);
        let width = label.len() as i64 * ADVANCE;
        text(
            canvas.img,
            axes.left as i64 - 6 - width,
            y as i64 - GLYPH_HEIGHT / 2,
            &label,
        );
    }
    let at = |step: u64, loss: f64| (axes.x(step as f64), axes.y(loss));
    for pair in points.windows(2) {
        canvas.segment(
            at(pair[0].0, pair[0].1),
            at(pair[1].0, pair[1].1),
            RAW,
            false,
        );
    }
    let smoothed: Vec<(f64, f64)> = points
        .iter()
        .zip(smooth(&points))
        .map(|(p, s)| at(p.0, s))
        .collect();
    if let [(x, y)] = smoothed[..] {
        // One report so far: a short dash, visible where a single pixel would not be.
        canvas.segment((x - 3.0, y), (x + 3.0, y), SMOOTHED, true);
    }
    for pair in smoothed.windows(2) {
        canvas.segment(pair[0], pair[1], SMOOTHED, true);
    }
    frame(&mut img, axes.left, axes.right, axes.top, axes.bottom);
    text(&mut img, axes.left as i64, 10, "LOSS (LOG SCALE)");
    let label = "STEP";
    text(
        &mut img,
        ((axes.left + axes.right) / 2.0) as i64 - label.len() as i64 * ADVANCE / 2,
        HEIGHT as i64 - 14,
        label,
    );
    img
}

/// Draws lines clipped to the plot area.
struct Canvas<'a> {
    img: &'a mut RgbImage,
    axes: &'a Axes,
}

impl Canvas<'_> {
    /// A straight line from `a` to `b` (pixel coordinates), 1 pixel wide or, `thick`, 3.
    fn segment(&mut self, a: (f64, f64), b: (f64, f64), colour: Rgb<u8>, thick: bool) {
        let n = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
        let offsets: &[(f64, f64)] = if thick {
            &[(0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)]
        } else {
            &[(0.0, 0.0)]
        };
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            for (dx, dy) in offsets {
                let (px, py) = ((x + dx).round(), (y + dy).round());
                let axes = self.axes;
                if px >= axes.left && px <= axes.right && py >= axes.top && py <= axes.bottom {
                    self.img.put_pixel(px as u32, py as u32, colour);
                }
            }
        }
    }
}

/// The plot area's border.
fn frame(img: &mut RgbImage, left: f64, right: f64, top: f64, bottom: f64) {
    let (l, r, t, b) = (left as u32, right as u32, top as u32, bottom as u32);
    for x in l..=r {
        img.put_pixel(x, t, INK);
        img.put_pixel(x, b, INK);
    }
    for y in t..=b {
        img.put_pixel(l, y, INK);
        img.put_pixel(r, y, INK);
    }
}

/// At most this many ticks per axis, so labels never overlap.
const MAX_TICKS: usize = 8;

/// Step ticks at multiples of 1, 2 or 5 × 10^k, labelled with whole numbers.
fn step_ticks((a, b): (f64, f64)) -> Vec<(f64, String)> {
    let step = nice_step(b - a, 0);
    let first = (a / step).ceil() as i64;
    let last = (b / step).floor() as i64;
    (first..=last)
        .map(|i| (i as f64 * step, format!("{}", i as f64 * step)))
        .collect()
}

/// The smallest of 1, 2, 5 × 10^k (k ≥ `min_exponent`) that splits `span` into at most MAX_TICKS intervals.
fn nice_step(span: f64, min_exponent: i32) -> f64 {
    let mut k = ((span / MAX_TICKS as f64).log10().floor() as i32).max(min_exponent);
    loop {
        for m in [1.0, 2.0, 5.0] {
            let step = m * 10f64.powi(k);
            if span / step <= MAX_TICKS as f64 {
                return step;
            }
        }
        k += 1;
    }
}

/// Loss ticks for the log₁₀ range (a, b): powers of ten, with 2 and 5 (or every digit) between them when few
/// decades show; over a range narrower than two digits, evenly spaced values instead.
fn loss_ticks((a, b): (f64, f64)) -> Vec<(f64, String)> {
    let decades = (a.floor() as i32)..=(b.ceil() as i32);
    let within = |m: u32, k: i32| {
        let v = m as f64 * 10f64.powi(k);
        v.log10() >= a && v.log10() <= b
    };
    for mantissas in [&[1, 2, 3, 4, 5, 6, 7, 8, 9][..], &[1, 2, 5], &[1]] {
        let ticks: Vec<(u32, i32)> = decades
            .clone()
            .flat_map(|k| mantissas.iter().map(move |&m| (m, k)))
            .filter(|&(m, k)| within(m, k))
            .collect();
        if ticks.len() < 2 {
            break;
        }
        if ticks.len() <= MAX_TICKS {
            return ticks
                .into_iter()
                .map(|(m, k)| (m as f64 * 10f64.powi(k), decimal(m, k)))
                .collect();
        }
    }
    let decade_ticks: Vec<i32> = decades.filter(|&k| within(1, k)).collect();
    if decade_ticks.len() >= 2 {
        // Many decades: every n-th power of ten.
        let every = decade_ticks.len().div_ceil(MAX_TICKS);
        return decade_ticks
            .into_iter()
            .filter(|k| k.rem_euclid(every as i32) == 0)
            .map(|k| (10f64.powi(k), decimal(1, k)))
            .collect();
    }
    // Less than one digit's step: linear ticks in loss.
    let (lo, hi) = (10f64.powf(a), 10f64.powf(b));
    let step = nice_step(hi - lo, -12);
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last)
        .map(|i| {
            let v = i as f64 * step;
            (v, format!("{v:.decimals$}"))
        })
        .collect()
}

/// m × 10^k written out: "0.02", "500", or "2E-5" past three places.
fn decimal(m: u32, k: i32) -> String {
    match k {
        0..=3 => format!("{m}{}", "0".repeat(k as usize)),
        -3..=-1 => format!("0.{}{m}", "0".repeat((-k - 1) as usize)),
        _ => format!("{m}E{k}"),
    }
}

/// Glyphs are 3×5 cells drawn at this many pixels per cell.
const SCALE: i64 = 2;
const GLYPH_HEIGHT: i64 = 5 * SCALE;
/// Horizontal distance from one character to the next.
const ADVANCE: i64 = 4 * SCALE;

/// Writes `s` (digits, `.-+E()`, and the capitals of LOSS, STEP, LOG SCALE, NO DATA) with its top-left corner at
/// (x, y); other characters are left blank, pixels outside the image are skipped.
fn text(img: &mut RgbImage, x: i64, y: i64, s: &str) {
    for (i, c) in s.chars().enumerate() {
        let rows = glyph(c);
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) == 0 {
                    continue;
                }
                for dy in 0..SCALE {
                    for dx in 0..SCALE {
                        let px = x + i as i64 * ADVANCE + col * SCALE + dx;
                        let py = y + r as i64 * SCALE + dy;
                        if (0..WIDTH as i64).contains(&px) && (0..HEIGHT as i64).contains(&py) {
                            img.put_pixel(px as u32, py as u32, INK);
                        }
                    }
                }
            }
        }
    }
}

/// Rows of a 3×5 glyph, top first, bit 2 the left column.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b001, 0b001],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '(' => [0b010, 0b100, 0b100, 0b100, 0b010],
        ')' => [0b010, 0b001, 0b001, 0b001, 0b010],
        'A' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'C' => [0b111, 0b100, 0b100, 0b100, 0b111],
        'D' => [0b110, 0b101, 0b101, 0b101, 0b110],
        'E' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'G' => [0b011, 0b100, 0b101, 0b101, 0b011],
        'L' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'N' => [0b101, 0b111, 0b111, 0b101, 0b101],
        'O' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'P' => [0b111, 0b101, 0b111, 0b100, 0b100],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        'T' => [0b111, 0b010, 0b010, 0b010, 0b010],
        _ => [0; 5],
    }
}
