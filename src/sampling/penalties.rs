//! Repetition, presence and frequency penalties: the first change made to a
//! row of logits, before any token is ruled out.

use std::collections::HashMap;

use super::SamplingParams;

/// Repetition (multiplicative, on prompt and output tokens), presence and
/// frequency (additive, on output tokens) penalties, in place.
pub fn apply_penalties(p: &SamplingParams, logits: &mut [f32], prompt: &[u32], output: &[u32]) {
    if !p.has_penalties() {
        return;
    }
    let vocab = logits.len();
    if p.repetition_penalty != 1.0 {
        let mut seen = vec![false; vocab];
        for &t in prompt.iter().chain(output) {
            if let Some(s) = seen.get_mut(t as usize) {
                *s = true;
            }
        }
        for (l, s) in logits.iter_mut().zip(&seen) {
            if *s {
                *l = if *l > 0.0 {
                    *l / p.repetition_penalty
                } else {
                    *l * p.repetition_penalty
                };
            }
        }
    }
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        let mut counts = HashMap::<u32, u32>::new();
        for &t in output {
            *counts.entry(t).or_default() += 1;
        }
        for (t, n) in counts {
            if let Some(l) = logits.get_mut(t as usize) {
                *l -= p.presence_penalty + p.frequency_penalty * n as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_follow_their_definitions() {
        let p = SamplingParams {
            repetition_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            seed: Some(7),
            ..Default::default()
        };
        let mut l = vec![2.0, -2.0, 2.0, 2.0];
        // token 0 in the prompt, token 1 in prompt, token 2 twice in the output.
        apply_penalties(&p, &mut l, &[0, 1], &[2, 2]);
        assert_eq!(l[0], 1.0);
        assert_eq!(l[1], -4.0);
        assert_eq!(l[2], 2.0 / 2.0 - 0.5 - 0.25 * 2.0);
        assert_eq!(l[3], 2.0);
    }
}
