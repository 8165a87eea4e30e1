//! A request's sampling settings, as the API validated them. Plain data: the
//! [`Sampler`](super::Sampler) applies them.

/// A request's sampling settings, validated by the API layer before they get here.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 1.0 keeps everything.
    pub top_p: f32,
    /// 0 keeps everything.
    pub top_k: usize,
    /// 0.0 keeps everything; otherwise drop tokens below `min_p * p_max`.
    pub min_p: f32,
    /// 1.0 is off. Applied to every token seen in the prompt or the output (vLLM's convention).
    pub repetition_penalty: f32,
    /// OpenAI's: subtracted once from every token already in the output.
    pub presence_penalty: f32,
    /// OpenAI's: subtracted per occurrence in the output.
    pub frequency_penalty: f32,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Greedy with no penalty: the device's argmax gives the answer, and the
    /// logits row need not be read back.
    pub fn is_device_greedy(&self) -> bool {
        self.temperature == 0.0 && !self.has_penalties()
    }

    pub fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_greedy_stays_on_the_device() {
        assert!(SamplingParams::greedy().is_device_greedy());
        assert!(!SamplingParams::default().is_device_greedy());
        // A penalty needs the row even at temperature 0.
        let penalised = SamplingParams {
            repetition_penalty: 1.1,
            ..SamplingParams::greedy()
        };
        assert!(penalised.has_penalties() && !penalised.is_device_greedy());
    }
}
