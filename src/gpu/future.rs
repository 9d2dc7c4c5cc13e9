//! The async edges of the GPU plumbing. Recording never waits; what does wait — a buffer mapped for reading, the
//! queue's work done, an error scope popped — completes a wgpu callback. Each such wait is an `async fn` whose
//! callback fills a one-shot channel, after a `poll` that drives the callbacks on native backends (a no-op in a
//! browser, whose event loop runs them once the page yields). The blocking versions, for native front ends, are
//! one-line wrappers over [`block_on`], which does not exist on wasm32: a blocking call in web code does not compile.
//! This is the one file that names `pollster`.

pub use futures_channel::oneshot::{channel as oneshot, Receiver, Sender};

use crate::error::{Error, Result};

/// Runs `future` to completion on this thread (native targets only).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}

/// The value a callback sent, or an error naming `what` if the callback was dropped unsent.
pub async fn received<T>(rx: Receiver<T>, what: &str) -> Result<T> {
    rx.await
        .map_err(|_| Error::Gpu(format!("{what}: the GPU's callback was lost")))
}

/// Maps `buffer` for `mode` and returns the channel its callback answers on.
pub fn map(
    buffer: &wgpu::Buffer,
    mode: wgpu::MapMode,
) -> Receiver<std::result::Result<(), wgpu::BufferAsyncError>> {
    let (tx, rx) = oneshot();
    buffer.slice(..).map_async(mode, move |r| {
        let _ = tx.send(r);
    });
    rx
}
