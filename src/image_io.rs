//! What a person sees: sample grids as PNG, denoising trajectories as animated GIF, and raw arrays as NumPy `.npy`
//! (the format other tools read and write, so samples and noise can be compared across tools).

use std::path::Path;

use crate::checkpoint::write_atomically;
use crate::error::{Error, Result};

/// Pixels [N, C, S, S] in [−1, 1] as one RGB image: a grid of `columns` images per row with a 2-pixel border.
pub fn grid(
    pixels: &[f32],
    n: usize,
    channels: usize,
    size: usize,
    columns: usize,
) -> image::RgbImage {
    let columns = columns.clamp(1, n.max(1));
    let rows = n.div_ceil(columns);
    let pad = 2;
    let (w, h) = (
        (columns * (size + pad) + pad) as u32,
        (rows * (size + pad) + pad) as u32,
    );
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([32, 32, 32]));
    let plane = size * size;
    for i in 0..n {
        let (gx, gy) = (
            (i % columns) * (size + pad) + pad,
            (i / columns) * (size + pad) + pad,
        );
        let base = i * channels * plane;
        for y in 0..size {
            for x in 0..size {
                let value = |c: usize| {
                    let v = pixels[base + c * plane + y * size + x];
                    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                };
                let rgb = if channels >= 3 {
                    [value(0), value(1), value(2)]
                } else {
                    [value(0); 3]
                };
                img.put_pixel((gx + x) as u32, (gy + y) as u32, image::Rgb(rgb));
            }
        }
    }
    img
}

/// Columns of a near-square grid of n images.
fn square(n: usize) -> usize {
    (n as f64).sqrt().ceil() as usize
}

/// Writes a sample grid as PNG (atomically).
pub fn save_grid_png(
    path: &Path,
    pixels: &[f32],
    n: usize,
    channels: usize,
    size: usize,
    columns: Option<usize>,
) -> Result<()> {
    write_atomically(path, &grid_png(pixels, n, channels, size, columns)?)
}

/// A sample grid (n images [N, C, S, S] in [−1, 1], `columns` per row, else near-square) as PNG bytes.
pub fn grid_png(
    pixels: &[f32],
    n: usize,
    channels: usize,
    size: usize,
    columns: Option<usize>,
) -> Result<Vec<u8>> {
    let columns = columns.unwrap_or_else(|| square(n));
    png_bytes(&image::DynamicImage::ImageRgb8(grid(
        pixels, n, channels, size, columns,
    )))
}

/// An image as PNG bytes.
pub fn png_bytes(img: &image::DynamicImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::Usage(format!("encoding a PNG: {e}")))?;
    Ok(bytes)
}

/// Writes frames (each [N, C, S, S] in [−1, 1]) as an animated GIF, `delay_ms` per frame, the last held longer.
pub fn save_gif(
    path: &Path,
    frames: &[Vec<f32>],
    n: usize,
    channels: usize,
    size: usize,
    columns: Option<usize>,
    delay_ms: u32,
) -> Result<()> {
    let bytes = gif_bytes(frames, n, channels, size, columns, delay_ms)?;
    write_atomically(path, &bytes)
}

/// [`save_gif`]'s animation as GIF bytes.
pub fn gif_bytes(
    frames: &[Vec<f32>],
    n: usize,
    channels: usize,
    size: usize,
    columns: Option<usize>,
    delay_ms: u32,
) -> Result<Vec<u8>> {
    use image::codecs::gif::{GifEncoder, Repeat};
    let columns = columns.unwrap_or_else(|| square(n));
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|e| Error::Usage(format!("GIF: {e}")))?;
        for (k, pixels) in frames.iter().enumerate() {
            let rgba =
                image::DynamicImage::ImageRgb8(grid(pixels, n, channels, size, columns)).to_rgba8();
            let delay = if k + 1 == frames.len() {
                delay_ms * 20
            } else {
                delay_ms
            };
            let frame =
                image::Frame::from_parts(rgba, 0, 0, image::Delay::from_numer_denom_ms(delay, 1));
            encoder
                .encode_frame(frame)
                .map_err(|e| Error::Usage(format!("GIF: {e}")))?;
        }
    }
    Ok(bytes)
}

/// Writes a C-ordered little-endian f32 array as `.npy` (format version 1.0).
pub fn write_npy(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, newline-ended.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut bytes = Vec::with_capacity(total + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomically(path, &bytes)
}

/// Reads an `.npy` file of little-endian f32 (`<f4`) or f64 (`<f8`, converted) in C order: (shape, values).
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: &str| Error::data(path, format!("not a usable .npy file: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next());
    let width = match descr {
        Some("<f4") => 4,
        Some("<f8") => 8,
        Some(other) => {
            return Err(bad(&format!(
                "dtype {other} (save it as float32: x.astype('<f4'))"
            )))
        }
        None => return Err(bad("no dtype in the header")),
    };
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(bad("Fortran order (save it with np.ascontiguousarray)"));
    }
    let shape_text = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next());
    let shape: Vec<usize> = shape_text
        .ok_or_else(|| bad("no shape in the header"))?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("a shape entry is not a number")))
        .collect::<Result<_>>()?;
    // Checked: a crafted shape must not wrap around to a small size. The data must be in the file, so nothing is
    // allocated past the file's own size.
    let need = shape
        .iter()
        .try_fold(width, |n: usize, &d| n.checked_mul(d))
        .ok_or_else(|| bad(&format!("shape {shape:?} overflows: more than 2^64 bytes")))?;
    let data = &bytes[start + header_len..];
    if data.len() < need {
        return Err(bad(&format!(
            "truncated: shape {shape:?} needs {need} bytes, {} present",
            data.len()
        )));
    }
    let values = data[..need]
        .chunks_exact(width)
        .map(|c| {
            if width == 4 {
                f32::from_le_bytes([c[0], c[1], c[2], c[3]])
            } else {
                f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
            }
        })
        .collect();
    Ok((shape, values))
}
