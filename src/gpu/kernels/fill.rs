//! `fill`: writes one f32 value into every element of a buffer. The smallest
//! kernel, and the pattern every other wrapper follows: compile once in
//! `new`, then `encode` a dispatch into an open compute pass.

use bytemuck::{Pod, Zeroable};

use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/fill.wgsl");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) value: f32,
}

pub struct Fill {
    pipeline: wgpu::ComputePipeline,
}

impl Fill {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        let module = ctx.shader_module("fill", &expand("fill.wgsl", SOURCE)?)?;
        let pipeline = ctx.compute_pipeline("fill", &module, "main", &[("WG", WG as f64)])?;
        Ok(Self { pipeline })
    }

    /// Records `out[0..n] = value`. Hot path: no error scope here; errors
    /// surface at the (scoped) submit.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        out: &wgpu::Buffer,
        n: u32,
        value: f32,
    ) {
        let entries = [wgpu::BindGroupEntry {
            binding: 1,
            resource: out.as_entire_binding(),
        }];
        ctx.dispatch(
            pass,
            "fill",
            &self.pipeline,
            &Params { n, value },
            &entries,
            [n.div_ceil(WG), 1, 1],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::testing::ctx;

    #[test]
    fn fills_exactly_n_elements() {
        let ctx = ctx();
        let fill = Fill::new(ctx).unwrap();
        let buf = ctx.storage_from("buf", &vec![1.0f32; 1000]).unwrap();
        let mut enc = ctx.encoder("test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            fill.encode(ctx, &mut pass, &buf, 777, 3.5);
        }
        ctx.submit("fill", enc).unwrap();
        let got: Vec<f32> = ctx.read(&buf).unwrap();
        assert!(got[..777].iter().all(|&x| x == 3.5));
        assert!(got[777..].iter().all(|&x| x == 1.0));
    }

    #[test]
    fn broken_shader_is_an_error_not_a_panic() {
        let ctx = ctx();
        let err = ctx.shader_module("bad", "fn main( {").unwrap_err();
        assert!(matches!(err, GpuError::Shader { .. }), "{err}");
    }
}
