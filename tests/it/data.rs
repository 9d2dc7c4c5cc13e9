//! Dataset loading: the built-in MNIST subset, IDX files, image folders, and the errors for bad input.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use diffuse::data::{Dataset, Fit};

const GRAY28: Fit = Fit {
    channels: 1,
    size: 28,
    background: [255, 255, 255],
};

/// A fresh, empty scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0x0803, count, rows, cols] {
        out.extend_from_slice(&u32::to_be_bytes(v));
    }
    out.extend_from_slice(pixels);
    out
}

#[test]
fn builtin_mnist_loads_ten_thousand_labelled_digits_in_range() {
    let data = Dataset::builtin(GRAY28).unwrap();
    assert_eq!((data.len, data.channels, data.size), (10_000, 1, 28));
    assert_eq!(data.pixels.len(), 10_000 * 28 * 28);
    // MNIST is mostly black background (byte 0, value −1) with white strokes (up to 255, value +1).
    let mean = data.pixels.iter().map(|&v| v as f64).sum::<f64>() / data.pixels.len() as f64;
    assert!(mean < 0.2 * 255.0, "mean byte {mean}");
    assert_eq!(data.pixels.iter().max(), Some(&255));
    let labels = data.labels.as_ref().unwrap();
    assert!(labels.iter().all(|&l| l < 10));
    assert_eq!(data.class_names.len(), 10);
    for class in 0..10 {
        let count = labels.iter().filter(|&&l| l == class).count();
        assert!((800..1200).contains(&count), "class {class}: {count}");
    }
}

#[test]
fn mnist_resizes_and_replicates_channels_for_an_rgb_model() {
    let data = Dataset::builtin(Fit {
        channels: 3,
        size: 32,
        background: [0, 0, 0],
    })
    .unwrap();
    assert_eq!((data.channels, data.size), (3, 32));
    let img = data.image(0);
    let plane = 32 * 32;
    assert_eq!(
        img[..plane],
        img[plane..2 * plane],
        "gray replicated into R and G"
    );
}

#[test]
fn idx_files_load_raw_or_gzipped_with_labels_found_beside_them() {
    let dir = scratch("idx");
    let pixels: Vec<u8> = (0..2 * 4 * 4).map(|i| (i * 8) as u8).collect();
    std::fs::write(
        dir.join("train-images-idx3-ubyte"),
        idx_images(2, 4, 4, &pixels),
    )
    .unwrap();
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 2];
    labels.extend_from_slice(&[7, 3]);
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &labels).unwrap();
    let fit = Fit {
        channels: 1,
        size: 4,
        background: [0; 3],
    };
    for path in [dir.clone(), dir.join("train-images-idx3-ubyte")] {
        let data = Dataset::open(&path, fit).unwrap();
        assert_eq!(data.len, 2);
        assert_eq!(data.labels.as_deref(), Some(&[7, 3][..]));
        assert_eq!(data.pixels[1], 8);
        assert_eq!(data.image(0)[1], (8.0 / 127.5 - 1.0) as f32);
    }
}

#[test]
fn truncated_or_foreign_idx_files_are_clear_errors() {
    let dir = scratch("bad-idx");
    let truncated = dir.join("images-idx3-ubyte");
    std::fs::write(&truncated, idx_images(5, 28, 28, &[0; 100])).unwrap();
    let err = Dataset::open(&truncated, GRAY28).unwrap_err().to_string();
    assert!(
        err.contains("truncated") && err.contains("5 images"),
        "{err}"
    );
    let foreign = dir.join("notes-idx3.txt");
    std::fs::write(&foreign, b"hello, world: not an IDX file at all").unwrap();
    let err = Dataset::open(&foreign, GRAY28).unwrap_err().to_string();
    assert!(err.contains("0x00000803"), "{err}");
    let corrupt_gz = dir.join("broken-idx3.gz");
    std::fs::write(&corrupt_gz, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let err = Dataset::open(&corrupt_gz, GRAY28).unwrap_err().to_string();
    assert!(err.contains("gzip"), "{err}");
    let err = Dataset::open(&dir.join("missing"), GRAY28)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn image_folders_composite_transparency_resize_and_crop() {
    let dir = scratch("folder");
    // 8×4 RGBA: left half opaque red, right half fully transparent → composited onto white.
    let img = image::RgbaImage::from_fn(8, 4, |x, _| {
        if x < 4 {
            image::Rgba([255, 0, 0, 255])
        } else {
            image::Rgba([0, 0, 0, 0])
        }
    });
    img.save(dir.join("a.png")).unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb([0, 0, 255]))
        .save(dir.join("b.jpg"))
        .unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let fit = Fit {
        channels: 3,
        size: 4,
        background: [255, 255, 255],
    };
    let data = Dataset::open(&dir, fit).unwrap();
    assert_eq!(data.len, 2, "the .txt file is skipped");
    assert!(data.labels.is_none());
    // a.png: 8×4 resized to 8×4 (shorter side already 4), centre crop keeps columns 2..6: red then white.
    let a = data.image(0);
    let (r, g) = (&a[..16], &a[16..32]);
    assert_eq!((r[0], g[0]), (1.0, -1.0), "column 0 of the crop is red");
    assert_eq!(
        (r[3], g[3]),
        (1.0, 1.0),
        "column 3 is transparent, composited onto white"
    );
}

#[test]
fn class_subfolders_become_labels() {
    let dir = scratch("classes");
    for (class, shade) in [("cats", 10u8), ("dogs", 200)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..2 {
            image::GrayImage::from_pixel(6, 6, image::Luma([shade]))
                .save(dir.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let data = Dataset::open(
        &dir,
        Fit {
            channels: 1,
            size: 6,
            background: [0; 3],
        },
    )
    .unwrap();
    assert_eq!(data.class_names, ["cats", "dogs"]);
    assert_eq!(data.labels.as_deref(), Some(&[0, 0, 1, 1][..]));
}

#[test]
fn a_folder_without_usable_images_says_what_was_skipped() {
    let dir = scratch("empty");
    let err = Dataset::open(&dir, GRAY28).unwrap_err().to_string();
    assert!(
        err.contains("no usable images") && err.contains("0 of 0"),
        "{err}"
    );
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    std::fs::write(dir.join("cat.png"), b"not really a png").unwrap();
    let err = Dataset::open(&dir, GRAY28).unwrap_err().to_string();
    assert!(
        err.contains("0 of 2")
            && err.contains("notes.txt (not a .png")
            && err.contains("cat.png (decode failed"),
        "{err}"
    );
}

#[test]
fn a_decoded_folder_is_cached_and_the_cache_is_dropped_when_the_folder_changes() {
    use diffuse::data::cache::Policy;
    let dir = scratch("cached");
    let cache = scratch("cache-dir");
    for (name, shade) in [("a.png", 10u8), ("b.png", 200)] {
        image::GrayImage::from_pixel(6, 6, image::Luma([shade]))
            .save(dir.join(name))
            .unwrap();
    }
    let policy = Policy {
        dir: Some(cache.clone()),
        min_files: 1,
    };
    let fit = Fit {
        channels: 1,
        size: 6,
        background: [0; 3],
    };
    let first = Dataset::open_cached(&dir, fit, &policy).unwrap();
    assert_eq!(first.pixels[0], 10);
    let files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one cache file, no temporary left: {files:?}"
    );
    // Mark the cached copy, so that a second open shows where its pixels came from.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() - 72;
    assert_eq!(bytes[at], 10, "the first image's first byte");
    bytes[at] = 11;
    std::fs::write(&files[0], &bytes).unwrap();
    let second = Dataset::open_cached(&dir, fit, &policy).unwrap();
    assert_eq!(second.pixels[0], 11, "a second open reads the cache");
    assert_eq!(second.pixels[1..], first.pixels[1..]);
    // A changed folder misses: the images are decoded again and the cache rewritten.
    image::GrayImage::from_pixel(7, 7, image::Luma([50u8]))
        .save(dir.join("a.png"))
        .unwrap();
    let third = Dataset::open_cached(&dir, fit, &policy).unwrap();
    assert_eq!(third.pixels[0], 50);
    // A truncated cache file is not trusted.
    let path = &files[0];
    let whole = std::fs::read(path).unwrap();
    std::fs::write(path, &whole[..whole.len() - 1]).unwrap();
    let fourth = Dataset::open_cached(&dir, fit, &policy).unwrap();
    assert_eq!(fourth.pixels, third.pixels);
    // Below the policy's size the cache is not used at all.
    let small = Policy {
        dir: Some(scratch("cache-unused")),
        min_files: 3,
    };
    Dataset::open_cached(&dir, fit, &small).unwrap();
    assert_eq!(std::fs::read_dir(small.dir.unwrap()).unwrap().count(), 0);
}

/// Runs the `diffuse` binary (as tests/it/cli.rs does): (success, stderr).
static RUNS: AtomicUsize = AtomicUsize::new(0);

/// The binary, run in a scratch folder of its own: a `train` without --out writes to runs/<preset> there, not in the
/// repository (where a newcomer's run may already hold one, which train refuses before it reads the data).
fn diffuse(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .current_dir(scratch(&format!(
            "cwd-{}",
            RUNS.fetch_add(1, Ordering::Relaxed)
        )))
        .env("DIFFUSE_CACHE_DIR", "off")
        .output()
        .expect("run diffuse");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn an_idx_header_promising_sizes_past_the_limits_is_refused_by_name() {
    let dir = scratch("idx-huge");
    // 65,536 images of 2^24 × 2^24: count·rows·cols is 2^64, which wrapped to 0 before sizes were checked.
    let huge = idx_images(1 << 16, 1 << 24, 1 << 24, &[]);
    // 2^32 − 1 images of 4096 × 4096: each image is within the limit, the file is not.
    let many = idx_images(u32::MAX, 4096, 4096, &[0; 64]);
    for (name, bytes, says) in [
        ("huge-idx3-ubyte", huge.clone(), "MAX_IMAGE_PIXELS"),
        ("huge-idx3-ubyte.gz", gzip(&huge), "MAX_IMAGE_PIXELS"),
        ("many-idx3-ubyte", many.clone(), "MAX_IDX_BYTES"),
        ("many-idx3-ubyte.gz", gzip(&many), "MAX_IDX_BYTES"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = Dataset::open(&path, GRAY28).unwrap_err().to_string();
        assert!(err.contains(says) && err.contains(name), "{name}: {err}");
    }
    // Where the user meets it: `diffuse train --data`.
    let path = dir.join("huge-idx3-ubyte");
    let (ok, stderr) = diffuse(&["train", "--data", path.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("65536 images of 16777216×16777216"),
        "{stderr}"
    );
}

#[test]
fn gzip_is_inflated_no_further_than_the_idx_header_promises() {
    let dir = scratch("idx-bomb");
    // Two 4×4 images, then 64 MiB of zeros: a gzip bomb of about 64 KiB.
    let mut bytes = idx_images(2, 4, 4, &[7; 32]);
    bytes.resize(bytes.len() + (64 << 20), 0);
    let path = dir.join("bomb-idx3-ubyte.gz");
    let packed = gzip(&bytes);
    assert!(packed.len() < 1 << 20, "{}", packed.len());
    std::fs::write(&path, packed).unwrap();
    let fit = Fit {
        channels: 1,
        size: 4,
        background: [0; 3],
    };
    let err = Dataset::open(&path, fit).unwrap_err().to_string();
    assert!(
        err.contains("runs past the 32 bytes its header promises"),
        "{err}"
    );
    // The same trailing data in a raw file is refused the same way.
    bytes.truncate(16 + 32 + 1);
    let raw = dir.join("long-idx3-ubyte");
    std::fs::write(&raw, &bytes).unwrap();
    let err = Dataset::open(&raw, fit).unwrap_err().to_string();
    assert!(err.contains("runs past"), "{err}");
    // Exactly what the header promises loads.
    bytes.truncate(16 + 32);
    std::fs::write(&raw, &bytes).unwrap();
    assert_eq!(Dataset::open(&raw, fit).unwrap().len, 2);
}

/// A whole 64×64 JPEG, and the same file cut short where the image crate still decodes it without an error
/// (it fills the missing blocks with grey).
fn whole_and_truncated_jpeg() -> (Vec<u8>, Vec<u8>) {
    let mut rng = diffuse::model::SplitMix64::new(7);
    let img = image::RgbImage::from_fn(64, 64, |_, _| {
        let v = rng.next_u64();
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut whole = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut whole),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let cut = (whole.len() / 2..whole.len() * 4 / 5)
        .rev()
        .map(|n| whole[..n].to_vec())
        .find(|cut| image::load_from_memory(cut).is_ok())
        .expect("the image crate decodes some truncated JPEG without an error: the reason for the marker check");
    (whole, cut)
}

#[test]
fn a_truncated_jpeg_is_skipped_like_a_truncated_png() {
    let dir = scratch("truncated-jpeg");
    let (whole, cut) = whole_and_truncated_jpeg();
    std::fs::write(dir.join("a.jpg"), &whole).unwrap();
    std::fs::write(dir.join("b.jpg"), &cut).unwrap();
    let mut png = Vec::new();
    image::GrayImage::from_pixel(16, 16, image::Luma([9u8]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(dir.join("c.png"), &png[..png.len() - 20]).unwrap();
    let fit = Fit {
        channels: 3,
        size: 16,
        background: [0; 3],
    };
    let data = Dataset::open(&dir, fit).unwrap();
    assert_eq!(data.len, 1, "only a.jpg is whole");
    // A folder of nothing but the cut JPEG says why, at the CLI.
    std::fs::remove_file(dir.join("a.jpg")).unwrap();
    std::fs::remove_file(dir.join("c.png")).unwrap();
    let err = Dataset::open(&dir, fit).unwrap_err().to_string();
    assert!(
        err.contains("b.jpg (decode failed: truncated JPEG"),
        "{err}"
    );
    let (ok, stderr) = diffuse(&["train", "--data", dir.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("b.jpg (decode failed: truncated JPEG"),
        "{stderr}"
    );
}

#[test]
fn images_beside_class_subfolders_are_refused_by_name() {
    let dir = scratch("mixed");
    let gray = image::GrayImage::from_pixel(6, 6, image::Luma([80u8]));
    for class in ["cats", "dogs"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        gray.save(dir.join(class).join("0.png")).unwrap();
    }
    gray.save(dir.join("stray.png")).unwrap();
    std::fs::write(dir.join("README.txt"), "notes, not an image").unwrap();
    let fit = Fit {
        channels: 1,
        size: 6,
        background: [0; 3],
    };
    let err = Dataset::open(&dir, fit).unwrap_err().to_string();
    assert!(
        err.contains("1 image at the top of a folder with class subfolders (stray.png)")
            && !err.contains("README"),
        "{err}"
    );
    let (ok, stderr) = diffuse(&["train", "--data", dir.to_str().unwrap()]);
    assert!(!ok && stderr.contains("stray.png"), "{stderr}");
    // Moved into a class, it loads.
    std::fs::rename(dir.join("stray.png"), dir.join("cats/stray.png")).unwrap();
    assert_eq!(
        Dataset::open(&dir, fit).unwrap().labels.as_deref(),
        Some(&[0, 0, 1][..])
    );
}

#[test]
fn encoded_images_in_memory_fit_as_a_folders_do_and_bad_ones_are_named() {
    let dir = scratch("encoded");
    let img = image::RgbaImage::from_fn(8, 4, |x, _| match x < 4 {
        true => image::Rgba([255, 0, 0, 255]),
        false => image::Rgba([0, 0, 0, 0]),
    });
    img.save(dir.join("a.png")).unwrap();
    image::RgbImage::from_pixel(4, 4, image::Rgb([0, 0, 255]))
        .save(dir.join("b.png"))
        .unwrap();
    let fit = Fit {
        channels: 3,
        size: 4,
        background: [255, 255, 255],
    };
    let from_disk = Dataset::open(&dir, fit).unwrap();
    let (a, b) = (
        std::fs::read(dir.join("a.png")).unwrap(),
        std::fs::read(dir.join("b.png")).unwrap(),
    );
    let files: [(&str, &[u8]); 3] = [("a.png", &a), ("notes.png", b"not an image"), ("b.png", &b)];
    let dropped = Dataset::from_encoded(&files, fit, "dropped files").unwrap();
    assert_eq!(dropped.len, 2);
    assert_eq!(
        dropped.pixels, from_disk.pixels,
        "the same bytes as the folder's"
    );
    assert_eq!(dropped.description, "dropped files (2 images)");
    assert!(
        dropped
            .notes
            .iter()
            .any(|n| n.contains("skipped 1 of 3") && n.contains("notes.png")),
        "{:?}",
        dropped.notes
    );
    let none = Dataset::from_encoded(&files[1..2], fit, "dropped files").unwrap_err();
    assert!(
        none.to_string().contains("no usable images") && none.to_string().contains("notes.png"),
        "{none}"
    );
}

/// A 32×16 grayscale JPEG, its left half black and its right half white, with an EXIF APP1 segment whose one IFD
/// entry is the orientation tag (0x0112, a SHORT): 1 = as stored, 6 = shown turned 90° clockwise (what a phone
/// writes for a portrait photo taken upright).
fn jpeg_with_orientation(orientation: u16) -> Vec<u8> {
    let img = image::GrayImage::from_fn(32, 16, |x, _| image::Luma([if x < 16 { 0 } else { 255 }]));
    let mut plain = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut plain),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    // Big-endian TIFF: header, then IFD0 at offset 8 with one entry and no next IFD.
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01".to_vec();
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend(tiff);
    let mut jpeg = plain[..2].to_vec(); // SOI
    jpeg.extend([0xFF, 0xE1]);
    jpeg.extend((app1.len() as u16 + 2).to_be_bytes());
    jpeg.extend(app1);
    jpeg.extend(&plain[2..]);
    jpeg
}

/// Images come upright, as a viewer shows them: the EXIF orientation is applied before the fit's resize and crop,
/// so a portrait photo stored sideways trains as a portrait (not turned, and not cropped along the wrong axis).
#[test]
fn jpeg_orientation_tags_are_applied_before_the_fit() {
    let stored = diffuse::data::decode_image(&jpeg_with_orientation(1)).unwrap();
    assert_eq!((stored.width(), stored.height()), (32, 16));
    let turned = diffuse::data::decode_image(&jpeg_with_orientation(6)).unwrap();
    assert_eq!(
        (turned.width(), turned.height()),
        (16, 32),
        "the tag was ignored"
    );
    // Turned 90° clockwise, the stored left half (black) is the top half.
    let luma = turned.to_luma8();
    let mean = |rows: std::ops::Range<u32>| {
        let n = rows.len() as f64 * 16.0;
        rows.flat_map(|y| (0..16).map(move |x| (x, y)))
            .map(|(x, y)| luma.get_pixel(x, y)[0] as f64)
            .sum::<f64>()
            / n
    };
    assert!(
        mean(0..14) < 30.0 && mean(18..32) > 225.0,
        "top {} bottom {}",
        mean(0..14),
        mean(18..32)
    );

    // Fitted as a dataset fits it: a square centre crop of the upright image, so the crop keeps the middle rows
    // (half black above, half white below), where the stored image's crop would keep the middle columns (left
    // black, right white).
    let fit = Fit {
        channels: 1,
        size: 8,
        background: [255; 3],
    };
    let portrait = jpeg_with_orientation(6);
    let data = Dataset::from_encoded(&[("portrait.jpg", &portrait)], fit, "a test").unwrap();
    let pixels = data.image_bytes(0);
    let (top, bottom) = (
        pixels[..8].iter().map(|&v| v as u32).sum::<u32>(),
        pixels[56..].iter().map(|&v| v as u32).sum::<u32>(),
    );
    assert!(
        top < 8 * 40 && bottom > 8 * 215,
        "top row {:?}, bottom row {:?}",
        &pixels[..8],
        &pixels[56..]
    );
}

/// Hidden entries (names starting with '.': a notebook's checkpoints folder, macOS's `._x.png` files) are neither
/// classes nor images, and a class folder without a usable image is no class: each is left out and said in a note,
/// and the remaining classes keep their order, numbered again. A flat folder beside a hidden folder stays flat.
#[test]
fn hidden_entries_and_class_folders_without_images_are_left_out_and_said() {
    let fit = Fit {
        channels: 1,
        size: 6,
        background: [0; 3],
    };
    let png = |path: std::path::PathBuf| {
        image::GrayImage::from_pixel(6, 6, image::Luma([9]))
            .save(path)
            .unwrap()
    };
    let dir = scratch("hidden-and-empty");
    for class in [
        "ants",
        "bees",
        "cats",
        "empty",
        "broken",
        ".ipynb_checkpoints",
    ] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
    }
    png(dir.join("ants/1.png"));
    png(dir.join("cats/1.png"));
    png(dir.join("cats/2.png"));
    png(dir.join(".ipynb_checkpoints/1.png"));
    std::fs::write(dir.join("bees/._1.png"), b"AppleDouble").unwrap();
    std::fs::write(dir.join("broken/1.png"), b"not a png").unwrap();
    std::fs::write(dir.join(".DS_Store"), b"x").unwrap();
    let data = Dataset::open(&dir, fit).unwrap();
    assert_eq!(data.class_names, ["ants", "cats"]);
    assert_eq!(data.labels.as_deref(), Some(&[0, 1, 1][..]));
    let notes = data.notes.join("\n");
    for word in [
        ".ipynb_checkpoints",
        ".DS_Store",
        "._1.png",
        "bees",
        "empty",
        "broken",
    ] {
        assert!(notes.contains(word), "{word} not in {notes}");
    }

    let flat = scratch("flat-beside-hidden");
    std::fs::create_dir_all(flat.join(".git")).unwrap();
    png(flat.join("a.png"));
    let data = Dataset::open(&flat, fit).unwrap();
    assert_eq!((data.len, data.labels.is_none()), (1, true));
}
