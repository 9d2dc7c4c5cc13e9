//! One run per output folder: `diffuse train` holds an exclusive lock on `<out>/.diffuse-lock` for as long as it
//! runs, so a second run on the same folder stops before it starts instead of interleaving its metrics.csv rows and
//! checkpoints with the first's. The lock is the operating system's (flock on Unix, LockFileEx on Windows, through
//! `std::fs::File::try_lock`), so it dies with its process: a crashed or killed run leaves no stale lock, only the
//! file, which names the last holder for the message a second run prints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use diffuse::Error;

/// The lock's file, in the output folder (hidden, and left there after the run: only the lock on it matters).
const NAME: &str = ".diffuse-lock";

/// Held for the run's lifetime; dropping it (or the process ending, however) releases the lock.
pub struct RunLock {
    _file: File,
}

/// How taking the lock ended where it did not.
enum Refusal {
    /// Another process holds it: the error to print.
    Held(Error),
    /// The filesystem does not lock files (some network filesystems): the run may go on, unguarded.
    Unsupported(String),
}

impl RunLock {
    /// The lock a run on `out` holds: an error where another run holds it, and none (after a warning) where the
    /// filesystem cannot lock.
    pub fn for_run(out: &Path) -> Result<Option<RunLock>, Error> {
        match RunLock::take(out) {
            Ok(lock) => Ok(Some(lock)),
            Err(Refusal::Held(e)) => Err(e),
            Err(Refusal::Unsupported(why)) => {
                eprintln!("warning: {why}");
                Ok(None)
            }
        }
    }

    /// Takes the lock on `out` (made if missing), recording this process in the file.
    fn take(out: &Path) -> std::result::Result<RunLock, Refusal> {
        let path = out.join(NAME);
        let io = |e: std::io::Error| Refusal::Held(Error::io(&path, e));
        std::fs::create_dir_all(out).map_err(|e| Refusal::Held(Error::io(out, e)))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Refusal::Held(held(out, &mut file)))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Refusal::Unsupported(format!(
                    "could not lock {} ({e}): a second run on this folder would not be noticed",
                    path.display()
                )))
            }
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", holder()).map_err(io)?;
        Ok(RunLock { _file: file })
    }
}

/// This process, as the file records it: "pid 1234 on host".
fn holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".to_string());
    format!("pid {} on {host}", std::process::id())
}

/// The refusal of a second run, naming the first as its file records it.
fn held(out: &Path, file: &mut File) -> Error {
    let mut recorded = String::new();
    let _ = file
        .rewind()
        .and_then(|_| file.read_to_string(&mut recorded));
    let who = match recorded.trim() {
        "" => "another diffuse run".to_string(),
        line => format!("another diffuse run ({line})"),
    };
    Error::Usage(format!(
        "{who} is writing {}: wait for it to finish (or stop it), or give this run another --out",
        out.display()
    ))
}
