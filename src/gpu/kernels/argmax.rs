//! `argmax`: the greedy pick on the device, so a step reads back one u32 per
//! row instead of a whole vocabulary of logits. Logits `[rows][vocab]` f32 in,
//! ids `[rows]` u32 out, and optionally the winning logit `[rows]` f32 (for
//! logprobs).
//!
//! Rule: the largest value wins, the lowest index wins a tie, NaN never wins;
//! a row with no number in it answers index 0 with its NaN. One workgroup per
//! row, so a row's answer never depends on the rest of the batch.

use bytemuck::{Pod, Zeroable};

use super::rmsnorm::Rows;
use super::{entry, grid_2d};
use crate::gpu::shader_include::expand;
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/argmax.wgsl");
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) rows: u32,
    pub(super) vocab: u32,
    pub(super) _pad: [u32; 2],
}

pub struct Argmax {
    scalar: wgpu::ComputePipeline,
    vec4: wgpu::ComputePipeline,
    scalar_values: wgpu::ComputePipeline,
    vec4_values: wgpu::ComputePipeline,
}

impl Argmax {
    pub fn new(ctx: &GpuContext) -> Result<Self, GpuError> {
        let module = ctx.shader_module("argmax", &expand("argmax.wgsl", SOURCE)?)?;
        let pipe = |entry: &str| {
            ctx.compute_pipeline(
                &format!("argmax {entry}"),
                &module,
                entry,
                &[("WG", WG as f64)],
            )
        };
        Ok(Self {
            scalar: pipe("argmax_scalar")?,
            vec4: pipe("argmax_vec4")?,
            scalar_values: pipe("argmax_scalar_values")?,
            vec4_values: pipe("argmax_vec4_values")?,
        })
    }

    /// Records the argmax of each of `rows.count` rows of `rows.width`
    /// (vocab) logits into `ids` (`[rows.count]` u32) and, when given,
    /// the winning values into `values` (`[rows.count]` f32).
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        logits: &wgpu::Buffer,
        rows: Rows,
        ids: &wgpu::Buffer,
        values: Option<&wgpu::Buffer>,
    ) {
        if rows.count == 0 || rows.width == 0 {
            return;
        }
        let vec4 = rows.width.is_multiple_of(4);
        let pipeline = match (vec4, values.is_some()) {
            (true, false) => &self.vec4,
            (false, false) => &self.scalar,
            (true, true) => &self.vec4_values,
            (false, true) => &self.scalar_values,
        };
        let params = Params {
            rows: rows.count,
            vocab: rows.width,
            _pad: [0; 2],
        };
        let mut entries = vec![entry(if vec4 { 2 } else { 1 }, logits), entry(3, ids)];
        if let Some(values) = values {
            entries.push(entry(4, values));
        }
        let (gx, gy) = grid_2d(ctx, rows.count);
        ctx.dispatch(pass, "argmax", pipeline, &params, &entries, [gx, gy, 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng, POISON};

    /// Plain reference: strict `>` over increasing indices keeps the first of
    /// equal maxima; NaN compares false so never wins.
    fn reference(logits: &[f32], vocab: usize) -> (Vec<u32>, Vec<f32>) {
        logits
            .chunks(vocab)
            .map(|row| {
                let mut best: Option<(usize, f32)> = None;
                for (i, &v) in row.iter().enumerate() {
                    if v.is_nan() {
                        continue;
                    }
                    if best.is_none_or(|(_, b)| v > b) {
                        best = Some((i, v));
                    }
                }
                best.map_or((0, row[0]), |(i, v)| (i as u32, v))
            })
            .unzip()
    }

    fn run(logits: &[f32], vocab: usize, with_values: bool) -> (Vec<u32>, Vec<f32>) {
        let ctx = ctx();
        let k = Argmax::new(ctx).unwrap();
        let rows = logits.len() / vocab;
        let l = ctx.storage_from("logits", logits).unwrap();
        let ids = ctx.storage_from("ids", &vec![u32::MAX - 1; rows]).unwrap();
        let vals = ctx.storage_from("values", &vec![POISON; rows]).unwrap();
        let mut enc = ctx.encoder("argmax test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let shape = Rows {
                count: rows as u32,
                width: vocab as u32,
            };
            k.encode(
                ctx,
                &mut pass,
                &l,
                shape,
                &ids,
                with_values.then_some(&vals),
            );
        }
        ctx.submit("argmax", enc).unwrap();
        let ids: Vec<u32> = ctx.read(&ids).unwrap();
        let vals: Vec<f32> = ctx.read(&vals).unwrap();
        (ids[..rows].to_vec(), vals[..rows].to_vec())
    }

    /// Random logits with planted ties and NaNs. Ties sit in different
    /// invocations with the lower index in the higher invocation (so a merge
    /// that prefers its own side gets it wrong), and inside one vec4.
    fn logits(rows: usize, vocab: usize, seed: u64) -> Vec<f32> {
        let mut r = rng(seed);
        let mut l = random_f32(&mut r, rows * vocab, 20.0);
        let row = |m: usize| m * vocab;
        // Row 0: a tie between index 7 (invocation 1) and 3 * 4 * 256
        // (invocation 0 on its fourth pass; wraps for small vocabs).
        l[row(0) + 7] = 50.0;
        l[row(0) + (3 * 4 * 256) % vocab] = 50.0;
        if rows > 1 {
            // Row 1: a tie inside one vec4, and NaNs before and after it.
            l[row(1) + 9] = 60.0;
            l[row(1) + 10] = 60.0;
            l[row(1) + 2] = f32::NAN;
            l[row(1) + vocab - 1] = f32::NAN;
        }
        if rows > 2 {
            // Row 2: the maximum is the very last element.
            l[row(2) + vocab - 1] = 70.0;
        }
        if rows > 3 {
            // Row 3: every value negative, so an invocation that saw no
            // element (vocab < 4 * 256) must not win with a default value.
            for v in &mut l[row(3)..row(4)] {
                *v -= 100.0;
            }
        }
        l
    }

    fn check(rows: usize, vocab: usize, seed: u64) {
        let l = logits(rows, vocab, seed);
        let (want_ids, want_vals) = reference(&l, vocab);
        for with_values in [false, true] {
            let (ids, vals) = run(&l, vocab, with_values);
            assert_eq!(ids, want_ids, "ids, vocab {vocab}");
            if with_values {
                assert_close(&format!("argmax values V={vocab}"), &vals, &want_vals, 0.0);
            } else {
                assert!(vals.iter().all(|v| v.is_nan()), "values written unasked");
            }
        }
        assert_eq!(want_ids[0], 7);
        if rows > 1 {
            assert_eq!(want_ids[1], 9);
        }
    }

    #[test]
    fn smollm2_vocab_with_ties_and_nan() {
        check(4, 49152, 1);
    }

    #[test]
    fn small_vocab_vec4_and_scalar() {
        check(4, 1000, 2);
        check(4, 1001, 3);
    }

    #[test]
    fn largest_vocab() {
        check(1, 262144, 4);
    }

    #[test]
    fn rows_without_a_number() {
        // 8: vec4 path, 7: scalar path.
        for v in [8, 7] {
            let mut l = vec![f32::NAN; 2 * v];
            l[v + 1] = f32::NEG_INFINITY;
            l[v + 5] = f32::NEG_INFINITY;
            let (ids, vals) = run(&l, v, true);
            assert_eq!(ids, vec![0, 1], "vocab {v}");
            assert!(vals[0].is_nan());
            assert_eq!(vals[1], f32::NEG_INFINITY);
        }
    }

    #[test]
    fn row_result_does_not_depend_on_batch() {
        for (vocab, seed) in [(49152, 5), (1001, 6)] {
            let l = logits(7, vocab, seed);
            let (ids, vals) = run(&l, vocab, true);
            for m in 0..7 {
                let (id, val) = run(&l[m * vocab..(m + 1) * vocab], vocab, true);
                assert_eq!(id[0], ids[m], "row {m} of vocab {vocab}");
                assert_eq!(val[0].to_bits(), vals[m].to_bits(), "row {m}");
            }
        }
    }
}
