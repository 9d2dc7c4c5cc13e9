//! The `diffuse` command line. The library does the work; `cli/` turns arguments into calls, progress bars and
//! files, and `main` turns an error into a message and a non-zero exit.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_mesa_device_select();
    match cli::run(cli::Cli::parse()) {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's implicit device-selection layer picks a default GPU for window-system programs; wgpu enables the
/// Wayland surface extension wherever a driver offers it, so on a headless box the layer tries to reach a
/// compositor and libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set" — twice, on every run, though
/// nothing failed. diffuse lists and chooses adapters itself (`diffuse info`), so it needs no such layer:
/// `NODEVICE_SELECT=1` is the layer's documented off switch, and wgpu 30 offers no way to leave the surface
/// extensions out. A value the user set is kept. Called first in `main`, before any thread exists, so no other
/// thread can be reading the environment while it changes.
fn quiet_mesa_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}
