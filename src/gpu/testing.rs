//! Shared helpers for kernel tests: one device per test process, seeded random
//! inputs, a poison value for outputs, and error comparison.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};

use super::GpuContext;

/// The device every kernel test runs on (created once per test binary).
pub fn ctx() -> &'static GpuContext {
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    CTX.get_or_init(|| {
        GpuContext::new(&Default::default()).expect("a Vulkan device (run scripts/setup)")
    })
}

/// Written into output buffers before a kernel runs, so an element the kernel
/// forgot to write fails the comparison.
pub const POISON: f32 = f32::NAN;

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// `n` uniform values in `[-scale, scale)`.
pub fn random_f32(rng: &mut impl Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Largest absolute difference; NaN anywhere counts as infinite.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() {
                f32::INFINITY
            } else {
                d
            }
        })
        .fold(0.0, f32::max)
}

/// Asserts `got` is within `tol` of `want` everywhere, and prints the max error
/// (the closing notes quote these).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let err = max_abs_diff(got, want);
    eprintln!("max abs error {what}: {err:e}");
    assert!(err <= tol, "{what}: max abs error {err} > {tol}");
}
