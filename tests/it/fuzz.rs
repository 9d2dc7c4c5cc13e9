//! Fuzzed loaders: a valid IDX file (raw and gzipped), PNG and JPEG folders, an `.npy` file and a checkpoint,
//! each mutated thousands of times (cut short, bytes flipped, header fields set huge) with a seeded SplitMix64.
//! Every load must return a value within the file's own size or an error, never panic, and never allocate past
//! [`MEMORY_CAP_MIB`]: each test runs its loop in a child process (this test binary, run again on that one test)
//! whose address space `ulimit -v` caps, so an allocation past the cap aborts the child and fails the test.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use diffuse::checkpoint::{Checkpoint, TrainingRecord};
use diffuse::data::{cache::Policy, Dataset, Fit};
use diffuse::image_io;
use diffuse::model::{ParamLayout, SplitMix64, UNetConfig};
use diffuse::train::TrainSettings;

/// The address space of a fuzzing child, code and test harness included.
const MEMORY_CAP_MIB: u64 = 1024;

/// Set in the child, which runs the loop itself.
const CHILD: &str = "DIFFUSE_FUZZ_CHILD";

/// Runs `body` in a child process capped at [`MEMORY_CAP_MIB`], where `name` is this test's function name.
fn capped(name: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        return body();
    }
    let started = std::time::Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {}; exec \"$0\" --exact \"$1\" --test-threads=1 --nocapture",
            MEMORY_CAP_MIB * 1024
        ))
        .arg(std::env::current_exe().unwrap())
        .arg(format!("fuzz::{name}"))
        .env(CHILD, "1")
        // glibc reserves 64 MiB of address space per arena, up to 8 per core: two are plenty here.
        .env("MALLOC_ARENA_MAX", "2")
        .output()
        .expect("run the fuzzing child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "1 passed": the child ran this very test, not zero tests.
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "fuzzing child for {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{name}: {:.1} s", started.elapsed().as_secs_f64());
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// A huge or odd 32-bit value, as a crafted header field would hold.
fn huge(rng: &mut SplitMix64) -> u32 {
    [u32::MAX, 0x8000_0000, 1 << 24, 0, rng.next_u64() as u32][below(rng, 5)]
}

/// `valid` cut short, with bytes flipped, or with a 32-bit field in its first `header` bytes set huge (big- or
/// little-endian); sometimes two of these.
fn mutate(rng: &mut SplitMix64, valid: &[u8], header: usize) -> Vec<u8> {
    let mut b = valid.to_vec();
    for _ in 0..1 + below(rng, 2) {
        if b.is_empty() {
            break;
        }
        match below(rng, 3) {
            0 => b.truncate(below(rng, b.len())),
            1 => {
                for _ in 0..1 + below(rng, 4) {
                    let i = below(rng, b.len());
                    b[i] ^= 1 + below(rng, 255) as u8;
                }
            }
            _ => {
                let at = below(rng, header.min(b.len()));
                let v = huge(rng);
                let bytes = if rng.next_u64() & 1 == 0 {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                for (k, &x) in bytes.iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + k) {
                        *slot = x;
                    }
                }
            }
        }
    }
    b
}

/// Runs one load, turning a panic into a test failure that names the case.
fn no_panic<T>(case: &str, load: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(load)).unwrap_or_else(|_| panic!("{case}: the loader panicked"))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Three 4×4 images and their labels, as IDX files.
fn valid_idx() -> (Vec<u8>, Vec<u8>) {
    let mut images = Vec::new();
    for v in [0x0803u32, 3, 4, 4] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend((0..48).map(|i| (i * 5) as u8));
    let mut labels = Vec::new();
    for v in [0x0801u32, 3] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend([1, 0, 2]);
    (images, labels)
}

const GRAY4: Fit = Fit {
    channels: 1,
    size: 4,
    background: [0; 3],
};

/// Loads `images` (beside `labels`) from `dir` and checks the result is bounded by the files' sizes.
fn load_idx(dir: &Path, gz: bool, images: &[u8], labels: &[u8], case: &str) -> bool {
    let suffix = if gz { ".gz" } else { "" };
    let path = dir.join(format!("train-images-idx3-ubyte{suffix}"));
    std::fs::write(&path, images).unwrap();
    // No labels: the images stand alone, with nothing to cross-check their count.
    let labels_path = dir.join(format!("train-labels-idx1-ubyte{suffix}"));
    if labels.is_empty() {
        let _ = std::fs::remove_file(labels_path);
    } else {
        std::fs::write(labels_path, labels).unwrap();
    }
    match no_panic(case, || Dataset::open(&path, GRAY4)) {
        Ok(d) => {
            assert_eq!(d.pixels.len(), d.len * d.image_len(), "{case}");
            // Each image is at least one byte of the (inflated) file, which holds 48 bytes of pixels.
            assert!(d.len <= 48, "{case}: {} images", d.len);
            assert!(d.labels.as_ref().is_none_or(|l| l.len() == d.len), "{case}");
            true
        }
        Err(e) => {
            assert!(
                e.to_string().contains("idx"),
                "{case}: the error names no file: {e}"
            );
            false
        }
    }
}

#[test]
fn fuzzed_raw_idx_files_load_or_fail_cleanly() {
    capped("fuzzed_raw_idx_files_load_or_fail_cleanly", || {
        let dir = scratch("idx-raw");
        let (images, labels) = valid_idx();
        assert!(load_idx(&dir, false, &images, &labels, "valid"));
        let mut rng = SplitMix64::new(16);
        let mut loaded = 0;
        for i in 0..3000 {
            let (im, lb) = if i % 4 == 3 {
                (images.clone(), mutate(&mut rng, &labels, 8))
            } else if i % 4 == 2 {
                // A header of crafted sizes: 6³ combinations, 65,536 × 2^24 × 2^24 (a product of 2^64) among them.
                let sizes = [1u32, 3, 4, 1 << 16, 1 << 24, u32::MAX];
                let mut im = images.clone();
                for at in [4, 8, 12] {
                    im[at..at + 4].copy_from_slice(&sizes[below(&mut rng, 6)].to_be_bytes());
                }
                (
                    im,
                    if i % 8 == 2 {
                        Vec::new()
                    } else {
                        labels.clone()
                    },
                )
            } else {
                (mutate(&mut rng, &images, 16), labels.clone())
            };
            loaded += load_idx(&dir, false, &im, &lb, &format!("raw case {i}")) as usize;
        }
        // Label-only mutations that keep the labels whole still load: the loop exercised both outcomes.
        assert!((1..3000).contains(&loaded), "{loaded} of 3000 loaded");
    });
}

#[test]
fn fuzzed_gzipped_idx_files_load_or_fail_cleanly() {
    capped("fuzzed_gzipped_idx_files_load_or_fail_cleanly", || {
        let dir = scratch("idx-gz");
        let (images, labels) = valid_idx();
        let (gz_images, gz_labels) = (gzip(&images), gzip(&labels));
        assert!(load_idx(&dir, true, &gz_images, &gz_labels, "valid"));
        let mut rng = SplitMix64::new(1616);
        for i in 0..3000 {
            // Half damage the gzip stream itself; half are well-formed gzip of a damaged IDX file (huge headers).
            let im = if i % 2 == 0 {
                mutate(&mut rng, &gz_images, 24)
            } else {
                gzip(&mutate(&mut rng, &images, 16))
            };
            load_idx(&dir, true, &im, &gz_labels, &format!("gz case {i}"));
        }
    });
}

/// Fuzzes the one image file of a folder, opened with no cache.
fn fuzz_folder(name: &str, valid: &[u8], seed: u64, cases: usize) {
    let dir = scratch(name);
    let file = dir.join(name);
    let fit = Fit {
        channels: 3,
        size: 8,
        background: [255; 3],
    };
    let uncached = Policy {
        dir: None,
        min_files: 0,
    };
    std::fs::write(&file, valid).unwrap();
    assert_eq!(Dataset::open_cached(&dir, fit, &uncached).unwrap().len, 1);
    let mut rng = SplitMix64::new(seed);
    let mut skipped = 0;
    for i in 0..cases {
        std::fs::write(&file, mutate(&mut rng, valid, 40)).unwrap();
        let case = format!("{name} case {i}");
        match no_panic(&case, || Dataset::open_cached(&dir, fit, &uncached)) {
            Ok(d) => assert_eq!((d.len, d.pixels.len()), (1, 3 * 8 * 8), "{case}"),
            Err(e) => {
                let e = e.to_string();
                assert!(
                    e.contains("no usable images") && e.contains(name),
                    "{case}: {e}"
                );
                skipped += 1;
            }
        }
    }
    assert!(skipped > 0, "{name}: no mutation was refused");
}

#[test]
fn fuzzed_png_folders_load_or_skip_cleanly() {
    capped("fuzzed_png_folders_load_or_skip_cleanly", || {
        let img = image::RgbaImage::from_fn(12, 10, |x, y| {
            image::Rgba([(x * 20) as u8, (y * 25) as u8, 7, 200])
        });
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        fuzz_folder("x.png", &png, 0x5eed_0001, 1500);
    });
}

#[test]
fn fuzzed_jpeg_folders_load_or_skip_cleanly() {
    capped("fuzzed_jpeg_folders_load_or_skip_cleanly", || {
        let img = image::RgbImage::from_fn(16, 12, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 20) as u8, 99])
        });
        let mut jpeg = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        fuzz_folder("x.jpg", &jpeg, 0x5eed_0002, 1500);
    });
}

#[test]
fn fuzzed_npy_files_load_or_fail_cleanly() {
    capped("fuzzed_npy_files_load_or_fail_cleanly", || {
        let dir = scratch("npy");
        let path = dir.join("x.npy");
        image_io::write_npy(&path, &[2, 3], &[0.5; 6]).unwrap();
        let valid = std::fs::read(&path).unwrap();
        let mut rng = SplitMix64::new(0x00e7);
        let dims = [0u64, 1, 3, 1 << 32, 1 << 62, u64::MAX];
        for i in 0..3000 {
            let bytes = if i % 3 == 0 {
                // A well-formed header with crafted dimensions.
                let (a, b) = (dims[below(&mut rng, 6)], dims[below(&mut rng, 6)]);
                let header =
                    format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({a}, {b}), }}\n");
                let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
                bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
                bytes.extend_from_slice(header.as_bytes());
                bytes.extend_from_slice(&valid[128..]);
                bytes
            } else {
                mutate(&mut rng, &valid, 128)
            };
            std::fs::write(&path, &bytes).unwrap();
            let case = format!("npy case {i}");
            if let Ok((shape, values)) = no_panic(&case, || image_io::read_npy(&path)) {
                assert_eq!(values.len(), shape.iter().product::<usize>(), "{case}");
                assert!(values.len() * 4 <= bytes.len(), "{case}");
            }
        }
    });
}

/// The smallest class-conditional checkpoint the layout allows, with Adam's moments.
fn tiny_checkpoint() -> Checkpoint {
    let config = UNetConfig {
        in_channels: 1,
        image_size: 4,
        base_channels: 4,
        channel_mults: vec![1, 2],
        blocks_per_level: 1,
        attention_resolutions: vec![2],
        groups: 2,
        heads: 2,
        num_classes: Some(2),
        dropout: 0.0,
        conventions: Default::default(),
    };
    // Padding stays zero, as a load gives it back.
    let layout = ParamLayout::new(&config);
    let mut params = vec![0.0f32; layout.padded_len];
    for p in &layout.params {
        params[p.offset..p.offset + p.len()].fill(0.25);
    }
    let mut settings = TrainSettings::new(config.clone());
    settings.timesteps = 10;
    settings.lr = 1e-3;
    settings.batch = 2;
    settings.warmup = 5;
    settings.ema_decay = 0.99;
    settings.seed = 4;
    Checkpoint {
        config,
        step: 3,
        rng_offset: 5,
        ema: params.clone(),
        adam: Some((params.clone(), params.clone())),
        params,
        training: TrainingRecord {
            settings,
            dataset: "fuzz".into(),
            changes: Vec::new(),
            class_names: vec!["a".into(), "b".into()],
            scheduler: None,
        },
    }
}

#[test]
fn fuzzed_checkpoints_load_or_fail_cleanly() {
    capped("fuzzed_checkpoints_load_or_fail_cleanly", || {
        let dir = scratch("ckpt");
        let path = dir.join("x.safetensors");
        let ckpt = tiny_checkpoint();
        ckpt.save(&path).unwrap();
        let valid = std::fs::read(&path).unwrap();
        assert!(
            Checkpoint::load(&path).unwrap() == ckpt,
            "the valid checkpoint round-trips"
        );
        let (_, header) = safetensors::SafeTensors::read_metadata(&valid).unwrap();
        let meta = header.metadata().clone().unwrap();
        let mut keys: Vec<&String> = meta.keys().collect();
        keys.sort();
        let tensors = safetensors::SafeTensors::deserialize(&valid).unwrap();
        let header_len = u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize + 8;
        let values = [
            "0",
            "1",
            "4096",
            "4097",
            "65536",
            "18446744073709551615",
            "99999999999999999999",
            "-1",
            "",
            "none",
            "1,2",
            "0,0",
            "1,1,1,1,1,1,1,1,1",
            "nan",
            "inf",
        ];
        let mut rng = SplitMix64::new(0xc4e7);
        for i in 0..2000 {
            let bytes = if i % 2 == 0 {
                // Well-formed safetensors with one crafted metadata value.
                let mut m = meta.clone();
                let key = keys[below(&mut rng, keys.len())];
                m.insert(key.clone(), values[below(&mut rng, values.len())].into());
                safetensors::serialize(tensors.tensors(), Some(m)).unwrap()
            } else {
                mutate(&mut rng, &valid, header_len)
            };
            std::fs::write(&path, &bytes).unwrap();
            let case = format!("checkpoint case {i}");
            match no_panic(&case, || Checkpoint::load(&path)) {
                Ok(c) => {
                    let layout = ParamLayout::new(&c.config);
                    let stored: usize = layout.params.iter().map(|p| p.len()).sum();
                    assert!(stored * 4 * 2 <= bytes.len(), "{case}");
                    assert_eq!(c.params.len(), layout.padded_len, "{case}");
                }
                Err(e) => assert!(e.to_string().contains("x.safetensors"), "{case}: {e}"),
            }
        }
    });
}
