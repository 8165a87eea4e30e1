//! [`IncrementalDecoder`]: one stream's token ids to text, holding back the
//! bytes of a UTF-8 character split across tokens. It owns only those
//! pending bytes; the token bytes come from [`Tokenizer::decode_bytes`].

use super::vocab::{Tokenizer, TokenizerError};

/// Decodes a stream of token ids to text without ever emitting half of a
/// UTF-8 character: bytes of an incomplete character are held until the
/// token that completes them arrives. Byte sequences that can never be valid
/// become one U+FFFD each, so the concatenated output always equals
/// `String::from_utf8_lossy` of all the bytes.
#[derive(Debug, Clone, Default)]
pub struct IncrementalDecoder {
    pending: Vec<u8>,
    skip_special_tokens: bool,
}

impl IncrementalDecoder {
    pub fn new(skip_special_tokens: bool) -> Self {
        Self {
            pending: Vec::new(),
            skip_special_tokens,
        }
    }

    /// Adds one token; returns the text it completes (often empty while a
    /// multi-byte character is split across tokens).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        let bytes = tokenizer.decode_bytes(&[id], self.skip_special_tokens)?;
        Ok(self.push_bytes(&bytes))
    }

    /// Adds raw bytes; returns the complete characters now available.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid_end = start + e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[start..valid_end]));
                    start = valid_end;
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start += bad;
                        }
                        // An incomplete character at the end: wait for more.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Ends the stream: an incomplete character left over becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
