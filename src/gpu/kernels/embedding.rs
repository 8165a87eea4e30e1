//! `embedding`: the token-embedding gather, `out[m] = dequant(W[ids[m]])`,
//! for a [`DeviceTensor`] of any supported type (`shaders/embedding.wgsl`
//! with the type's `shaders/dequant_*.wgsl` spliced in). A table split into
//! row chunks takes one dispatch per chunk; each writes the rows whose id
//! falls in its range. An id past the end of the table gives a row of zeros
//! (the caller validates ids; this only keeps a bad one from reading another
//! row's memory).
//!
//! This module owns only the dispatch; the weight layout is
//! `crate::gpu::weights`'.

use bytemuck::{Pod, Zeroable};

use super::entry;
use crate::gguf::GgmlType;
use crate::gpu::weights::{has_scales, splice_dequant, DeviceTensor};
use crate::gpu::{GpuContext, GpuError};

const SOURCE: &str = include_str!("../../../shaders/embedding.wgsl");
const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct Params {
    pub(super) m: u32,
    pub(super) k4: u32,
    pub(super) upr: u32,
    pub(super) row0: u32,
    pub(super) rows: u32,
    pub(super) zero_above: u32,
    pub(super) groups_y: u32,
    pub(super) _pad: u32,
}

/// The gather for one weight type.
pub struct Embedding {
    ty: GgmlType,
    pipeline: wgpu::ComputePipeline,
}

fn bad_call(message: String) -> GpuError {
    GpuError::Validation {
        what: "embedding".into(),
        message,
    }
}

impl Embedding {
    pub fn new(ctx: &GpuContext, ty: GgmlType) -> Result<Self, GpuError> {
        let label = format!("embedding {ty}");
        let module = ctx.shader_module(&label, &splice_dequant("embedding.wgsl", SOURCE, ty)?)?;
        let pipeline = ctx.compute_pipeline(&label, &module, "main", &[("WG", f64::from(WG))])?;
        Ok(Self { ty, pipeline })
    }

    pub fn weight_type(&self) -> GgmlType {
        self.ty
    }

    /// Records `out[i][..] = w[ids[i]][..]` (f32) for `i < m_rows`. `ids`
    /// holds at least `m_rows` u32, `out` at least `m_rows * w.row_len` f32.
    /// Hot path: no error scope (errors surface at the scoped submit); the
    /// `Err` cases are shape mistakes caught before recording.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        w: &DeviceTensor,
        ids: &wgpu::Buffer,
        out: &wgpu::Buffer,
        m_rows: u32,
    ) -> Result<(), GpuError> {
        if w.ty != self.ty {
            return Err(bad_call(format!(
                "table {} is {} but this gather was built for {}",
                w.name, w.ty, self.ty
            )));
        }
        if m_rows == 0 {
            return Ok(());
        }
        let m = u64::from(m_rows);
        if ids.size() < m * 4 || out.size() < m * u64::from(w.row_len) * 4 {
            return Err(bad_call(format!(
                "{m} ids from {} need {} bytes of ids and {} of output; buffers have {} and {}",
                w.name,
                m * 4,
                m * u64::from(w.row_len) * 4,
                ids.size(),
                out.size()
            )));
        }
        let max_dim = ctx.caps.max_workgroups_per_dim.max(1);
        let gx = w.units_per_row().div_ceil(WG);
        let gy = m_rows.min(max_dim);
        let gz = m_rows.div_ceil(gy);
        let last = w.chunks.len().saturating_sub(1);
        for (i, chunk) in w.chunks.iter().enumerate() {
            let params = Params {
                m: m_rows,
                k4: w.row_len / 4,
                upr: w.units_per_row(),
                row0: chunk.rows.start,
                rows: chunk.rows.end - chunk.rows.start,
                zero_above: u32::from(i == last),
                groups_y: gy,
                _pad: 0,
            };
            let mut entries = vec![entry(1, &chunk.quants), entry(3, ids), entry(4, out)];
            if has_scales(self.ty) {
                if let Some(s) = &chunk.scales {
                    entries.push(entry(2, s));
                }
            }
            ctx.dispatch(
                pass,
                "embedding",
                &self.pipeline,
                &params,
                &entries,
                [gx, gy, gz],
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quant;
    use crate::gpu::testing::{assert_close, ctx, random_f32, rng, POISON};
    use crate::gpu::weights::quant_bytes;

    fn gather(emb: &Embedding, w: &DeviceTensor, ids: &[u32]) -> Vec<f32> {
        let ctx = ctx();
        let k = w.row_len as usize;
        let idb = ctx.storage_from("ids", ids).unwrap();
        let out = ctx
            .storage_from("out", &vec![POISON; ids.len() * k])
            .unwrap();
        let mut enc = ctx.encoder("embedding test");
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            emb.encode(ctx, &mut pass, w, &idb, &out, ids.len() as u32)
                .unwrap();
        }
        ctx.submit("embedding test", enc).unwrap();
        ctx.read_range(&out, 0, (ids.len() * k * 4) as u64).unwrap()
    }

    /// Every type, whole and split into row chunks of about 7 rows, with
    /// repeated and out-of-order ids and one id past the end (zeros),
    /// against the CPU dequantization of those rows.
    #[test]
    fn gathers_rows_for_every_type() {
        let ctx = ctx();
        let n = 50;
        let ids = [7u32, 0, 49, 7, 23, 1, 48, 50_000, 30, 7, 12];
        for ty in GgmlType::ALL {
            let k = if ty.block_elems() == 256 { 512 } else { 96 };
            let vals = random_f32(&mut rng(ty.id() as u64), k * n, 2.0);
            let bytes = quant::quantize(ty, &vals);
            let table = quant::dequantize_vec(ty, &bytes, k * n);
            let mut want = Vec::new();
            for &id in &ids {
                match table.get(id as usize * k..(id as usize + 1) * k) {
                    Some(row) => want.extend_from_slice(row),
                    None => want.extend(std::iter::repeat_n(0.0, k)),
                }
            }
            let emb = Embedding::new(ctx, ty).unwrap();
            let whole = DeviceTensor::upload(ctx, "emb", ty, [k, n], &bytes).unwrap();
            let limit = (quant_bytes(ty, k / ty.block_elems()) * 7) as u64;
            let split =
                DeviceTensor::upload_with_limit(ctx, "emb", ty, [k, n], &bytes, limit).unwrap();
            assert!(
                split.chunks.len() >= 7,
                "{ty}: {} chunks",
                split.chunks.len()
            );
            // The dequantizers match the CPU's up to an fma's rounding.
            let amax = table.iter().fold(0f32, |a, v| a.max(v.abs()));
            let tol = amax * 2f32.powi(-22);
            assert_close(
                &format!("embedding {ty}"),
                &gather(&emb, &whole, &ids),
                &want,
                tol,
            );
            assert_close(
                &format!("embedding {ty} split"),
                &gather(&emb, &split, &ids),
                &want,
                tol,
            );
        }
    }

    #[test]
    fn shape_mistakes_are_errors() {
        let ctx = ctx();
        let emb = Embedding::new(ctx, GgmlType::Q8_0).unwrap();
        let bytes = quant::quantize(GgmlType::F16, &[0.0; 64]);
        let w = DeviceTensor::upload(ctx, "w", GgmlType::F16, [32, 2], &bytes).unwrap();
        let ids = ctx.storage("ids", 16).unwrap();
        let out = ctx.storage("out", 32 * 4).unwrap();
        let mut enc = ctx.encoder("t");
        let mut pass = enc.begin_compute_pass(&Default::default());
        let e = emb.encode(ctx, &mut pass, &w, &ids, &out, 1).unwrap_err();
        assert!(e.to_string().contains("built for Q8_0"), "{e}");
        let emb = Embedding::new(ctx, GgmlType::F16).unwrap();
        let e = emb.encode(ctx, &mut pass, &w, &ids, &out, 2).unwrap_err();
        assert!(e.to_string().contains("256 of output"), "{e}");
    }
}
