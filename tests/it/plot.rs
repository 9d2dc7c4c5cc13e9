//! loss.png: the drawing of known series, checked pixel by pixel, and the file written from a metrics log.

use std::path::PathBuf;

use diffuse::plot::{self, Axes, HEIGHT, RAW, SMOOTHED, WIDTH};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rows of the pixels of `colours` in column `x`.
fn rows_in_column(img: &image::RgbImage, x: f64, colours: &[image::Rgb<u8>]) -> Vec<u32> {
    let x = x.round() as u32;
    (0..img.height())
        .filter(|&y| colours.contains(img.get_pixel(x, y)))
        .collect()
}

/// Steps 1..=300: loss 1 for the first hundred, then 0.1, then 0.01.
fn plateaus() -> Vec<(u64, f64)> {
    (1..=300u64)
        .map(|s| (s, [1.0, 0.1, 0.01][((s - 1) / 100) as usize]))
        .collect()
}

#[test]
fn loss_curve_draws_each_plateau_where_its_loss_is_on_a_log_axis() {
    let points = plateaus();
    let img = plot::loss_curve(&points);
    assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
    let axes = Axes::fit(&points).unwrap();
    let data = [RAW, SMOOTHED];
    // Mid-plateau both lines lie on the loss (the smoothed one has long settled): nothing else in that column.
    let mut centres = Vec::new();
    for (step, loss) in [(50.0, 1.0), (150.0, 0.1), (250.0, 0.01)] {
        let rows = rows_in_column(&img, axes.x(step), &data);
        let want = axes.y(loss);
        assert!(
            !rows.is_empty() && rows.iter().all(|&y| (y as f64 - want).abs() <= 1.5),
            "step {step}, loss {loss}: data pixels at rows {rows:?}, want {want:.1} ± 1.5"
        );
        centres.push(rows.iter().sum::<u32>() as f64 / rows.len() as f64);
    }
    // Independently of Axes: lower loss is lower in the image, and each tenfold drop is the same distance.
    let (d1, d2) = (centres[1] - centres[0], centres[2] - centres[1]);
    assert!(
        d1 > 50.0 && (d1 - d2).abs() <= 1.0,
        "decade gaps {d1} and {d2} (rows {centres:?}): not a log axis"
    );
    // Nothing is drawn left of the first step or right of the last.
    for x in [axes.x(1.0) - 3.0, axes.x(300.0) + 3.0] {
        assert_eq!(rows_in_column(&img, x, &data), Vec::<u32>::new(), "x {x}");
    }
}

#[test]
fn the_smoothed_line_runs_through_the_geometric_middle_of_noisy_losses() {
    // Alternating 1 and 0.01: the raw line spans both, the smoothed one stays near 0.1 (log-space mean).
    let points: Vec<(u64, f64)> = (1..=400u64)
        .map(|s| (s, if s % 2 == 0 { 1.0 } else { 0.01 }))
        .collect();
    let smoothed = plot::smooth(&points);
    assert!(
        (smoothed[0] - 0.01).abs() < 1e-12,
        "the bias-corrected EMA starts on the first point, not {}",
        smoothed[0]
    );
    for (k, s) in smoothed.iter().enumerate().skip(100) {
        assert!((s.log10() + 1.0).abs() < 0.15, "smoothed[{k}] = {s}");
    }
    let img = plot::loss_curve(&points);
    let axes = Axes::fit(&points).unwrap();
    let x = axes.x(300.0);
    let smooth_rows = rows_in_column(&img, x, &[SMOOTHED]);
    let (lo, hi) = (axes.y(10f64.powf(-0.85)), axes.y(10f64.powf(-1.15)));
    assert!(
        !smooth_rows.is_empty()
            && smooth_rows
                .iter()
                .all(|&y| y as f64 >= lo - 2.0 && y as f64 <= hi + 2.0),
        "smoothed rows {smooth_rows:?}, want within {lo:.0}..{hi:.0}"
    );
    // A few columns: a step is ~1.8 pixels wide, so one column need not hold a corner of the zigzag.
    let raw_rows: Vec<u32> = (-2..=2)
        .flat_map(|dx| rows_in_column(&img, x + dx as f64, &[RAW]))
        .collect();
    assert!(
        raw_rows.iter().any(|&y| y as f64 <= axes.y(1.0) + 2.0)
            && raw_rows.iter().any(|&y| y as f64 >= axes.y(0.01) - 2.0),
        "the raw line must reach both levels: rows {raw_rows:?}"
    );
}

#[test]
fn loss_png_from_a_metrics_log_is_that_plot_and_skips_what_a_log_axis_cannot_show() {
    let dir = scratch("png");
    let csv = dir.join("metrics.csv");
    let png = dir.join("loss.png");
    // Columns found by name; a NaN and a zero loss, and a torn last line, are left out.
    let mut text = String::from("wall_s,loss,step\n");
    for (step, loss) in plateaus() {
        text.push_str(&format!("{},{loss},{step}\n", step as f64 * 0.5));
    }
    text.push_str("150.5,NaN,301\n151.0,0,302\n151.5,0.0");
    std::fs::write(&csv, text).unwrap();
    let points = plot::read_losses(&csv).unwrap();
    assert_eq!(points.len(), 302);
    assert_eq!((points[0], points[299]), ((1, 1.0), (300, 0.01)));
    plot::write_loss_png(&csv, &png).unwrap();
    let written = image::open(&png).unwrap().to_rgb8();
    assert_eq!(written.dimensions(), (WIDTH, HEIGHT));
    // Only finite positive losses set the axes: the same image as the plateaus alone.
    assert!(
        written == plot::loss_curve(&plateaus()),
        "loss.png differs from the plot of the plateaus"
    );
    // Written atomically: only the two files remain.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["loss.png", "metrics.csv"]);

    // With no plottable loss the image is still written: the empty frame, no data pixels.
    std::fs::write(&csv, "step,loss\n1,NaN\n").unwrap();
    plot::write_loss_png(&csv, &png).unwrap();
    let empty = image::open(&png).unwrap().to_rgb8();
    assert_eq!(empty.dimensions(), (WIDTH, HEIGHT));
    assert!(!empty.pixels().any(|p| *p == RAW || *p == SMOOTHED));
}

#[test]
fn a_metrics_log_without_a_loss_column_is_a_clear_error() {
    let dir = scratch("bad");
    let csv = dir.join("metrics.csv");
    std::fs::write(&csv, "step,grad_norm\n1,0.5\n").unwrap();
    let err = plot::read_losses(&csv).unwrap_err().to_string();
    assert!(
        err.contains("metrics.csv") && err.contains("`loss`"),
        "{err}"
    );
    let err = plot::read_losses(&dir.join("missing.csv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.csv"), "{err}");
}
