//! Recording a dispatch without creating anything per dispatch.
//!
//! A step records a few hundred dispatches. Creating a uniform buffer and a
//! bind group for each (what the kernels first did) costs milliseconds of
//! CPU per step, and on a discrete GPU every `create_buffer_init` also adds
//! a staging copy to the queue. Instead:
//!
//! - Each dispatch's parameters go into a slot: host memory written to a few
//!   persistent uniform buffers (chunks of 256-byte aligned slots) with one
//!   `write_buffer` per chunk at submit. Slots are handed out in order and
//!   only reused after `GpuContext::begin_step`, which the model calls when
//!   no recorded work is pending, so a slot's contents never change under a
//!   recorded dispatch.
//! - Bind groups are cached by (pipeline, the buffers at each binding, the
//!   parameter slot). A step records the same dispatches in the same order
//!   over the same buffers as the step before it, so after the first step
//!   every bind group is found rather than created.
//!
//! One cache per device, owned by its `GpuContext` (which is not `Clone`);
//! only this layer can make one, and resetting the slots takes `&mut`, so
//! the one-recorder-per-device rule is the compiler's to enforce. Recording
//! takes `&self` (a mutex inside), so kernels record through a shared
//! `&GpuContext`.

use std::collections::HashMap;
use std::sync::Mutex;

/// Parameters of one dispatch: one slot of the arena. Every kernel's params
/// struct fits (the largest is well under this).
const SLOT_BYTES: u64 = 256;
const SLOTS_PER_CHUNK: u64 = 256;
/// Drop every cached bind group past this many (test runs record many
/// distinct dispatches; a serving step records a fixed set).
const MAX_CACHED_BIND_GROUPS: usize = 16_384;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    pipeline: wgpu::ComputePipeline,
    slot: u64,
    buffers: Vec<(u32, wgpu::Buffer)>,
}

#[derive(Default)]
struct Inner {
    chunks: Vec<wgpu::Buffer>,
    /// Host copy of the slots handed out since the last reset.
    host: Vec<u8>,
    /// Slots handed out since the last reset.
    used: u64,
    /// Slots already written to the device.
    flushed: u64,
    bind_groups: HashMap<Key, wgpu::BindGroup>,
    /// `begin_step` has been called: slots recur step after step, so bind
    /// groups are worth keeping. Without steps (kernel tests, one-off
    /// work) every dispatch has a new slot and nothing is cached, so no
    /// buffer is kept alive by the cache.
    stepping: bool,
    created: u64,
    reused: u64,
}

/// The parameter arena and bind-group cache of one device.
pub(super) struct DispatchCache {
    inner: Mutex<Inner>,
}

impl DispatchCache {
    /// Only `GpuContext` makes one, for the device it opens.
    pub(super) fn new() -> Self {
        Self {
            inner: Mutex::default(),
        }
    }

    /// Makes every slot reusable. Call only when nothing recorded with this
    /// cache is waiting to be submitted (the start of a model step). `&mut`:
    /// no one else can be recording through the owning context meanwhile.
    pub(super) fn begin_step(&mut self) {
        let g = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        g.stepping = true;
        g.used = 0;
        g.flushed = 0;
        g.host.clear();
    }

    /// Writes the slots handed out since the last flush to the device; done
    /// by `GpuContext::submit` before every submit.
    pub(super) fn flush(&self, queue: &wgpu::Queue) {
        let mut g = self.lock();
        let (from, to) = (g.flushed, g.used);
        let mut slot = from;
        while slot < to {
            let chunk = slot / SLOTS_PER_CHUNK;
            let end = to.min((chunk + 1) * SLOTS_PER_CHUNK);
            let bytes = &g.host[(slot * SLOT_BYTES) as usize..(end * SLOT_BYTES) as usize];
            queue.write_buffer(
                &g.chunks[chunk as usize],
                (slot % SLOTS_PER_CHUNK) * SLOT_BYTES,
                bytes,
            );
            slot = end;
        }
        g.flushed = to;
    }

    /// (bind groups created, found in the cache) so far.
    pub(super) fn stats(&self) -> (u64, u64) {
        let g = self.lock();
        (g.created, g.reused)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `pipeline` over `groups` workgroups with `params` at binding
    /// 0 and `entries` (whole buffers) at theirs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dispatch(
        &self,
        device: &wgpu::Device,
        pass: &mut wgpu::ComputePass<'_>,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        params: &[u8],
        entries: &[wgpu::BindGroupEntry<'_>],
        groups: [u32; 3],
    ) {
        let buffers: Vec<(u32, &wgpu::Buffer)> = entries
            .iter()
            .map(|e| match &e.resource {
                wgpu::BindingResource::Buffer(b) if b.offset == 0 && b.size.is_none() => {
                    (e.binding, b.buffer)
                }
                _ => panic!("{label}: binding {} is not a whole buffer", e.binding),
            })
            .collect();
        assert!(
            params.len() as u64 <= SLOT_BYTES,
            "{label}: params of {} bytes exceed a slot",
            params.len()
        );
        let mut g = self.lock();
        let slot = g.used;
        g.used += 1;
        let chunk = (slot / SLOTS_PER_CHUNK) as usize;
        if chunk == g.chunks.len() {
            g.chunks.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dispatch params"),
                size: SLOT_BYTES * SLOTS_PER_CHUNK,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let at = (slot * SLOT_BYTES) as usize;
        g.host.resize(at + SLOT_BYTES as usize, 0);
        g.host[at..at + params.len()].copy_from_slice(params);

        let key = Key {
            pipeline: pipeline.clone(),
            slot,
            buffers: buffers.iter().map(|&(b, buf)| (b, buf.clone())).collect(),
        };
        if let Some(bg) = g.bind_groups.get(&key).cloned() {
            g.reused += 1;
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
            return;
        }
        let params_binding = wgpu::BufferBinding {
            buffer: &g.chunks[chunk],
            offset: (slot % SLOTS_PER_CHUNK) * SLOT_BYTES,
            size: wgpu::BufferSize::new(params.len().max(4) as u64),
        };
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(params_binding),
        }];
        entries.extend(buffers.iter().map(|&(binding, buf)| wgpu::BindGroupEntry {
            binding,
            resource: buf.as_entire_binding(),
        }));
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        g.created += 1;
        if g.stepping {
            if g.bind_groups.len() >= MAX_CACHED_BIND_GROUPS {
                g.bind_groups.clear();
            }
            g.bind_groups.insert(key, bg);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::gpu::kernels::fill::Fill;
    use crate::gpu::{AdapterChoice, GpuContext};

    /// Runs `fills` (buffer index, count, value) in one pass and submit.
    fn run(ctx: &GpuContext, fill: &Fill, bufs: &[wgpu::Buffer], fills: &[(usize, u32, f32)]) {
        let mut enc = ctx.encoder("t");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for &(b, n, v) in fills {
                fill.encode(ctx, &mut pass, &bufs[b], n, v);
            }
        }
        ctx.submit("t", enc).unwrap();
    }

    /// Dispatches in one pass get their own parameters; a second step over
    /// the same buffers reuses every bind group and still sees its new
    /// parameters.
    #[test]
    fn slots_are_per_dispatch_and_bind_groups_are_reused_across_steps() {
        let mut ctx = GpuContext::new(&AdapterChoice::Auto).unwrap();
        let fill = Fill::new(&ctx).unwrap();
        let bufs: Vec<wgpu::Buffer> = (0..2).map(|_| ctx.storage("b", 64).unwrap()).collect();
        ctx.begin_step();
        run(
            &ctx,
            &fill,
            &bufs,
            &[(0, 16, 1.0), (1, 16, 2.0), (0, 8, 3.0)],
        );
        let a: Vec<f32> = ctx.read(&bufs[0]).unwrap();
        let b: Vec<f32> = ctx.read(&bufs[1]).unwrap();
        assert_eq!(a, [[3.0; 8], [1.0; 8]].concat());
        assert_eq!(b, vec![2.0; 16]);
        assert_eq!(ctx.dispatch_stats(), (3, 0));

        ctx.begin_step();
        run(
            &ctx,
            &fill,
            &bufs,
            &[(0, 16, 5.0), (1, 4, 6.0), (0, 2, 7.0)],
        );
        let a: Vec<f32> = ctx.read(&bufs[0]).unwrap();
        let b: Vec<f32> = ctx.read(&bufs[1]).unwrap();
        assert_eq!(a, [vec![7.0; 2], vec![5.0; 14]].concat());
        assert_eq!(b, [vec![6.0; 4], vec![2.0; 12]].concat());
        assert_eq!(
            ctx.dispatch_stats(),
            (3, 3),
            "the second step creates nothing"
        );
    }
}
