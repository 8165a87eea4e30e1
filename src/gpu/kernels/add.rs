//! `add`: the residual add, `a += b` in place or `out = a + b`, over a flat
//! f32 array of any length (vec4 loads for the bulk, a scalar dispatch for the
//! last n % 4 elements).

use bytemuck::{Pod, Zeroable};

use super::{entry, grid_2d};
use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/add.wgsl");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) start: u32,
    pub(super) _pad: [u32; 2],
}

/// The residual add. One pipeline per (in place or not) x (vec4 or scalar).
pub struct Add {
    in_place_vec4: wgpu::ComputePipeline,
    in_place_scalar: wgpu::ComputePipeline,
    out_vec4: wgpu::ComputePipeline,
    out_scalar: wgpu::ComputePipeline,
}

impl Add {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        let module = ctx.shader_module("add", &expand("add.wgsl", SOURCE)?)?;
        let pipe = |entry: &str| {
            ctx.compute_pipeline(
                &format!("add {entry}"),
                &module,
                entry,
                &[("WG", WG as f64)],
            )
        };
        Ok(Self {
            in_place_vec4: pipe("add_in_place_vec4")?,
            in_place_scalar: pipe("add_in_place_scalar")?,
            out_vec4: pipe("add_out_vec4")?,
            out_scalar: pipe("add_out_scalar")?,
        })
    }

    /// Records `a[i] += b[i]` for `i < n`. `a` and `b` must be different
    /// buffers holding at least `n` f32 each.
    pub fn encode_in_place(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        n: u32,
    ) {
        self.record(
            ctx,
            pass,
            n,
            (&self.in_place_vec4, &[entry(1, a), entry(2, b)]),
            (&self.in_place_scalar, &[entry(3, a), entry(4, b)]),
        );
    }

    /// Records `out[i] = a[i] + b[i]` for `i < n`. `out` must differ from
    /// `a` and `b` (use [`Add::encode_in_place`] to accumulate).
    pub fn encode_out(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        out: &wgpu::Buffer,
        n: u32,
    ) {
        self.record(
            ctx,
            pass,
            n,
            (&self.out_vec4, &[entry(5, a), entry(2, b), entry(6, out)]),
            (&self.out_scalar, &[entry(7, a), entry(4, b), entry(8, out)]),
        );
    }

    /// Dispatches the vec4 pipeline over the first `n / 4` vec4s and the
    /// scalar one over the remaining `n % 4` elements.
    fn record(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        n: u32,
        vec4: (&wgpu::ComputePipeline, &[wgpu::BindGroupEntry<'_>]),
        scalar: (&wgpu::ComputePipeline, &[wgpu::BindGroupEntry<'_>]),
    ) {
        if n == 0 {
            return;
        }
        let start = n - n % 4;
        let params = Params {
            n,
            start,
            _pad: [0; 2],
        };
        let jobs = [(vec4, start / 4), (scalar, n - start)];
        for ((pipeline, buffers), count) in jobs {
            if count == 0 {
                continue;
            }
            let (x, y) = grid_2d(ctx, count.div_ceil(WG));
            ctx.dispatch(pass, "add", pipeline, &params, buffers, [x, y, 1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng, POISON};

    fn run(n: usize, in_place: bool, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let ctx = ctx();
        let add = Add::new(ctx).unwrap();
        let mut r = rng(seed);
        let a = random_f32(&mut r, n, 4.0);
        let b = random_f32(&mut r, n, 4.0);
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        // One guard element past n checks that nothing beyond n is written.
        let mut a_padded = a.clone();
        a_padded.push(-7.0);
        let a_buf = ctx.storage_from("a", &a_padded).unwrap();
        let b_buf = ctx.storage_from("b", &b).unwrap();
        let out_buf = ctx.storage_from("out", &vec![POISON; n + 1]).unwrap();
        let mut enc = ctx.encoder("add test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if in_place {
                add.encode_in_place(ctx, &mut pass, &a_buf, &b_buf, n as u32);
            } else {
                add.encode_out(ctx, &mut pass, &a_buf, &b_buf, &out_buf, n as u32);
            }
        }
        ctx.submit("add", enc).unwrap();
        let got: Vec<f32> = ctx.read(if in_place { &a_buf } else { &out_buf }).unwrap();
        if in_place {
            assert_eq!(got[n], -7.0, "wrote past n");
        } else {
            assert!(got[n].is_nan(), "wrote past n");
            let a_after: Vec<f32> = ctx.read(&a_buf).unwrap();
            assert_eq!(&a_after[..n], &a[..], "encode_out modified a");
        }
        (got[..n].to_vec(), want)
    }

    #[test]
    fn in_place_matches_reference_vec4_and_tail() {
        for (n, seed) in [(4096, 1), (1003, 2), (3, 3)] {
            let (got, want) = run(n, true, seed);
            // f32 addition is exact-rounded on every conforming device.
            assert_close(&format!("add in place n={n}"), &got, &want, 0.0);
        }
    }

    #[test]
    fn out_of_place_matches_reference_vec4_and_tail() {
        for (n, seed) in [(576 * 5, 4), (4097, 5)] {
            let (got, want) = run(n, false, seed);
            assert_close(&format!("add out n={n}"), &got, &want, 0.0);
        }
    }

    #[test]
    fn large_n_uses_a_2d_grid() {
        let ctx = ctx();
        let max = ctx.caps.max_workgroups_per_dim;
        let (x, y) = grid_2d(ctx, max + 10);
        assert!(x <= max && y >= 2 && x * y >= max + 10);
        assert_eq!(grid_2d(ctx, 7), (7, 1));
    }
}
