//! The GGUF layer through its public API: files written by `GgufWriter` read
//! back unchanged, every tensor type dequantizes to known values, truncated
//! and corrupt files give typed errors (never a panic), and the real default
//! model's header reads as llama.cpp reports it.

use std::path::PathBuf;

use wgserve::gguf::error::GgufError;
use wgserve::gguf::metadata::MetaValue;
use wgserve::gguf::reader::GgufFile;
use wgserve::gguf::writer::GgufWriter;
use wgserve::gguf::GgmlType;

/// One value of every GGUF type, extremes included, plus arrays of each.
fn every_value() -> Vec<(&'static str, MetaValue)> {
    use MetaValue::*;
    vec![
        ("t.u8", U8(u8::MAX)),
        ("t.i8", I8(i8::MIN)),
        ("t.u16", U16(u16::MAX)),
        ("t.i16", I16(i16::MIN)),
        ("t.u32", U32(u32::MAX)),
        ("t.i32", I32(i32::MIN)),
        ("t.u64", U64(u64::MAX)),
        ("t.i64", I64(i64::MIN)),
        ("t.f32", F32(-1.5e-30)),
        ("t.f64", F64(std::f64::consts::PI)),
        ("t.bool.true", Bool(true)),
        ("t.bool.false", Bool(false)),
        ("t.string", String("héllo, wörld 🦀".into())),
        ("t.string.empty", String(std::string::String::new())),
        ("a.u8", vec![0u8, 1, 255].into()),
        ("a.i8", vec![-128i8, 0, 127].into()),
        ("a.u16", vec![0u16, 65535].into()),
        ("a.i16", vec![-32768i16, 32767].into()),
        ("a.u32", vec![0u32, 7, u32::MAX].into()),
        ("a.i32", vec![i32::MIN, -1, 0, i32::MAX].into()),
        ("a.u64", vec![u64::MAX, 0].into()),
        ("a.i64", vec![i64::MIN, i64::MAX].into()),
        (
            "a.f32",
            vec![0.5f32, -2.25, f32::MAX, f32::MIN_POSITIVE].into(),
        ),
        ("a.f64", vec![1e300f64, -1e-300].into()),
        ("a.bool", vec![true, false, true].into()),
        (
            "a.string",
            MetaValue::str_array(&["", "a", "ünïcödé", "Ġthe"]),
        ),
        ("a.empty", Array(vec![])),
        (
            "a.nested",
            Array(vec![vec![1i32, 2].into(), vec![3i32].into()]),
        ),
    ]
}

fn tmp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn every_metadata_type_reads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    for version in [2, 3] {
        let mut w = GgufWriter::new();
        w.version(version);
        for (k, v) in every_value() {
            w.meta(k, v);
        }
        w.meta("t.f32.nan", MetaValue::F32(f32::NAN));
        let path = tmp_path(&dir, &format!("meta_v{version}.gguf"));
        w.write(&path).unwrap();

        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version, version);
        assert_eq!(f.path, path);
        assert_eq!(f.alignment, 32);
        assert!(f.tensors.is_empty());
        assert_eq!(f.metadata.len(), every_value().len() + 1);
        for (k, v) in every_value() {
            assert_eq!(f.metadata.get(k), Some(&v), "key {k}");
        }
        // NaN != NaN, so compare its bits.
        match f.metadata.get("t.f32.nan") {
            Some(MetaValue::F32(x)) => assert_eq!(x.to_bits(), f32::NAN.to_bits()),
            other => panic!("t.f32.nan read back as {other:?}"),
        }

        // The typed accessors over what was read.
        let m = &f.metadata;
        assert_eq!(m.u32("t.u32").unwrap(), u32::MAX);
        assert_eq!(m.u32("t.u8").unwrap(), 255);
        assert_eq!(m.u64("t.u64").unwrap(), u64::MAX);
        assert!(matches!(m.u64("t.i64"), Err(GgufError::OutOfRange { .. })));
        assert_eq!(m.f32("t.f32").unwrap(), -1.5e-30);
        assert_eq!(m.f32("t.f64").unwrap(), std::f32::consts::PI);
        assert!(m.bool("t.bool.true").unwrap());
        assert!(!m.bool("t.bool.false").unwrap());
        assert_eq!(m.str("t.string").unwrap(), "héllo, wörld 🦀");
        assert_eq!(
            m.str_array("a.string").unwrap(),
            ["", "a", "ünïcödé", "Ġthe"]
        );
        assert_eq!(m.i32_array("a.i32").unwrap(), [i32::MIN, -1, 0, i32::MAX]);
        assert_eq!(m.u32_array("a.u32").unwrap(), [0, 7, u32::MAX]);
        assert_eq!(
            m.f32_array("a.f32").unwrap(),
            [0.5, -2.25, f32::MAX, f32::MIN_POSITIVE]
        );
        assert_eq!(m.str_array("a.empty").unwrap(), Vec::<&str>::new());
        assert_eq!(m.opt_u32("absent").unwrap(), None);
        assert_eq!(m.opt_str("t.string").unwrap(), Some("héllo, wörld 🦀"));
        let keys: Vec<&str> = m.keys().collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "keys sorted and unique"
        );
    }
}

/// Known values for the tensor of type number `t`: distinct per tensor, so a
/// reader that returned another tensor's bytes would fail. For F16 and BF16
/// they are multiples of 1/8 below 32, exactly representable in both.
fn known_values(t: usize, ty: GgmlType, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| match ty {
            GgmlType::F16 | GgmlType::BF16 => ((i * 7 + t) % 200) as f32 / 8.0 - 12.5,
            _ => (i as f32 * 0.731 + t as f32).sin() * (1.0 + t as f32) + (i % 7) as f32 * 0.1,
        })
        .collect()
}

#[test]
fn every_tensor_type_dequantizes_to_known_values() {
    use wgserve::gguf::quant;
    let (row, rows) = (256usize, 3usize);
    let mut w = GgufWriter::new();
    w.alignment(64);
    for (t, ty) in GgmlType::ALL.into_iter().enumerate() {
        let values = known_values(t, ty, row * rows);
        w.tensor(
            &format!("w.{ty}"),
            &[row as u64, rows as u64],
            ty,
            quant::quantize(ty, &values),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = tmp_path(&dir, "all_types.gguf");
    w.write(&path).unwrap();

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment, 64);
    assert_eq!(f.tensors.len(), GgmlType::ALL.len());
    for (t, ty) in GgmlType::ALL.into_iter().enumerate() {
        let name = format!("w.{ty}");
        let info = f.tensor(&name).unwrap();
        assert_eq!(info.ggml_type, ty);
        assert_eq!((info.row_len(), info.n_rows()), (row, rows));
        assert_eq!(info.n_bytes() as usize, ty.bytes_for(row * rows).unwrap());
        assert_eq!(f.tensor_bytes(info).len() as u64, info.n_bytes());
        assert_eq!((f.data_offset() + info.offset) % 64, 0, "{name} aligned");

        let want = known_values(t, ty, row * rows);
        let got = f.dequantize(&name).unwrap();
        assert_eq!(got.len(), want.len());
        let block = ty.block_elems();
        let (mut max_err, mut max_rel) = (0f32, 0f32);
        for (b, (g, w)) in got.chunks(block).zip(want.chunks(block)).enumerate() {
            // The quantizers' error bound is relative to each block's largest magnitude.
            let amax = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let tol = quant::max_rel_error(ty) * amax;
            for (i, (g, w)) in g.iter().zip(w).enumerate() {
                let err = (g - w).abs();
                max_err = max_err.max(err);
                max_rel = max_rel.max(err / amax);
                match ty {
                    GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                        assert_eq!(g.to_bits(), w.to_bits(), "{name}[{}]", b * block + i)
                    }
                    _ => assert!(
                        err <= tol,
                        "{name}[{}]: got {g}, want {w}, tol {tol}",
                        b * block + i
                    ),
                }
            }
        }
        println!(
            "{name}: max abs error {max_err:.3e}, max error / block amax {max_rel:.4} (bound {})",
            quant::max_rel_error(ty)
        );
    }
}

/// Blocks built by hand with known scales and quants, so the expected values
/// do not depend on any quantizer: Q8_0 and Q4_1, the default model's types.
#[test]
fn hand_built_blocks_dequantize_exactly() {
    let f16 = |x: f32| half::f16::from_f32(x).to_le_bytes();
    // Q8_0: d = 0.5, qs[i] = i - 16 -> (i - 16) * 0.5.
    let mut q8 = f16(0.5).to_vec();
    q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
    // Q4_1: d = 0.25, m = -1, nibble j of the low halves = j, of the high halves = 15 - j.
    let mut q41 = f16(0.25).to_vec();
    q41.extend(f16(-1.0));
    q41.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let bytes = GgufWriter::new()
        .tensor("q8", &[32], GgmlType::Q8_0, q8)
        .tensor("q41", &[32], GgmlType::Q4_1, q41)
        .to_bytes();
    let f = GgufFile::from_bytes("hand.gguf", &bytes).unwrap();

    let want: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect();
    assert_eq!(f.dequantize("q8").unwrap(), want);
    let want: Vec<f32> = (0..32)
        .map(|i| if i < 16 { i as f32 } else { 31.0 - i as f32 } * 0.25 - 1.0)
        .collect();
    assert_eq!(f.dequantize("q41").unwrap(), want);
    assert!(matches!(
        f.dequantize("nope"),
        Err(GgufError::MissingTensor { .. })
    ));
}

/// A valid file with metadata and several tensors, used by the corruption tests.
fn sample_file() -> Vec<u8> {
    let f32s: Vec<f32> = (0..40).map(|i| i as f32 * 0.25 - 3.0).collect();
    let f16s: Vec<half::f16> = (0..64).map(|i| half::f16::from_f32(i as f32)).collect();
    GgufWriter::new()
        .meta("general.architecture", "llama".into())
        .meta("llama.embedding_length", MetaValue::U32(8))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::str_array(&["<s>", "a", "b"]),
        )
        .tensor(
            "first.weight",
            &[8, 5],
            GgmlType::F32,
            bytemuck::cast_slice(&f32s).to_vec(),
        )
        .tensor(
            "second.weight",
            &[64],
            GgmlType::F16,
            bytemuck::cast_slice(&f16s).to_vec(),
        )
        .tensor(
            "third.weight",
            &[3],
            GgmlType::F32,
            bytemuck::cast_slice(&f32s[..3]).to_vec(),
        )
        .to_bytes()
}

/// Byte position of the tensor directory entry fields that follow `name`.
fn after_name(bytes: &[u8], name: &str) -> usize {
    let at = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .unwrap_or_else(|| panic!("{name} not in file"));
    at + name.len()
}

#[test]
fn sample_file_reads_back() {
    let bytes = sample_file();
    let f = GgufFile::from_bytes("sample.gguf", &bytes).unwrap();
    assert_eq!(f.tensors.len(), 3);
    let t = f.tensor("first.weight").unwrap();
    assert_eq!(
        (t.row_len(), t.n_rows(), t.n_elems(), t.n_bytes()),
        (8, 5, 40, 160)
    );
    let second = f.tensor("second.weight").unwrap();
    assert_eq!(second.offset, 160);
    assert_eq!(f.tensor("third.weight").unwrap().offset, 288);
    for t in &f.tensors {
        assert_eq!((f.data_offset() + t.offset) % 32, 0, "{} aligned", t.name);
    }
    let raw = f.tensor_bytes(second);
    assert_eq!(raw.len(), 128);
    assert_eq!(half::f16::from_le_bytes([raw[6], raw[7]]).to_f32(), 3.0);
    assert_eq!(
        f.tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["first.weight", "second.weight", "third.weight"]
    );
}

#[test]
fn truncated_files_are_errors_never_panics() {
    let bytes = sample_file();
    let full = GgufFile::from_bytes("full.gguf", &bytes).unwrap();
    let header_end = full.data_offset() as usize;
    let last = full.tensors.last().unwrap();
    let data_end = header_end + (last.offset + last.n_bytes()) as usize;

    let lens = (0..header_end)
        .chain((header_end..data_end).step_by(7))
        .chain([data_end - 1]);
    for len in lens {
        let e = GgufFile::from_bytes("cut.gguf", &bytes[..len]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("cut.gguf: "), "len {len}: {msg}");
        if len >= header_end {
            assert!(
                matches!(e, GgufError::TensorOutOfBounds { .. }),
                "len {len}: {msg}"
            );
        }
    }
    // Only the padding after the last tensor may go.
    assert!(GgufFile::from_bytes("cut.gguf", &bytes[..data_end]).is_ok());

    // The same through real files and the memory map, at a few lengths.
    let dir = tempfile::tempdir().unwrap();
    for len in [
        0,
        3,
        4,
        8,
        23,
        24,
        60,
        header_end - 1,
        header_end,
        data_end - 1,
    ] {
        let path = tmp_path(&dir, &format!("cut{len}.gguf"));
        std::fs::write(&path, &bytes[..len]).unwrap();
        let e = GgufFile::open(&path).unwrap_err();
        assert!(e.to_string().contains(&format!("cut{len}.gguf")), "{e}");
    }
    let e = GgufFile::open(tmp_path(&dir, "absent.gguf")).unwrap_err();
    assert!(matches!(e, GgufError::Io { .. }), "{e}");
}

#[test]
fn corrupt_fields_give_the_right_error() {
    let good = sample_file();

    let mut bytes = good.clone();
    bytes[..4].copy_from_slice(b"GGML");
    let e = GgufFile::from_bytes("x.gguf", &bytes).unwrap_err();
    assert!(
        matches!(e, GgufError::BadMagic { found, .. } if &found == b"GGML"),
        "{e}"
    );
    assert!(
        e.to_string().contains("x.gguf") && e.to_string().contains("GGUF"),
        "{e}"
    );

    let mut bytes = good.clone();
    bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
    let e = GgufFile::from_bytes("x.gguf", &bytes).unwrap_err();
    assert!(
        matches!(e, GgufError::UnsupportedVersion { version: 7, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("version 7"), "{e}");

    // An unknown tensor type id: the type follows n_dims (u32) and two dims (u64).
    let mut bytes = good.clone();
    let at = after_name(&bytes, "second.weight") + 4 + 8;
    assert_eq!(&bytes[at..at + 4], &GgmlType::F16.id().to_le_bytes());
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = GgufFile::from_bytes("x.gguf", &bytes).unwrap_err();
    assert!(
        matches!(&e, GgufError::UnknownTensorType { tensor, type_id: 99, .. } if tensor == "second.weight"),
        "{e}"
    );
    let msg = e.to_string();
    assert!(msg.contains("second.weight") && msg.contains("99"), "{msg}");

    // A misaligned tensor offset: 160 becomes 164.
    let mut bytes = good.clone();
    let at = after_name(&bytes, "second.weight") + 4 + 8 + 4;
    assert_eq!(&bytes[at..at + 8], &160u64.to_le_bytes());
    bytes[at..at + 8].copy_from_slice(&164u64.to_le_bytes());
    let e = GgufFile::from_bytes("x.gguf", &bytes).unwrap_err();
    assert!(
        matches!(&e, GgufError::MisalignedTensor { tensor, offset: 164, alignment: 32, .. } if tensor == "second.weight"),
        "{e}"
    );

    // An unknown metadata value type.
    let mut bytes = good.clone();
    let at = after_name(&bytes, "llama.embedding_length");
    bytes[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    let e = GgufFile::from_bytes("x.gguf", &bytes).unwrap_err();
    assert!(
        matches!(&e, GgufError::UnknownValueType { key, type_id: 13, .. } if key == "llama.embedding_length"),
        "{e}"
    );

    // Invalid UTF-8 in a string.
    let mut bytes = good.clone();
    let at = after_name(&bytes, "<s>") - 3;
    bytes[at] = 0xff;
    let e = GgufFile::from_bytes("x.gguf", &bytes).unwrap_err();
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.ggml.tokens"), "{e}");

    // Missing and mistyped keys, and a missing tensor, in a valid file.
    let f = GgufFile::from_bytes("x.gguf", &good).unwrap();
    let e = f.metadata.u32("llama.block_count").unwrap_err();
    assert!(
        matches!(&e, GgufError::MissingKey { key, .. } if key == "llama.block_count"),
        "{e}"
    );
    assert!(e.to_string().contains("x.gguf"), "{e}");
    let e = f.metadata.str("llama.embedding_length").unwrap_err();
    assert!(
        matches!(&e, GgufError::WrongType { key, .. } if key == "llama.embedding_length"),
        "{e}"
    );
    assert!(e.to_string().contains("u32 8"), "{e}");
    let e = f.metadata.f32_array("tokenizer.ggml.tokens").unwrap_err();
    assert!(matches!(e, GgufError::WrongType { .. }), "{e}");
    let e = f.tensor("output.weight").unwrap_err();
    assert!(
        matches!(&e, GgufError::MissingTensor { tensor, .. } if tensor == "output.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("x.gguf"), "{e}");
    assert!(f.get_tensor("output.weight").is_none());
}

#[test]
fn corrupted_headers_never_panic() {
    use rand::{Rng, SeedableRng};
    let good = sample_file();
    let header_end = GgufFile::from_bytes("x", &good).unwrap().data_offset() as usize;
    // Every header byte set to a few hostile values.
    for at in 0..header_end {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut bytes = good.clone();
            bytes[at] = v;
            let _ = GgufFile::from_bytes("x.gguf", &bytes);
        }
    }
    // Seeded random damage: whole u32/u64 fields overwritten with extremes or
    // noise, several at once, sometimes with the file cut short too.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9_9f);
    for _ in 0..3000 {
        let mut bytes = good.clone();
        for _ in 0..rng.random_range(1..4) {
            let width = [1, 4, 8][rng.random_range(0..3)];
            let at = rng.random_range(0..header_end - width);
            let word: u64 = match rng.random_range(0..4) {
                0 => u64::MAX,
                1 => 1 << rng.random_range(0..64),
                2 => rng.random_range(0..64),
                _ => rng.random(),
            };
            bytes[at..at + width].copy_from_slice(&word.to_le_bytes()[..width]);
        }
        if rng.random_bool(0.3) {
            bytes.truncate(rng.random_range(0..bytes.len()));
        }
        let _ = GgufFile::from_bytes("x.gguf", &bytes);
    }
}

const DEFAULT_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
);

#[test]
fn default_model_header() {
    let f = GgufFile::open(DEFAULT_MODEL)
        .unwrap_or_else(|e| panic!("{e} (run scripts/setup to fetch the default model)"));
    let m = &f.metadata;
    assert_eq!(f.version, 3);
    assert_eq!(m.architecture().unwrap(), "llama");
    assert_eq!(m.u32("llama.block_count").unwrap(), 30);
    assert_eq!(m.u32("llama.embedding_length").unwrap(), 576);
    assert_eq!(m.u32("llama.attention.head_count").unwrap(), 9);
    assert_eq!(m.u32("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(m.u32("llama.feed_forward_length").unwrap(), 1536);
    assert_eq!(m.f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(
        m.f32("llama.attention.layer_norm_rms_epsilon").unwrap(),
        1e-5
    );
    let tokens = m.str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(
        m.i32_array("tokenizer.ggml.token_type").unwrap().len(),
        49152
    );
    assert_eq!(m.str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(m.u32("tokenizer.ggml.eos_token_id").unwrap(), 2);
    assert_eq!(tokens[2], "<|im_end|>");
    assert!(m
        .str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));

    assert_eq!(f.tensors.len(), 272);
    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, [576, 49152]);
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!((embd.row_len(), embd.n_rows()), (576, 49152));
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.dims.as_slice(), q.ggml_type),
        (&[576u64, 576][..], GgmlType::Q4_1)
    );
    let k = f.tensor("blk.29.attn_k.weight").unwrap();
    assert_eq!(k.dims, [576, 192]);

    let norm = f.tensor("blk.0.attn_norm.weight").unwrap();
    assert_eq!(
        (norm.dims.as_slice(), norm.ggml_type),
        (&[576u64][..], GgmlType::F32)
    );
    assert_eq!(f.tensor_bytes(norm).len(), 576 * 4);
    let w = f.dequantize("blk.0.attn_norm.weight").unwrap();
    assert_eq!(w.len(), 576);
    assert!(
        w.iter().all(|v| v.is_finite()),
        "attn_norm has a non-finite value"
    );
    assert!(w.iter().any(|&v| v != 0.0), "attn_norm is all zeros");
    // A Q4_1 matrix too: finite, and not all zeros.
    let k = f.dequantize("blk.0.attn_k.weight").unwrap();
    assert_eq!(k.len(), 576 * 192);
    assert!(k.iter().all(|v| v.is_finite()));
    assert!(k.iter().any(|&v| v != 0.0));
}
