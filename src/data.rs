//! Training data: MNIST IDX files (gzipped or not), folders of PNG/JPEG images, and the built-in MNIST subset.
//! Every source becomes `[N, C, S, S]` 8-bit pixels at the model's size and channel count, kept in host memory:
//! a quarter of f32's size, so that 70,000 MNIST digits (55 MB) or 10⁵ photos at 64 px (1.2 GB) fit where their
//! f32 form would not. The GPU turns a byte b into the training value [`unit`]`(b)` ∈ [−1, 1] as it assembles
//! each batch. Image folders are decoded on every core, and the result is cached (see [`cache`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub mod cache;
pub mod farthest;

/// The bundled 10,000-digit MNIST subset (assets/mnist-10k; CC BY-SA 3.0, see assets/README.md).
const BUILTIN_IMAGES: &[u8] = include_bytes!("../assets/mnist-10k/images-idx3-ubyte.gz");
const BUILTIN_LABELS: &[u8] = include_bytes!("../assets/mnist-10k/labels-idx1-ubyte.gz");

/// The training value of byte `b`: b/127.5 − 1, rounded once from f64. The GPU reads these 256 values from a
/// table built by this function ([`unit_table`]), so its batches are bit-identical to the CPU's.
pub fn unit(b: u8) -> f32 {
    (b as f64 / 127.5 - 1.0) as f32
}

/// [`unit`] of every byte, in byte order.
pub fn unit_table() -> Vec<f32> {
    (0..=255u8).map(unit).collect()
}

/// Images ready for training.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// [len, channels, size, size], row-major, 8-bit; the training value of a byte is [`unit`] of it. Shared, so
    /// that a trainer streaming from it holds no second copy.
    pub pixels: std::sync::Arc<[u8]>,
    pub len: usize,
    pub channels: usize,
    pub size: usize,
    /// Class of each image, where the source has classes (MNIST labels, or one subfolder per class).
    pub labels: Option<Vec<u32>>,
    /// Class names in label order (subfolder names, or "0".."9" for MNIST).
    pub class_names: Vec<String>,
    /// Where the data came from, for messages and checkpoint metadata.
    pub description: String,
    /// What opening it found worth telling the user (files skipped, the decode cache used or not written, the
    /// decoding rate): the command prints them, once per job.
    pub notes: Vec<String>,
}

/// How images are fitted to the model.
#[derive(Clone, Copy, Debug)]
pub struct Fit {
    pub channels: usize,
    pub size: usize,
    /// Colour that transparent pixels are composited onto (RGB, 0–255).
    pub background: [u8; 3],
}

impl Dataset {
    /// The built-in MNIST subset.
    pub fn builtin(fit: Fit) -> Result<Dataset> {
        let images = parse_idx_images(Path::new("<built-in mnist-10k>"), BUILTIN_IMAGES)?;
        let labels = parse_idx_labels(Path::new("<built-in mnist-10k>"), BUILTIN_LABELS)?;
        from_gray(
            images,
            Some(labels),
            fit,
            "built-in MNIST subset (10,000 digits)".into(),
        )
    }

    /// Opens `path`: an IDX image file (its labels file is found beside it), a folder holding MNIST IDX files, or a
    /// folder of PNG/JPEG images (with one subfolder per class, or flat and unlabelled).
    pub fn open(path: &Path, fit: Fit) -> Result<Dataset> {
        Self::open_cached(path, fit, &cache::Policy::default())
    }

    /// [`Dataset::open`] with an explicit policy for the decoded-image cache of image folders.
    pub fn open_cached(path: &Path, fit: Fit, cache: &cache::Policy) -> Result<Dataset> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!(
                "--data {}: no such file or folder; give a folder of images (or of class subfolders), or an MNIST \
                 IDX file or folder",
                path.display()
            )),
            _ => Error::io(path, e),
        })?;
        if meta.is_file() {
            return open_idx(path, fit);
        }
        if let Some(images) = find_idx(path, "idx3")? {
            return open_idx(&images, fit);
        }
        open_folder(path, fit, cache)
    }

    /// Bytes per image: channels · size².
    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The bytes of image `i`.
    pub fn image_bytes(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The training values of image `i`, in [−1, 1].
    pub fn image(&self, i: usize) -> Vec<f32> {
        self.image_bytes(i).iter().map(|&b| unit(b)).collect()
    }
}

/// The most bytes of pixels an IDX file may promise (8 GiB; EMNIST's largest set holds 0.6 GiB). A gzipped file is
/// inflated only as far as its header promises, so neither a crafted header nor a gzip bomb allocates past this.
pub const MAX_IDX_BYTES: u64 = 8 << 30;

/// The most pixels one image may have (IDX rows × cols, or a PNG/JPEG's width × height): 2^26, 64 megapixels.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 26;

/// The most bytes the `image` crate may allocate to decode one PNG/JPEG (`image::Limits::max_alloc`): 512 MiB, room
/// for a 64-megapixel RGBA image at 8 bits plus the decoder's own buffers.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// An IDX file's bytes: header and payload, the payload no longer than the header promises. `header_len` is 16 for
/// images and 8 for labels; `payload` reads the header (given exactly `header_len` bytes) and returns how many bytes
/// must follow, or why the header is refused. The source, raw or gzipped, is read (inflated) only that far, and one
/// byte more is an error: neither a crafted header nor a gzip bomb makes it read or allocate past the promise.
fn read_idx(
    path: &Path,
    mut source: impl std::io::BufRead,
    header_len: usize,
    payload: impl Fn(&[u8]) -> Result<usize>,
) -> Result<Vec<u8>> {
    let gz = source
        .fill_buf()
        .map_err(|e| Error::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    if gz {
        read_promised(
            path,
            flate2::bufread::GzDecoder::new(source),
            gz,
            header_len,
            payload,
        )
    } else {
        read_promised(path, source, gz, header_len, payload)
    }
}

fn read_promised(
    path: &Path,
    mut reader: impl Read,
    gz: bool,
    header_len: usize,
    payload: impl Fn(&[u8]) -> Result<usize>,
) -> Result<Vec<u8>> {
    let failed = |e: std::io::Error| match gz {
        true => Error::data(path, format!("gzip data is corrupt: {e}")),
        false => Error::io(path, e),
    };
    let mut out = Vec::new();
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut out)
        .map_err(failed)?;
    if out.len() < header_len {
        return Ok(out); // The parser says what is missing.
    }
    let need = payload(&out)?;
    (&mut reader)
        .take(need as u64)
        .read_to_end(&mut out)
        .map_err(failed)?;
    let mut more = [0u8; 1];
    if out.len() == header_len + need && reader.read(&mut more).map_err(failed)? > 0 {
        return Err(Error::data(
            path,
            format!(
                "the data runs past the {need} bytes its header promises: damaged, or not an IDX file"
            ),
        ));
    }
    Ok(out)
}

/// A file, to be read by [`read_idx`] only as far as its header promises.
fn open_file(path: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(std::io::BufReader::new(file))
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Grayscale images from an IDX3 file: (count, rows, cols, bytes).
struct GrayImages {
    count: usize,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
}

/// The payload an IDX3 header promises, checked: no product overflows, and no image or file passes the limits.
fn idx_images_len(path: &Path, header: &[u8]) -> Result<usize> {
    if be_u32(header, 0) != 0x0803 {
        return Err(Error::data(
            path,
            "not an IDX image file (expected the magic number 0x00000803 of idx3-ubyte, as in MNIST)",
        ));
    }
    let (count, rows, cols) = (
        be_u32(header, 4) as u64,
        be_u32(header, 8) as u64,
        be_u32(header, 12) as u64,
    );
    if count == 0 || rows == 0 || cols == 0 {
        return Err(Error::data(
            path,
            format!("the file holds no images ({count} of {rows}×{cols})"),
        ));
    }
    // Each factor is below 2^32, so rows·cols cannot overflow u64; count·pixels can, hence checked_mul.
    let pixels = rows * cols;
    if pixels > MAX_IMAGE_PIXELS {
        return Err(Error::data(
            path,
            format!("the header promises {count} images of {rows}×{cols}, past the limit of {MAX_IMAGE_PIXELS} pixels per image (MAX_IMAGE_PIXELS): damaged, or not an IDX file"),
        ));
    }
    match count.checked_mul(pixels) {
        Some(need) if need <= MAX_IDX_BYTES => Ok(need as usize),
        _ => Err(Error::data(
            path,
            format!("the header promises {count} images of {rows}×{cols}, past the limit of {MAX_IDX_BYTES} bytes of pixels per file (MAX_IDX_BYTES): damaged, or not an IDX file"),
        )),
    }
}

fn parse_idx_images(path: &Path, source: impl std::io::BufRead) -> Result<GrayImages> {
    let data = read_idx(path, source, 16, |h| idx_images_len(path, h))?;
    if data.len() < 16 {
        return Err(Error::data(
            path,
            "not an IDX image file (expected the magic number 0x00000803 of idx3-ubyte, as in MNIST)",
        ));
    }
    let need = idx_images_len(path, &data)?;
    let (count, rows, cols) = (
        be_u32(&data, 4) as usize,
        be_u32(&data, 8) as usize,
        be_u32(&data, 12) as usize,
    );
    if data.len() - 16 < need {
        return Err(Error::data(
            path,
            format!("truncated: the header promises {count} images of {rows}×{cols} ({need} bytes), the file has {}", data.len() - 16),
        ));
    }
    Ok(GrayImages {
        count,
        rows,
        cols,
        bytes: data[16..16 + need].to_vec(),
    })
}

fn parse_idx_labels(path: &Path, source: impl std::io::BufRead) -> Result<Vec<u32>> {
    let magic = |h: &[u8]| {
        if be_u32(h, 0) != 0x0801 {
            return Err(Error::data(
                path,
                "not an IDX label file (expected the magic number 0x00000801 of idx1-ubyte)",
            ));
        }
        // One byte per label: below 2^32, far below MAX_IDX_BYTES.
        Ok(be_u32(h, 4) as usize)
    };
    let data = read_idx(path, source, 8, magic)?;
    if data.len() < 8 {
        return Err(Error::data(
            path,
            "not an IDX label file (expected the magic number 0x00000801 of idx1-ubyte)",
        ));
    }
    let count = magic(&data)?;
    if data.len() - 8 < count {
        return Err(Error::data(
            path,
            format!(
                "truncated: the header promises {count} labels, the file has {}",
                data.len() - 8
            ),
        ));
    }
    Ok(data[8..8 + count].iter().map(|&b| b as u32).collect())
}

/// The IDX file in `dir` whose name contains `kind` ("idx3" for images, "idx1" for labels), if exactly one.
fn find_idx(dir: &Path, kind: &str) -> Result<Option<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(kind))
        })
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(Error::data(
            dir,
            format!(
                "several {kind} files ({}); pass the one to use",
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn open_idx(images_path: &Path, fit: Fit) -> Result<Dataset> {
    let images = parse_idx_images(images_path, open_file(images_path)?)?;
    // The labels file sits beside the images: same name with idx3 → idx1 and images → labels, or the only idx1.
    let name = images_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sibling =
        images_path.with_file_name(name.replace("idx3", "idx1").replace("images", "labels"));
    let labels_path = if sibling != images_path && sibling.is_file() {
        Some(sibling)
    } else {
        images_path
            .parent()
            .map(|d| find_idx(d, "idx1"))
            .transpose()?
            .flatten()
    };
    let labels = match labels_path {
        Some(p) => {
            let labels = parse_idx_labels(&p, open_file(&p)?)?;
            if labels.len() != images.count {
                return Err(Error::data(
                    &p,
                    format!("{} labels for {} images", labels.len(), images.count),
                ));
            }
            Some(labels)
        }
        None => None,
    };
    let description = format!("{} ({} images)", images_path.display(), images.count);
    from_gray(images, labels, fit, description)
}

fn from_gray(
    images: GrayImages,
    labels: Option<Vec<u32>>,
    fit: Fit,
    description: String,
) -> Result<Dataset> {
    let class_names = match &labels {
        Some(l) => (0..=l.iter().copied().max().unwrap_or(0))
            .map(|c| c.to_string())
            .collect(),
        None => Vec::new(),
    };
    let plane = images.rows * images.cols;
    let pixels = if fit.channels == 1 && (images.rows, images.cols) == (fit.size, fit.size) {
        // Already what the model wants: the bytes are the pixels.
        images.bytes
    } else {
        let mut pixels = Vec::with_capacity(images.count * fit.channels * fit.size * fit.size);
        for raw in images.bytes.chunks_exact(plane) {
            let gray =
                image::GrayImage::from_raw(images.cols as u32, images.rows as u32, raw.to_vec())
                    .expect("buffer size matches dimensions");
            push_pixels(&mut pixels, &image::DynamicImage::ImageLuma8(gray), fit);
        }
        pixels
    };
    Ok(Dataset {
        pixels: pixels.into(),
        len: images.count,
        channels: fit.channels,
        size: fit.size,
        labels,
        class_names,
        description,
        notes: Vec::new(),
    })
}

/// Resizes the shorter side to `fit.size` and centre-crops (a no-op at the right size), composites alpha onto the
/// background, converts to the model's channels, and appends the planes as bytes (rounded to nearest: a change of
/// at most half a level, 1/255 of the range, where compositing or luma made a fraction).
fn push_pixels(out: &mut Vec<u8>, img: &image::DynamicImage, fit: Fit) {
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    let s = fit.size as u32;
    let fitted = if (w, h) == (s, s) {
        rgba
    } else {
        let scale = s as f64 / w.min(h) as f64;
        let (nw, nh) = (
            ((w as f64 * scale).round() as u32).max(s),
            ((h as f64 * scale).round() as u32).max(s),
        );
        let resized = image::imageops::resize(&rgba, nw, nh, image::imageops::FilterType::Triangle);
        image::imageops::crop_imm(&resized, (nw - s) / 2, (nh - s) / 2, s, s).to_image()
    };
    let bg = fit.background.map(|c| c as f32);
    let mut planes = vec![Vec::with_capacity((s * s) as usize); fit.channels];
    for p in fitted.pixels() {
        let alpha = p[3] as f32 / 255.0;
        let rgb: [f32; 3] = std::array::from_fn(|k| p[k] as f32 * alpha + bg[k] * (1.0 - alpha));
        if fit.channels == 1 {
            // ITU-R BT.601 luma, as image's to_luma and PIL's convert("L") use.
            planes[0].push(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]);
        } else {
            for (k, plane) in planes.iter_mut().enumerate() {
                plane.push(rgb[k]);
            }
        }
    }
    for plane in planes {
        out.extend(plane.into_iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
    }
}

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg"))
}

/// The image files of a folder in order, with their labels and the class names where it has one subfolder per
/// class (torchvision's ImageFolder), else unlabelled.
type Listing = (Vec<PathBuf>, Option<Vec<u32>>, Vec<String>);

/// A folder's entries in order, without the hidden ones (a name starting with '.': `.DS_Store`, macOS's `._photo.jpg`
/// resource files, `.ipynb_checkpoints`, `.git`), which are named in `hidden` instead.
fn sorted_entries(dir: &Path, hidden: &mut Vec<String>) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let is_hidden = |p: &PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    };
    hidden.extend(
        entries
            .iter()
            .filter(|p| is_hidden(p))
            .map(|p| p.display().to_string()),
    );
    entries.retain(|p| !is_hidden(p));
    Ok(entries)
}

fn list_folder(dir: &Path, notes: &mut Vec<String>) -> Result<Listing> {
    let mut hidden = Vec::new();
    let listing = list_entries(dir, &mut hidden)?;
    if !hidden.is_empty() {
        notes.push(format!(
            "note: skipped {} hidden file{} or folder{} (names starting with '.'): {}",
            hidden.len(),
            if hidden.len() == 1 { "" } else { "s" },
            if hidden.len() == 1 { "" } else { "s" },
            some_of(&hidden)
        ));
    }
    Ok(listing)
}

fn list_entries(dir: &Path, hidden: &mut Vec<String>) -> Result<Listing> {
    let entries = sorted_entries(dir, hidden)?;
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    if subdirs.is_empty() {
        let files = entries.into_iter().filter(|p| p.is_file()).collect();
        return Ok((files, None, Vec::new()));
    }
    // With class subfolders, an image beside them belongs to no class: refused by name rather than dropped.
    let loose: Vec<String> = entries
        .iter()
        .filter(|p| p.is_file() && is_image_name(p))
        .map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string())
        .collect();
    if !loose.is_empty() {
        return Err(Error::data(
            dir,
            format!(
                "{} image{} at the top of a folder with class subfolders ({}): each subfolder is a class, so \
                 these belong to none. Move them into a class subfolder, or remove them",
                loose.len(),
                if loose.len() == 1 { "" } else { "s" },
                some_of(&loose),
            ),
        ));
    }
    let (mut files, mut labels, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for (class, sub) in subdirs.iter().enumerate() {
        names.push(
            sub.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        for f in sorted_entries(sub, hidden)?
            .into_iter()
            .filter(|p| p.is_file())
        {
            labels.push(class as u32);
            files.push(f);
        }
    }
    Ok((files, Some(labels), names))
}

/// The classes of a folder without the subfolders that gave no usable image (empty, or every file skipped): a
/// class with no images would be a label the model never sees, yet one `sample --class` offers. The others keep
/// their order and are numbered again; the dropped ones are named in a note.
fn drop_empty_classes(
    labels: Option<Vec<u32>>,
    names: Vec<String>,
    notes: &mut Vec<String>,
) -> (Option<Vec<u32>>, Vec<String>) {
    let Some(labels) = labels else {
        return (None, names);
    };
    let mut count = vec![0usize; names.len()];
    for &l in &labels {
        count[l as usize] += 1;
    }
    let empty: Vec<String> = (0..names.len())
        .filter(|&c| count[c] == 0)
        .map(|c| names[c].clone())
        .collect();
    if empty.is_empty() {
        return (Some(labels), names);
    }
    notes.push(format!(
        "note: {} class folder{} without usable images left out (a class needs images): {}",
        empty.len(),
        if empty.len() == 1 { "" } else { "s" },
        some_of(&empty)
    ));
    let mut renumber = vec![0u32; names.len()];
    let mut kept = Vec::new();
    for (c, name) in names.into_iter().enumerate() {
        renumber[c] = kept.len() as u32;
        if count[c] > 0 {
            kept.push(name);
        }
    }
    let labels = labels.into_iter().map(|l| renumber[l as usize]).collect();
    (Some(labels), kept)
}

/// The first five of `items`, and how many more.
fn some_of(items: &[String]) -> String {
    let shown = items.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    match items.len() {
        n if n > 5 => format!("{shown} and {} more", n - 5),
        _ => shown,
    }
}

/// Refuses a source none of whose `total` files could be used; notes the skipped ones otherwise.
fn check_kept(
    source: &Path,
    decoded: &Decoded,
    total: usize,
    notes: &mut Vec<String>,
) -> Result<()> {
    let skipped = &decoded.skipped;
    if decoded.kept.is_empty() {
        let why = match skipped.is_empty() {
            true => String::new(),
            false => format!(". Skipped: {}", some_of(skipped)),
        };
        return Err(Error::data(
            source,
            format!("no usable images: 0 of {total} files are decodable .png/.jpg images{why}"),
        ));
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "warning: {}: skipped {} of {total} files, e.g. {}",
            source.display(),
            skipped.len(),
            skipped[0]
        ));
    }
    Ok(())
}

fn open_folder(dir: &Path, fit: Fit, cache: &cache::Policy) -> Result<Dataset> {
    let mut notes = Vec::new();
    let (files, labels, class_names) = list_folder(dir, &mut notes)?;
    let key = cache.key(dir, &files, fit);
    let decoded = match key.as_ref().and_then(|k| Some((k, k.load()?))) {
        Some((key, hit)) => {
            notes.push(format!(
                "using the decoded images cached in {} ({} images)",
                key.path().display(),
                hit.kept.len()
            ));
            hit
        }
        None => {
            let decoded = decode_all(dir, &files, fit, &mut notes);
            if let Some(key) = &key {
                if let Err(e) = key.store(&decoded) {
                    notes.push(format!(
                        "note: could not cache the decoded images ({e}); the next run decodes again"
                    ));
                }
            }
            decoded
        }
    };
    check_kept(dir, &decoded, files.len(), &mut notes)?;
    let len = decoded.kept.len();
    let labels = labels.map(|l| decoded.kept.iter().map(|&i| l[i as usize]).collect());
    let (labels, class_names) = drop_empty_classes(labels, class_names, &mut notes);
    Ok(Dataset {
        labels,
        pixels: decoded.pixels.into(),
        len,
        channels: fit.channels,
        size: fit.size,
        class_names,
        description: format!("{} ({len} images)", dir.display()),
        notes,
    })
}

impl Dataset {
    /// A dataset of encoded PNG/JPEG images held in memory (files dropped on a page: nothing touches a disk),
    /// decoded and fitted as [`Dataset::open`] fits a folder's, in order, unlabelled; `source` names them in
    /// messages and in the checkpoint's record.
    pub fn from_encoded(files: &[(&str, &[u8])], fit: Fit, source: &str) -> Result<Dataset> {
        let mut decoded = Decoded {
            pixels: Vec::new(),
            kept: Vec::new(),
            skipped: Vec::new(),
        };
        for (i, (name, bytes)) in files.iter().enumerate() {
            match fit_encoded(name, bytes, fit) {
                Ok(pixels) => {
                    decoded.pixels.extend(pixels);
                    decoded.kept.push(i as u32);
                }
                Err(why) => decoded.skipped.push(why),
            }
        }
        let mut notes = Vec::new();
        check_kept(Path::new(source), &decoded, files.len(), &mut notes)?;
        let len = decoded.kept.len();
        Ok(Dataset {
            pixels: decoded.pixels.into(),
            len,
            channels: fit.channels,
            size: fit.size,
            labels: None,
            class_names: Vec::new(),
            description: format!("{source} ({len} images)"),
            notes,
        })
    }
}

/// The images of a folder, decoded and fitted: what the cache holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The kept images' bytes, one after another in file order.
    pub pixels: Vec<u8>,
    /// Which files they came from (indices into the sorted file list).
    pub kept: Vec<u32>,
    /// Why the others were skipped, one line each.
    pub skipped: Vec<String>,
}

/// The decode progress bar: indicatif's with the command line's crates (the `cli` feature), else none.
#[cfg(feature = "cli")]
fn decode_bar(len: usize) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "decoding {pos}/{len} images [{bar:30}] {per_sec} ETA {eta}",
        )
        .expect("template is valid"),
    )
}

#[cfg(not(feature = "cli"))]
fn decode_bar(_len: usize) -> NoBar {
    NoBar
}

#[cfg(not(feature = "cli"))]
struct NoBar;

#[cfg(not(feature = "cli"))]
impl NoBar {
    fn inc(&self, _by: u64) {}
    fn finish_and_clear(&self) {}
}

/// Threads that decode: every core, but one in a browser (wasm32 has no threads to spawn).
fn decode_workers() -> usize {
    match cfg!(target_arch = "wasm32") {
        true => 1,
        false => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Decodes `files` on every core, in file order, with a progress bar on a terminal and the rate in `notes`.
fn decode_all(dir: &Path, files: &[PathBuf], fit: Fit, notes: &mut Vec<String>) -> Decoded {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CHUNK: usize = 64;
    let started = crate::time::Instant::now();
    let bar = decode_bar(files.len());
    let next = AtomicUsize::new(0);
    let workers = decode_workers();
    // Each worker claims chunks of files in turn; results come back tagged by index and are put in order.
    let work = || {
        let mut out = Vec::new();
        loop {
            let start = next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= files.len() {
                return out;
            }
            for (i, f) in files.iter().enumerate().skip(start).take(CHUNK) {
                out.push((i, decode_one(dir, f, fit)));
            }
            bar.inc(CHUNK.min(files.len() - start) as u64);
        }
    };
    let mut results: Vec<(usize, std::result::Result<Vec<u8>, String>)> = match workers {
        1 => work(),
        _ => std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a decode worker panicked"))
                .collect()
        }),
    };
    bar.finish_and_clear();
    results.sort_by_key(|r| r.0);
    let mut decoded = Decoded {
        pixels: Vec::new(),
        kept: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, r) in results {
        match r {
            Ok(bytes) => {
                decoded.pixels.extend(bytes);
                decoded.kept.push(i as u32);
            }
            Err(why) => decoded.skipped.push(why),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if files.len() >= 1000 {
        notes.push(format!(
            "decoded {} images in {seconds:.1} s ({:.0} images/s on {workers} threads)",
            files.len(),
            files.len() as f64 / seconds.max(1e-9)
        ));
    }
    decoded
}

/// One file's fitted bytes, or why it was skipped.
fn decode_one(dir: &Path, f: &Path, fit: Fit) -> std::result::Result<Vec<u8>, String> {
    let name = f.strip_prefix(dir).unwrap_or(f).display().to_string();
    if !is_image_name(f) {
        return Err(format!("{name} (not a .png/.jpg/.jpeg file)"));
    }
    let bytes = std::fs::read(f).map_err(|e| format!("{name} (unreadable: {e})"))?;
    fit_encoded(&name, &bytes, fit)
}

/// One encoded image decoded and fitted, or why not ("name (decode failed: …)").
fn fit_encoded(name: &str, bytes: &[u8], fit: Fit) -> std::result::Result<Vec<u8>, String> {
    // A decoder that panics on a damaged file skips that file like any other decode failure.
    let img = std::panic::catch_unwind(|| decode_image(bytes))
        .unwrap_or_else(|_| Err("the decoder crashed on it".into()))
        .map_err(|e| format!("{name} (decode failed: {e})"))?;
    let mut out = Vec::with_capacity(fit.channels * fit.size * fit.size);
    push_pixels(&mut out, &img, fit);
    Ok(out)
}

/// Decodes one PNG or JPEG (told apart by content) with the same strictness for both: at most
/// [`MAX_IMAGE_PIXELS`] pixels and [`MAX_DECODE_BYTES`] of decoder memory, and a JPEG must be whole. The JPEG
/// decoder fills missing blocks with grey rather than failing, so a JPEG cut short is caught by its end-of-image
/// marker instead, as a PNG cut short is caught by its decoder. The image comes upright, as a viewer shows it: its
/// EXIF orientation (a phone's portrait photo is stored sideways with a tag saying so) is applied, before any resize
/// or crop; an unreadable tag counts as none.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<image::DynamicImage, String> {
    use image::ImageDecoder;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    match reader.format() {
        Some(image::ImageFormat::Png) => {}
        Some(image::ImageFormat::Jpeg) if jpeg_is_whole(bytes) => {}
        Some(image::ImageFormat::Jpeg) => {
            return Err("truncated JPEG: no end-of-image marker (FF D9) after its last scan".into())
        }
        _ => return Err("the data is neither PNG nor JPEG".into()),
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    if w as u64 * h as u64 > MAX_IMAGE_PIXELS {
        return Err(format!(
            "{w}×{h} pixels, past the limit of {MAX_IMAGE_PIXELS} pixels per image (MAX_IMAGE_PIXELS)"
        ));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// Whether a JPEG's last end-of-image marker (FF D9) follows its last start-of-scan marker (FF DA). Entropy-coded
/// data never holds FF followed by a marker byte, so a file cut short inside or after its last scan has none; an
/// EXIF thumbnail's own markers come before the main image's scan and do not count.
fn jpeg_is_whole(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}
