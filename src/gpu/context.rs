//! The GPU context: one wgpu device and its queue, chosen from the machine's
//! Vulkan adapters, with the adapter's real limits and the optional features
//! wgserve's kernels use (SHADER_F16, SUBGROUP, TIMESTAMP_QUERY).
//!
//! Every fallible wgpu call made through this type runs inside an error scope,
//! so a validation error (a broken shader, a bad binding) comes back as a
//! [`GpuError`] instead of wgpu's default panic. This module owns device
//! creation and the small helpers for buffers and readback; it knows nothing
//! of models or kernels.

use std::sync::Arc;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use super::dispatch::DispatchCache;

/// Everything that can go wrong on the GPU side, as a typed error.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no Vulkan adapter found; install a Vulkan driver (run scripts/setup, or your GPU vendor's driver)")]
    NoAdapter,
    #[error("no Vulkan adapter matches {wanted:?}; available: {available}")]
    AdapterNotFound { wanted: String, available: String },
    #[error("could not open a device on adapter {adapter}: {source}")]
    RequestDevice {
        adapter: String,
        #[source]
        source: wgpu::RequestDeviceError,
    },
    #[error("shader {label}: {message}")]
    Shader { label: String, message: String },
    #[error(transparent)]
    Include(#[from] super::shader_include::IncludeError),
    #[error("GPU validation error in {what}: {message}")]
    Validation { what: String, message: String },
    #[error("GPU out of memory in {what}: {message}")]
    OutOfMemory { what: String, message: String },
    #[error("GPU readback failed: {0}")]
    Readback(String),
    #[error("buffer {label} needs {bytes} bytes but one binding may hold at most {max}")]
    BindingTooLarge { label: String, bytes: u64, max: u64 },
}

pub type Result<T, E = GpuError> = std::result::Result<T, E>;

/// Which adapter to open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// The best one present: discrete GPU, then integrated, then virtual, then CPU.
    #[default]
    Auto,
    /// The adapter at this position in the enumeration order.
    Index(usize),
    /// The first adapter whose name contains this text (case-insensitive).
    Name(String),
}

impl std::str::FromStr for AdapterChoice {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let s = s.trim();
        Ok(if s.is_empty() || s.eq_ignore_ascii_case("auto") {
            AdapterChoice::Auto
        } else if let Ok(i) = s.parse::<usize>() {
            AdapterChoice::Index(i)
        } else {
            AdapterChoice::Name(s.to_string())
        })
    }
}

/// What the device can do, read once at creation.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// The largest buffer range one storage binding may cover.
    pub max_storage_binding: u64,
    pub max_buffer_size: u64,
    pub max_workgroups_per_dim: u32,
    pub max_workgroup_storage: u32,
    pub max_invocations_per_workgroup: u32,
    pub min_storage_offset_alignment: u32,
    /// The largest device-local Vulkan memory heap (the GPU's memory; on a
    /// CPU driver, host memory), when the driver says.
    pub device_memory: Option<u64>,
}

/// One opened device and the one recorder of its dispatches.
///
/// Not `Clone`: the dispatch cache hands out parameter slots that
/// [`GpuContext::begin_step`] makes reusable, which is only sound while no
/// other recorder can have work pending on the same device. Each context
/// opens its own device and owns its cache (which nothing outside `gpu` can
/// create), and `begin_step` takes `&mut self`, so a second recorder, or a
/// reset under a shared reference, does not compile. Code that only needs
/// the device takes `&GpuContext` (or clones `device`/`queue`, which are
/// reference counted) and records nothing of its own.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub caps: Capabilities,
    /// Parameter slots and cached bind groups for the kernels' dispatches.
    dispatches: DispatchCache,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .field("caps", &self.caps)
            .finish()
    }
}

/// The size of the adapter's largest device-local memory heap, read from
/// Vulkan (wgpu itself does not report memory sizes).
fn device_local_heap(adapter: &wgpu::Adapter) -> Option<u64> {
    // SAFETY: only reads the physical device's memory properties through the
    // instance wgpu created; nothing is created or destroyed.
    unsafe {
        let hal = adapter.as_hal::<wgpu::hal::api::Vulkan>()?;
        let instance = hal.shared_instance().raw_instance();
        let props = instance.get_physical_device_memory_properties(hal.raw_physical_device());
        props.memory_heaps[..props.memory_heap_count as usize]
            .iter()
            .filter(|h| h.flags.contains(ash::vk::MemoryHeapFlags::DEVICE_LOCAL))
            .map(|h| h.size)
            .max()
    }
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN;
    wgpu::Instance::new(desc)
}

/// Names of every Vulkan adapter on this machine, in enumeration order.
pub fn list_adapters() -> Vec<wgpu::AdapterInfo> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::VULKAN))
        .iter()
        .map(|a| a.get_info())
        .collect()
}

impl GpuContext {
    /// Opens a device on the chosen adapter with its full limits and every
    /// optional feature wgserve uses that it has.
    pub fn new(choice: &AdapterChoice) -> Result<Self> {
        let inst = instance();
        let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::VULKAN));
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter);
        }
        let names = || {
            adapters
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{i}: {}", a.get_info().name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let adapter = match choice {
            AdapterChoice::Auto => adapters
                .iter()
                .min_by_key(|a| type_rank(a.get_info().device_type))
                .cloned(),
            AdapterChoice::Index(i) => adapters.get(*i).cloned(),
            AdapterChoice::Name(n) => {
                let n = n.to_lowercase();
                adapters
                    .iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&n))
                    .cloned()
            }
        }
        .ok_or_else(|| GpuError::AdapterNotFound {
            wanted: format!("{choice:?}"),
            available: names(),
        })?;
        Self::from_adapter(&adapter)
    }

    fn from_adapter(adapter: &wgpu::Adapter) -> Result<Self> {
        let info = adapter.get_info();
        let have = adapter.features();
        let wanted =
            wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
        let features = have & wanted;
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("wgserve"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            GpuError::RequestDevice {
                adapter: info.name.clone(),
                source: e,
            }
        })?;
        // Errors outside any scope are a bug of ours; log them rather than
        // let wgpu's default handler abort the server.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            tracing::error!("uncaptured wgpu error: {e}");
        }));
        let device_memory = device_local_heap(adapter);
        let caps = Capabilities {
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            subgroup: features.contains(wgpu::Features::SUBGROUP),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_workgroups_per_dim: limits.max_compute_workgroups_per_dimension,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            min_storage_offset_alignment: limits.min_storage_buffer_offset_alignment,
            device_memory,
        };
        Ok(Self {
            device,
            queue,
            info,
            caps,
            dispatches: DispatchCache::new(),
        })
    }

    /// One line for logs: adapter, backend, driver, features.
    pub fn describe(&self) -> String {
        let mut feats = Vec::new();
        if self.caps.shader_f16 {
            feats.push("f16");
        }
        if self.caps.subgroup {
            feats.push("subgroup");
        }
        if self.caps.timestamp_query {
            feats.push("timestamp");
        }
        let memory = self
            .caps
            .device_memory
            .map_or("memory unknown".to_string(), |m| {
                format!("{:.1} GiB memory", m as f64 / (1u64 << 30) as f64)
            });
        format!(
            "{} ({:?}, {:?}, {} {}; {memory}; features: {}; max storage binding {} MiB)",
            self.info.name,
            self.info.device_type,
            self.info.backend,
            self.info.driver,
            self.info.driver_info,
            if feats.is_empty() {
                "none".to_string()
            } else {
                feats.join(", ")
            },
            self.caps.max_storage_binding >> 20
        )
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns
    /// whatever they caught into a [`GpuError`].
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let val_err = pollster::block_on(val.pop());
        let oom_err = pollster::block_on(oom.pop());
        if let Some(e) = val_err {
            return Err(GpuError::Validation {
                what: what.to_string(),
                message: e.to_string(),
            });
        }
        if let Some(e) = oom_err {
            return Err(GpuError::OutOfMemory {
                what: what.to_string(),
                message: e.to_string(),
            });
        }
        Ok(out)
    }

    /// Compiles WGSL, reporting naga's message as a [`GpuError::Shader`].
    pub fn shader_module(&self, label: &str, source: &str) -> Result<wgpu::ShaderModule> {
        self.scoped(label, || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                })
        })
        .map_err(|e| GpuError::Shader {
            label: label.to_string(),
            message: e.to_string(),
        })
    }

    /// A compute pipeline with an automatic bind-group layout.
    ///
    /// `constants` set the shader's `override` declarations by name. Workgroup
    /// memory is not zero-filled: every kernel here writes shared memory
    /// before reading it, and lavapipe pays dearly for the fill.
    pub fn compute_pipeline(
        &self,
        label: &str,
        module: &wgpu::ShaderModule,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        self.scoped(label, || {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: None,
                    module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
        })
    }

    /// A storage buffer filled with `data` (also usable as a copy source and
    /// destination).
    pub fn storage_from<T: Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_binding(label, bytes.len() as u64)?;
        // wgpu rejects zero-sized bindings; keep a minimum of 16 bytes.
        let mut padded;
        let contents = if bytes.len() < 16 {
            padded = bytes.to_vec();
            padded.resize(16, 0);
            &padded[..]
        } else {
            bytes
        };
        self.scoped(label, || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(label),
                    contents,
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                })
        })
    }

    /// An uninitialised storage buffer of `bytes` bytes.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_binding(label, bytes)?;
        let size = bytes.max(16).next_multiple_of(4);
        self.scoped(label, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    fn check_binding(&self, label: &str, bytes: u64) -> Result<()> {
        if bytes > self.caps.max_storage_binding {
            return Err(GpuError::BindingTooLarge {
                label: label.to_string(),
                bytes,
                max: self.caps.max_storage_binding,
            });
        }
        Ok(())
    }

    /// Makes every parameter slot reusable, so a step that records the same
    /// dispatches as the step before finds every bind group in the cache.
    /// Call only when nothing recorded on this context is waiting to be
    /// submitted (the start of a model step); see [`super::dispatch`].
    pub fn begin_step(&mut self) {
        self.dispatches.begin_step();
    }

    /// (bind groups created, bind groups found in the cache) so far.
    pub fn dispatch_stats(&self) -> (u64, u64) {
        self.dispatches.stats()
    }

    /// Submits an encoder's work and checks it for validation errors.
    pub fn submit(&self, what: &str, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.dispatches.flush(&self.queue);
        self.scoped(what, || {
            self.queue.submit(Some(encoder.finish()));
        })
    }

    /// Records one kernel dispatch: `params` at binding 0 (a uniform),
    /// whole-buffer `entries` at their bindings, `groups` workgroups. Nothing is created
    /// per dispatch once a step has run (see [`super::dispatch`]).
    pub fn dispatch<P: Pod>(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        params: &P,
        entries: &[wgpu::BindGroupEntry<'_>],
        groups: [u32; 3],
    ) {
        self.dispatches.dispatch(
            &self.device,
            pass,
            label,
            pipeline,
            bytemuck::bytes_of(params),
            entries,
            groups,
        );
    }

    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Copies `buffer` (whole) back to the host and reinterprets it as `T`s.
    /// Blocks until the GPU is done with everything submitted before.
    pub fn read<T: Pod>(&self, buffer: &wgpu::Buffer) -> Result<Vec<T>> {
        self.read_range(buffer, 0, buffer.size())
    }

    /// Copies `bytes` bytes from `offset` of `buffer` back to the host.
    pub fn read_range<T: Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<T>> {
        let size = bytes.next_multiple_of(4);
        let staging = self.scoped("readback staging", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: size.max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut enc = self.encoder("readback");
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.submit("readback copy", enc)?;
        self.map_and_read(&staging, bytes)
    }

    /// Maps a MAP_READ buffer whose copy has been submitted, and returns its first `bytes`.
    pub fn map_and_read<T: Pod>(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<T>> {
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: None,
            })
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        rx.recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            let bytes = &view[..bytes as usize];
            // The mapped range is not guaranteed to be aligned for T.
            let mut v = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(bytes);
            v
        };
        staging.unmap();
        Ok(out)
    }
}
