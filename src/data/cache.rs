//! The decoded-image cache: a folder of 10⁵ photos takes minutes to decode and resize, so the result is kept as
//! one file of bytes, and a second run starts in seconds.
//!
//! Where: `$DIFFUSE_CACHE_DIR`, else `$XDG_CACHE_HOME/diffuse`, else `~/.cache/diffuse` (never inside the user's
//! data folder, which may be read-only or shared); only for folders of [`Policy::min_files`] files or more, since
//! small ones decode in a moment. One file per (folder, fit), named by a hash of the folder's
//! canonical path and the fit. The file records a fingerprint of every image file's name, size and modification
//! time: any change to the folder (an image added, removed, replaced or touched) misses, and the folder is decoded
//! again and the cache rewritten. Writes are atomic (temporary file, then rename), so an interrupted run never
//! leaves a half-written cache that would be read as whole. `DIFFUSE_CACHE_DIR=off` turns the cache off.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Decoded, Fit};
// A fingerprint, not a defence against tampering: whoever can write the cache can write the images themselves.
use crate::fnv::Fnv;

/// Changes whenever the format or the decoding (resize, compositing, rounding) changes.
const FORMAT: &[u8; 16] = b"diffuse-u8-v1\0\0\0";

/// Where a folder's decoded images live, and the fingerprint they must carry.
pub struct Key {
    path: PathBuf,
    fingerprint: u64,
}

/// Where the cache lives and which folders it is for.
#[derive(Clone, Debug)]
pub struct Policy {
    /// None: no cache.
    pub dir: Option<PathBuf>,
    /// Folders with fewer files are decoded every time.
    pub min_files: usize,
}

impl Default for Policy {
    /// The user's cache folder, for folders of 1,000 files or more.
    fn default() -> Policy {
        Policy {
            dir: cache_dir(),
            min_files: 1000,
        }
    }
}

impl Policy {
    /// The key of `files` (the folder's sorted file list) decoded with `fit`, if this policy caches them.
    pub fn key(&self, dir: &Path, files: &[PathBuf], fit: Fit) -> Option<Key> {
        if files.len() < self.min_files {
            return None;
        }
        Key::new(self.dir.as_ref()?, dir, files, fit)
    }
}

/// The cache folder, or None when it is off or no home is known.
fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("DIFFUSE_CACHE_DIR") {
        Some(v) if v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .map(|d| d.join("diffuse")),
    }
}

impl Key {
    /// The key of `files` (the folder's sorted file list) decoded with `fit`, cached in `cache`; None when a file
    /// cannot be examined (then the folder is simply decoded).
    fn new(cache: &Path, dir: &Path, files: &[PathBuf], fit: Fit) -> Option<Key> {
        let canonical = dir.canonicalize().ok()?;
        let mut name = Fnv::new();
        name.bytes(FORMAT)
            .bytes(canonical.to_string_lossy().as_bytes())
            .bytes(&(fit.channels as u64).to_le_bytes())
            .bytes(&(fit.size as u64).to_le_bytes())
            .bytes(&fit.background);
        let mut print = name;
        for f in files {
            let meta = std::fs::metadata(f).ok()?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            print
                .bytes(
                    f.strip_prefix(dir)
                        .unwrap_or(f)
                        .to_string_lossy()
                        .as_bytes(),
                )
                .bytes(&meta.len().to_le_bytes())
                .bytes(&modified.to_le_bytes());
        }
        Some(Key {
            path: cache.join(format!("{:016x}.u8", name.finish())),
            fingerprint: print.finish(),
        })
    }

    /// The cached images, if the file exists, is whole and carries this fingerprint.
    pub fn load(&self) -> Option<Decoded> {
        let bytes = std::fs::read(&self.path).ok()?;
        let mut r = Reader(&bytes);
        if r.take(FORMAT.len())? != FORMAT || r.u64()? != self.fingerprint {
            return None;
        }
        let kept = (0..r.u64()?)
            .map(|_| r.u64().map(|i| i as u32))
            .collect::<Option<Vec<_>>>()?;
        let skipped = (0..r.u64()?)
            .map(|_| {
                let n = r.u64()? as usize;
                String::from_utf8(r.take(n)?.to_vec()).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        let n = r.u64()? as usize;
        let pixels = r.take(n)?.to_vec();
        if !r.0.is_empty() {
            return None;
        }
        Some(Decoded {
            pixels,
            kept,
            skipped,
        })
    }

    /// Writes `decoded` under this key, atomically.
    pub fn store(&self, decoded: &Decoded) -> std::io::Result<()> {
        let dir = self
            .path
            .parent()
            .expect("the cache file is inside the cache folder");
        std::fs::create_dir_all(dir)?;
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let written = self.write(&tmp, decoded);
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        std::fs::rename(&tmp, &self.path)
    }

    fn write(&self, tmp: &Path, decoded: &Decoded) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(tmp)?);
        out.write_all(FORMAT)?;
        out.write_all(&self.fingerprint.to_le_bytes())?;
        out.write_all(&(decoded.kept.len() as u64).to_le_bytes())?;
        for &i in &decoded.kept {
            out.write_all(&(i as u64).to_le_bytes())?;
        }
        out.write_all(&(decoded.skipped.len() as u64).to_le_bytes())?;
        for s in &decoded.skipped {
            out.write_all(&(s.len() as u64).to_le_bytes())?;
            out.write_all(s.as_bytes())?;
        }
        out.write_all(&(decoded.pixels.len() as u64).to_le_bytes())?;
        out.write_all(&decoded.pixels)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    }

    /// The cache file (for messages and tests).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a cache file front to back; None past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
