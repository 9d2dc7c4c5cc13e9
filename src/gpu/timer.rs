//! GPU timing for the benchmark: timestamp queries at compute-pass boundaries where the adapter has them,
//! wall-clock time around submit-and-wait otherwise.

use crate::time::Instant;

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};

pub struct Timer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
}

/// Where a duration came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Timestamp queries written by the GPU at the start and end of the pass.
    GpuTimestamps,
    /// Host wall-clock around submit and wait (includes submission overhead).
    WallClock,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::GpuTimestamps => "gpu-timestamps",
            Clock::WallClock => "wall-clock",
        }
    }
}

impl Timer {
    pub fn new(gpu: &Gpu) -> Timer {
        let queries = gpu.caps.timestamps.then(|| {
            let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp readback"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, readback)
        });
        Timer { queries }
    }

    pub fn clock(&self) -> Clock {
        if self.queries.is_some() {
            Clock::GpuTimestamps
        } else {
            Clock::WallClock
        }
    }

    /// Each dispatch's seconds when `dispatches` run in order in one submission, as a recorded step runs them: GPU
    /// timestamps between consecutive dispatches inside one pass where the adapter can write them there, else at
    /// the boundaries of a pass per dispatch (which adds a pass's cost to each); None without timestamps. Returns
    /// the times and how they were taken.
    pub fn sequence(
        &self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
    ) -> Result<Option<(Vec<f64>, &'static str)>> {
        self.sequence_placed(gpu, dispatches, gpu.caps.timestamps_inside_passes)
    }

    /// [`Timer::sequence`] with the timestamps inside one pass (`inside`, where the adapter can write them there)
    /// or at the boundaries of a pass per dispatch, whatever the adapter prefers: for tests of both placements.
    pub fn sequence_placed(
        &self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        inside: bool,
    ) -> Result<Option<(Vec<f64>, &'static str)>> {
        if self.queries.is_none() {
            return Ok(None);
        }
        let mut seconds = Vec::with_capacity(dispatches.len());
        // A query set holds at most 4096 timestamps: 2 per dispatch at pass boundaries.
        for chunk in dispatches.chunks(2047) {
            seconds.extend(sequence_chunk(gpu, chunk, inside)?);
        }
        let how = match inside {
            true => "in-pass timestamps between dispatches",
            false => "a pass per dispatch, timestamps at its boundaries",
        };
        Ok(Some((seconds, how)))
    }

    /// Seconds to run `dispatches` `reps` times over, recorded in one pass and one submission.
    pub fn time(&self, gpu: &Gpu, dispatches: &[&Dispatch], reps: usize) -> Result<f64> {
        Ok(self.time_with_host(gpu, dispatches, reps)?.0)
    }

    /// As [`Timer::time`], also returning the host's seconds spent recording and submitting (encoder creation to
    /// the return of `submit`), which the GPU time does not include.
    pub fn time_with_host(
        &self,
        gpu: &Gpu,
        dispatches: &[&Dispatch],
        reps: usize,
    ) -> Result<(f64, f64)> {
        let host_start = Instant::now();
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bench"),
            });
        {
            let timestamp_writes =
                self.queries
                    .as_ref()
                    .map(|(set, _, _)| wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes,
            });
            for _ in 0..reps {
                for d in dispatches {
                    pass.set_pipeline(&d.kernel.pipeline);
                    pass.set_bind_group(0, &d.bind_group, &[]);
                    pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
                }
            }
        }
        if let Some((set, resolve, readback)) = &self.queries {
            encoder.resolve_query_set(set, 0..2, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, readback, 0, 16);
        }
        let start = Instant::now();
        gpu.submit([encoder.finish()]);
        let host = host_start.elapsed().as_secs_f64();
        gpu.wait()?;
        let wall = start.elapsed().as_secs_f64();
        let Some((_, _, readback)) = &self.queries else {
            return Ok((wall, host));
        };
        let ticks = read_ticks(gpu, readback, 2)?;
        let period_ns = gpu.queue.get_timestamp_period() as f64;
        Ok((
            ticks[1].saturating_sub(ticks[0]) as f64 * period_ns * 1e-9,
            host,
        ))
    }
}

/// [`Timer::sequence`] of at most 2047 dispatches, in one submission.
fn sequence_chunk(gpu: &Gpu, dispatches: &[&Dispatch], inside: bool) -> Result<Vec<f64>> {
    let count = match inside {
        true => dispatches.len() + 1,
        false => 2 * dispatches.len(),
    } as u32;
    let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("bench sequence"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let bytes = 8 * count as u64;
    let buffer = |usage| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("bench sequence timestamps"),
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    };
    let resolve = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
    let readback = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("bench sequence"),
        });
    let dispatch = |pass: &mut wgpu::ComputePass, d: &Dispatch| {
        pass.set_pipeline(&d.kernel.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[]);
        pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
    };
    if inside {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.write_timestamp(&set, 0);
        for (i, d) in dispatches.iter().enumerate() {
            dispatch(&mut pass, d);
            pass.write_timestamp(&set, i as u32 + 1);
        }
    } else {
        for (i, d) in dispatches.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            dispatch(&mut pass, d);
        }
    }
    encoder.resolve_query_set(&set, 0..count, &resolve, 0);
    encoder.copy_buffer_to_buffer(&resolve, 0, &readback, 0, bytes);
    gpu.submit([encoder.finish()]);
    let ticks = read_ticks(gpu, &readback, count as usize)?;
    let period_s = gpu.queue.get_timestamp_period() as f64 * 1e-9;
    let span = |a: u64, b: u64| b.saturating_sub(a) as f64 * period_s;
    Ok(match inside {
        true => ticks.windows(2).map(|w| span(w[0], w[1])).collect(),
        false => ticks.chunks(2).map(|w| span(w[0], w[1])).collect(),
    })
}

/// The `count` timestamps copied into `readback`, once the GPU is done.
fn read_ticks(gpu: &Gpu, readback: &wgpu::Buffer, count: usize) -> Result<Vec<u64>> {
    let (tx, rx) = std::sync::mpsc::channel();
    readback.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.wait()?;
    rx.recv()
        .map_err(|e| Error::Gpu(format!("timestamp readback lost: {e}")))?
        .map_err(|e| Error::Gpu(format!("mapping timestamps: {e}")))?;
    let ticks = {
        let view = readback
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading timestamps: {e:?}")))?;
        bytemuck::pod_collect_to_vec::<u8, u64>(&view[..8 * count])
    };
    readback.unmap();
    Ok(ticks)
}
