//! The parsers of numeric values that the command line's flags and the checkpoint's keys share: each refuses what
//! it cannot take with the range it wants ("must be a finite number ≥ 0"), so that the message names the flag or
//! the key beside it.

/// The range a numeric value takes, checked when the command line is parsed: clap's message then names the flag
/// and the value ("invalid value 'nan' for '--lr <LR>': …") and this says what it may be.
fn number_in(text: &str, ok: impl Fn(f64) -> bool, range: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(v),
        Ok(_) => Err(format!("must be {range}")),
        Err(_) => Err(format!("not a number; it must be {range}")),
    }
}

/// A finite number ≥ 0 (`--lr`, `--clip`, `--guidance`, `--eta`).
pub fn non_negative(text: &str) -> Result<f64, String> {
    number_in(text, |v| v >= 0.0, "a finite number ≥ 0")
}

/// A finite number > 0 (`--memory-budget`).
pub fn positive(text: &str) -> Result<f64, String> {
    number_in(text, |v| v > 0.0, "a finite number > 0 (e.g. 6 or 0.5)")
}

/// A number in [0, 1] (`--ema`).
pub fn unit_interval(text: &str) -> Result<f64, String> {
    number_in(text, |v| (0.0..=1.0).contains(&v), "in [0, 1]")
}

/// A number ≥ 1, +∞ included (`--threshold-max`: no cap).
pub fn at_least_unity(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v >= 1.0 => Ok(v),
        Ok(_) => Err("must be a number ≥ 1 (or inf)".into()),
        Err(_) => Err("not a number; it must be ≥ 1 (or inf)".into()),
    }
}

/// A number ≥ 0, +∞ included (`--churn-max`: no bound).
pub fn non_negative_or_infinite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 => Ok(v),
        Ok(_) => Err("must be a number ≥ 0 (or inf)".into()),
        Err(_) => Err("not a number; it must be ≥ 0 (or inf)".into()),
    }
}

/// A probability that is not certain, [0, 1) (`--dropout`).
pub fn probability_below_one(text: &str) -> Result<f32, String> {
    number_in(text, |v| (0.0..1.0).contains(&v), "in [0, 1)").map(|v| v as f32)
}

/// A whole number ≥ 1 (`--steps`, `--batch`, `--num`, …).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(_) => Err("not a whole number ≥ 1".into()),
    }
}

/// `--memory-budget`'s GB as bytes (what [`positive`] accepted).
pub fn gigabytes(gb: f64) -> u64 {
    (gb * 1e9) as u64
}
