//! Log-probabilities for the `logprobs` / `top_logprobs` a request asks for:
//! the log-softmax of a row as the model gave it (before penalties), and its
//! most likely entries.

/// Log-softmax of one row, in f64 for the sum.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    logits.iter().map(|&l| (l as f64 - lse) as f32).collect()
}

/// The `k` largest entries of a log-softmax row as `(id, logprob)`, largest
/// first (ties by lower id, so the order is reproducible).
pub fn top_logprobs(logprobs: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<(u32, f32)> = logprobs
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l))
        .collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_by(cmp);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_sums_to_one() {
        let ls = log_softmax(&[1.0, 2.0, 3.0, -1.0]);
        let s: f32 = ls.iter().map(|l| l.exp()).sum();
        assert!((s - 1.0).abs() < 1e-6);
    }

    #[test]
    fn top_logprobs_are_the_largest_in_order_ties_by_lower_id() {
        let row = [-3.0, -1.0, -2.0, -1.0, -0.5];
        assert_eq!(top_logprobs(&row, 3), vec![(4, -0.5), (1, -1.0), (3, -1.0)]);
        assert_eq!(top_logprobs(&row, 0), Vec::new());
        assert_eq!(top_logprobs(&row, 9).len(), row.len());
    }
}
