//! The one clock of the library: `Instant` is std's on native targets and the browser's `performance.now()` on
//! wasm32, where `std::time::Instant::now` panics. Library code times through this module only.

pub use web_time::Instant;
