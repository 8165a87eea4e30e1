//! One sequence's sampler: the penalties, then top-k, temperature, top-p
//! and min-p, then one draw from the sequence's own RNG. The RNG is seeded
//! from the request's `seed` (or from entropy when none is given), so the
//! same seed and the same logits give the same tokens.

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{apply_penalties, SamplingParams};

/// One sequence's sampler: its settings and its RNG.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { params, rng }
    }

    /// Picks the next token from `logits` (one row, length = vocab size).
    /// `prompt` and `output` are the sequence's ids so far, for the penalties.
    pub fn sample(&mut self, logits: &mut [f32], prompt: &[u32], output: &[u32]) -> u32 {
        apply_penalties(&self.params, logits, prompt, output);
        if self.params.temperature == 0.0 {
            return argmax(logits);
        }
        let candidates = self.candidates(logits);
        let total: f32 = candidates.iter().map(|c| c.1).sum();
        let mut r = self.rng.random::<f32>() * total;
        for &(id, p) in &candidates {
            if r < p {
                return id;
            }
            r -= p;
        }
        candidates.last().map_or(0, |c| c.0)
    }

    /// The tokens that survive top-k, top-p and min-p, with their unnormalised
    /// probabilities after temperature, most likely first.
    fn candidates(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let p = &self.params;
        let mut idx: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        // Sort by logit, ties by lower id, so the candidate order is reproducible.
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < idx.len() {
            idx.select_nth_unstable_by(p.top_k - 1, by_logit);
            idx.truncate(p.top_k);
        }
        idx.sort_unstable_by(by_logit);
        if idx.is_empty() {
            return vec![(0, 1.0)];
        }
        let max = idx[0].1;
        let inv_t = 1.0 / p.temperature;
        for c in idx.iter_mut() {
            c.1 = ((c.1 - max) * inv_t).exp();
        }
        let total: f32 = idx.iter().map(|c| c.1).sum();
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = idx.len();
            for (i, c) in idx.iter().enumerate() {
                cum += c.1 / total;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            idx.truncate(keep);
        }
        if p.min_p > 0.0 {
            // idx[0] holds the largest probability, exp(0) = 1 before normalising.
            let floor = p.min_p * idx[0].1;
            idx.retain(|c| c.1 >= floor);
        }
        idx
    }
}

/// Index of the largest value; the lowest index wins a tie, NaN never wins.
/// Matches the device argmax kernel's rule.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x > best_v {
            best = i;
            best_v = x;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            seed: Some(7),
            ..Default::default()
        };
        f(&mut p);
        p
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.sample(&mut [0.0, 3.0, 1.0, 3.0], &[], &[]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, -2.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seed_differs() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = |seed| {
            let mut s = Sampler::new(params(|p| p.seed = Some(seed)));
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_k_limits_choices() {
        let logits = vec![0.1, 0.5, 0.4, 0.45, 0.0];
        let mut s = Sampler::new(params(|p| p.top_k = 1));
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits.clone(), &[], &[]), 1);
        }
        let mut s = Sampler::new(params(|p| p.top_k = 2));
        for _ in 0..200 {
            let t = s.sample(&mut logits.clone(), &[], &[]);
            assert!(t == 1 || t == 3, "top_k=2 sampled {t}");
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Probabilities ~ 0.6, 0.3, 0.1: top_p 0.8 keeps the first two only.
        let logits: Vec<f32> = [0.6f32, 0.3, 0.1].iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(params(|p| p.top_p = 0.8));
        let mut seen = [0; 3];
        for _ in 0..500 {
            seen[s.sample(&mut logits.clone(), &[], &[]) as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        assert!(seen[0] > seen[1] && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits: Vec<f32> = [0.5f32, 0.4, 0.1].iter().map(|p| p.ln()).collect();
        let mut s = Sampler::new(params(|p| p.min_p = 0.3));
        for _ in 0..300 {
            assert_ne!(s.sample(&mut logits.clone(), &[], &[]), 2);
        }
    }

    #[test]
    fn temperature_sharpens_the_distribution() {
        let logits = vec![1.0, 0.0];
        let count = |t: f32| {
            let mut s = Sampler::new(params(|p| p.temperature = t));
            (0..2000)
                .filter(|_| s.sample(&mut logits.clone(), &[], &[]) == 0)
                .count()
        };
        // p(0) = 0.73 at T=1, 0.99995 at T=0.1, 0.62 at T=2.
        let (cold, warm, hot) = (count(0.1), count(1.0), count(2.0));
        assert!(cold > 1990, "{cold}");
        assert!(warm > hot && (1300..1600).contains(&warm), "{warm} {hot}");
    }
}
