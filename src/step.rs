//! The step's work order, as the scheduler hands it to the model, and what
//! the model gives back: plain data, lower than both (the scheduler writes
//! it, the model runs it; neither imports the other). No GPU handles,
//! so it can travel in an actor message and be checked in a unit test; this
//! module imports nothing of the crate.

/// One step for the model: the new tokens of every scheduled sequence, laid
/// out token-major, and where each token's K/V goes in the paged cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchInput {
    /// New token ids, `[M]`.
    pub tokens: Vec<u32>,
    /// Each token's absolute position in its sequence, `[M]`.
    pub positions: Vec<u32>,
    /// Index into `block_tables` of each token's sequence, `[M]`.
    pub seq_of_token: Vec<u32>,
    /// `block_id * block_size + position % block_size` for each token, `[M]`.
    pub slot_mapping: Vec<u32>,
    /// Block ids of each scheduled sequence, covering at least its positions so far.
    pub block_tables: Vec<Vec<u32>>,
    /// Token rows whose next-token distribution is needed, in order.
    pub samples: Vec<SampleRow>,
}

/// A token row whose logits the model must turn into a next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRow {
    /// Row index into the batch's tokens.
    pub row: u32,
    /// Return the full logits row (CPU sampling, logprobs), not only the argmax.
    pub want_logits: bool,
}

impl BatchInput {
    pub fn num_tokens(&self) -> usize {
        self.tokens.len()
    }

    pub fn max_blocks_per_seq(&self) -> usize {
        self.block_tables.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The block tables as one `[S][max_blocks_per_seq]` array (unused
    /// entries zero; the kernels never read past a token's position).
    pub fn flat_block_tables(&self) -> (Vec<u32>, usize) {
        let stride = self.max_blocks_per_seq().max(1);
        let mut flat = vec![0u32; self.block_tables.len() * stride];
        for (s, t) in self.block_tables.iter().enumerate() {
            flat[s * stride..s * stride + t.len()].copy_from_slice(t);
        }
        (flat, stride)
    }
}

/// The model's answer for one [`SampleRow`].
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOutput {
    /// The device argmax of the row.
    pub argmax: u32,
    /// The full logits row, when asked for.
    pub logits: Option<Vec<f32>>,
}

/// Why a shard refused a step's work order: it does not fit the sizes the
/// shard was built for, or names a slot, token or hidden state it cannot
/// have. A bug in whoever built the batch, never a client's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{tokens} tokens in a step; the shard takes 1..={max}")]
    Tokens { tokens: usize, max: usize },
    #[error("{samples} sampled rows; the shard takes at most {max}")]
    Samples { samples: usize, max: usize },
    #[error(
        "{seqs} sequences with up to {blocks} blocks; the shard takes {max_seqs} with {max_blocks}"
    )]
    Sequences {
        seqs: usize,
        blocks: usize,
        max_seqs: usize,
        max_blocks: usize,
    },
    #[error("a slot or token id is out of range")]
    OutOfRange,
    #[error("hidden states of {floats} floats for {tokens} tokens")]
    Hidden { floats: usize, tokens: u32 },
}
