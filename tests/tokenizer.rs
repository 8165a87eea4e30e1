//! The tokenizer and chat template against the real default model
//! (SmolLM2-135M-Instruct, byte-level BPE with the `smollm` pre-tokenizer)
//! and llama.cpp's reference token ids in `tests/data/`.

#[path = "common/reference.rs"]
mod reference;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;
use wgserve::gguf::reader::GgufFile;
use wgserve::tokenizer::chat_template::{ChatMessage, ChatTemplate};
use wgserve::tokenizer::{IncrementalDecoder, Tokenizer, TokenizerError};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = manifest_dir().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let gguf = GgufFile::open(&path)
            .unwrap_or_else(|e| panic!("the default model must be at {}: {e}", path.display()));
        Tokenizer::from_gguf(&gguf.metadata).expect("SmolLM2's tokenizer builds")
    })
}

fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| {
        let path = reference::data_dir().join("smollm2-greedy.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the reference file {} is missing ({e}); it is part of the repository \
                 (tests/data/)",
                path.display()
            )
        });
        serde_json::from_str(&text).expect("the reference file is valid JSON")
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

#[test]
fn every_reference_prompt_encodes_to_llama_cpp_ids() {
    let tok = tokenizer();
    let prompts = reference()["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 6);
    for p in prompts {
        let text = p["prompt"].as_str().unwrap();
        let want = ids(&p["prompt_ids"]);
        assert_eq!(tok.encode(text, false).unwrap(), want, "prompt {text:?}");
        // add_bos_token is false, so asking for special tokens adds nothing.
        assert_eq!(tok.encode(text, true).unwrap(), want, "prompt {text:?}");
        // Each id's piece is llama.cpp's piece.
        let pieces: Vec<String> = want
            .iter()
            .map(|&id| tok.token_to_piece(id).unwrap())
            .collect();
        let want_pieces: Vec<&str> = p["prompt_pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(pieces, want_pieces, "prompt {text:?}");
    }
}

#[test]
fn reference_generations_decode_to_llama_cpp_text() {
    let tok = tokenizer();
    for p in reference()["prompts"].as_array().unwrap() {
        let gen = ids(&p["gen_ids"]);
        assert_eq!(
            tok.decode(&gen, false).unwrap(),
            p["gen_text"].as_str().unwrap()
        );
        let pieces: Vec<String> = gen
            .iter()
            .map(|&id| tok.token_to_piece(id).unwrap())
            .collect();
        let want: Vec<&str> = p["gen_pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(pieces, want);
    }
}

#[test]
fn chat_example_prompt_encodes_to_llama_cpp_ids() {
    let tok = tokenizer();
    let chat = &reference()["chat_example"];
    let text = chat["templated_prompt"].as_str().unwrap();
    let want = ids(&chat["templated_prompt_ids"]);
    assert_eq!(tok.encode(text, false).unwrap(), want);
    assert_eq!(
        want.len() as u64,
        chat["response"]["usage"]["prompt_tokens"].as_u64().unwrap()
    );
}

#[test]
fn default_chat_template_renders_chatml_with_its_default_system_prompt() {
    let tok = tokenizer();
    let source = tok.chat_template().expect("SmolLM2 ships a chat template");
    let template = ChatTemplate::new(source).unwrap();
    assert!(!template.is_fallback());
    let chat = &reference()["chat_example"];
    let messages: Vec<ChatMessage> =
        serde_json::from_value(chat["request"]["messages"].clone()).unwrap();
    let bos = tok.bos_token().unwrap();
    let eos = tok.eos_token().unwrap();
    assert_eq!((bos, eos), ("<|im_start|>", "<|im_end|>"));
    let text = template.render(&messages, true, bos, eos).unwrap();
    assert_eq!(text, chat["templated_prompt"].as_str().unwrap());
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    // Rendered and encoded, it is exactly the prompt llama.cpp fed the model.
    assert_eq!(
        tok.encode(&text, true).unwrap(),
        ids(&chat["templated_prompt_ids"])
    );

    // A system message of the user's own replaces the default one, and
    // without the generation prompt the text ends after the last turn.
    let own = [
        ChatMessage::new("system", "Answer in French."),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Salut"),
    ];
    assert_eq!(
        template.render(&own, false, bos, eos).unwrap(),
        "<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nSalut<|im_end|>\n"
    );
}

#[test]
fn special_tokens_in_text_are_single_ids() {
    let tok = tokenizer();
    assert_eq!(tok.encode("<|im_start|>", false).unwrap(), vec![1]);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_eq!(ids.last(), Some(&2));
    assert_eq!(ids.iter().filter(|&&i| i <= 2).count(), 2);
    assert_eq!(
        tok.decode(&ids, false).unwrap(),
        "<|im_start|>user\nHi<|im_end|>"
    );
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi");
    assert_eq!(tok.decode_bytes(&ids, true).unwrap(), b"user\nHi".to_vec());
    assert!(tok.is_special(1) && !tok.is_special(ids[1]));
}

#[test]
fn tokenizer_and_template_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Tokenizer>();
    shareable::<ChatTemplate>();
}

#[test]
fn vocabulary_facts_of_the_default_model() {
    let tok = tokenizer();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert!(!tok.adds_bos());
    // EOS (<|im_end|>) first, then <|endoftext|>, which llama.cpp also stops on.
    assert_eq!(tok.stop_ids(), &[2, 0]);
    assert_eq!(tok.id_to_token(7042), Some("ĠParis"));
    assert_eq!(tok.token_bytes(7042), Some(&b" Paris"[..]));
    assert_eq!(tok.id_to_token(49152), None);
    assert!(
        tok.description().contains("smollm"),
        "{}",
        tok.description()
    );
}

#[test]
fn decode_of_an_out_of_range_id_is_an_error() {
    let tok = tokenizer();
    let err = tok.decode(&[504, 49152], false).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::UnknownTokenId {
                id: 49152,
                vocab_size: 49152
            }
        ),
        "{err}"
    );
    assert!(tok.decode_bytes(&[u32::MAX], false).is_err());
}

const ROUND_TRIP: &[&str] = &[
    "",
    "Hello, world!",
    "日本語のテキストと中文文本，한국어 텍스트",
    "emoji 🦀🚀 and ZWJ 👩‍👩‍👧‍👦 👨🏽‍💻 and flags 🇫🇷🇯🇵🏳️‍🌈",
    "accents: café naïve Ångström Øresund ŒUVRE façade",
    "combining: e\u{301} a\u{308}\u{323} Z\u{335}\u{30d}\u{36a} और हिन्दी",
    "fn main() {\n\tlet x = 1;\n\t\tif x  ==   2 {}\n}\n\n\n",
    "    leading and trailing spaces   ",
    "digits 0123456789 3.14159 1e-10 -42 1,000,000",
    "mixed\r\nline\rendings\u{a0}nbsp\u{2028}sep",
    "<|im_start|>user\nquestion<|im_end|>",
    "Ελληνικά Русский עברית العربية",
];

#[test]
fn decode_of_encode_gives_back_unicode_text() {
    let tok = tokenizer();
    for s in ROUND_TRIP {
        let ids = tok.encode(s, false).unwrap();
        assert_eq!(&tok.decode(&ids, false).unwrap(), s, "ids {ids:?}");
        assert_eq!(tok.decode_bytes(&ids, false).unwrap(), s.as_bytes());
    }
}

#[test]
fn incremental_decoding_reassembles_characters_split_across_tokens() {
    let tok = tokenizer();
    let text = "Crab 🦀, family 👩‍👩‍👧‍👦, 中文 and ǅ done";
    let ids = tok.encode(text, false).unwrap();
    // The point of the test: some tokens hold only part of a character.
    let partial = ids
        .iter()
        .filter(|&&id| std::str::from_utf8(tok.token_bytes(id).unwrap()).is_err())
        .count();
    assert!(partial >= 2, "no token splits a character: {ids:?}");

    let mut dec = IncrementalDecoder::new(false);
    let mut out = String::new();
    let mut held = 0;
    for &id in &ids {
        let chunk = dec.push(tok, id).unwrap();
        assert!(
            !chunk.contains('\u{FFFD}'),
            "broken character after id {id}"
        );
        if chunk.is_empty() && dec.pending_len() > 0 {
            held += 1;
        }
        out.push_str(&chunk);
    }
    out.push_str(&dec.finish());
    assert_eq!(out, text);
    assert!(held >= 1, "the decoder never had to hold bytes back");
}

#[test]
fn incremental_decoding_of_invalid_bytes_matches_lossy_decoding() {
    // A lone continuation byte, a truncated 3-byte sequence followed by ASCII,
    // and a 4-byte character fed one byte at a time.
    let chunks: &[&[u8]] = &[
        b"a\x80b",
        b"\xe4\xb8",
        b"x",
        b"\xf0",
        b"\x9f",
        b"\xa6",
        b"\x80",
        b"\xe4",
    ];
    let all: Vec<u8> = chunks.concat();
    let mut dec = IncrementalDecoder::new(false);
    let mut out = String::new();
    for c in chunks {
        out.push_str(&dec.push_bytes(c));
    }
    assert_eq!(dec.pending_len(), 1);
    out.push_str(&dec.finish());
    assert_eq!(out, String::from_utf8_lossy(&all));
    assert_eq!(out, "a\u{FFFD}b\u{FFFD}x🦀\u{FFFD}");
}

#[test]
fn a_saved_tokenizer_json_loads_and_encodes_the_same() {
    let tok = tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("tokenizer.json");
    tok.inner().save(&json_path, false).unwrap();
    let config = serde_json::json!({
        "bos_token": "<|im_start|>",
        "eos_token": { "content": "<|im_end|>" },
        "chat_template": tok.chat_template().unwrap(),
    });
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();

    let loaded = Tokenizer::from_file(&json_path).unwrap();
    assert_eq!(loaded.vocab_size(), tok.vocab_size());
    assert_eq!(loaded.bos_id(), Some(1));
    assert_eq!(loaded.eos_id(), Some(2));
    assert_eq!(loaded.stop_ids(), tok.stop_ids());
    assert_eq!(loaded.chat_template(), tok.chat_template());
    for p in reference()["prompts"].as_array().unwrap() {
        let text = p["prompt"].as_str().unwrap();
        assert_eq!(loaded.encode(text, false).unwrap(), ids(&p["prompt_ids"]));
    }
    for s in ROUND_TRIP {
        let ids = loaded.encode(s, false).unwrap();
        assert_eq!(&loaded.decode(&ids, false).unwrap(), s);
        assert_eq!(loaded.decode_bytes(&ids, false).unwrap(), s.as_bytes());
    }
    assert!(loaded.is_special(1));

    let missing = Tokenizer::from_file(&dir.path().join("nope.json")).unwrap_err();
    assert!(matches!(missing, TokenizerError::Load { .. }), "{missing}");

    // A template in its own file (newer checkpoints) is found too.
    let config = serde_json::json!({"eos_token": "<|im_end|>"});
    std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ messages[0].content }}",
    )
    .unwrap();
    let loaded = Tokenizer::from_file(&json_path).unwrap();
    assert_eq!(loaded.chat_template(), Some("{{ messages[0].content }}"));
}
