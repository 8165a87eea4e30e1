//! A plain-Rust, f64, unbatched forward pass of a llama-architecture GGUF, for
//! checking the GPU path by hand: `cargo run --release --example ref_forward
//! -- MODEL ID ID ...` prints the top-5 next-token probabilities after the
//! last id. Slow and simple on purpose; no code is shared with the kernels.

use wgserve::gguf::reader::GgufFile;
use wgserve::model::spec::ModelSpec;

fn tensor(f: &GgufFile, name: &str) -> Vec<f64> {
    f.dequantize(name)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// y = W x with W `[rows][cols]`.
fn matvec(w: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
    let cols = x.len();
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum()
        })
        .collect()
}

fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(a, b)| a * s * b).collect()
}

fn rope(x: &mut [f64], pos: usize, head_dim: usize, base: f64) {
    for h in 0..x.len() / head_dim {
        for i in 0..head_dim / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
            let (s, c) = theta.sin_cos();
            let a = x[h * head_dim + 2 * i];
            let b = x[h * head_dim + 2 * i + 1];
            x[h * head_dim + 2 * i] = a * c - b * s;
            x[h * head_dim + 2 * i + 1] = a * s + b * c;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let f = GgufFile::open(&args[1]).unwrap();
    let ids: Vec<usize> = args[2..].iter().map(|s| s.parse().unwrap()).collect();
    let s = ModelSpec::from_gguf(&f).unwrap();
    let d = s.d_model;
    let hd = s.head_dim;
    let eps = f64::from(s.rms_eps);
    let base = f64::from(s.rope_freq_base);
    let embd = tensor(&f, "token_embd.weight");
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&t| embd[t * d..(t + 1) * d].to_vec())
        .collect();
    for l in 0..s.n_layers {
        let n = |t: &str| format!("blk.{l}.{t}");
        let (an, wq, wk, wv, wo) = (
            tensor(&f, &n("attn_norm.weight")),
            tensor(&f, &n("attn_q.weight")),
            tensor(&f, &n("attn_k.weight")),
            tensor(&f, &n("attn_v.weight")),
            tensor(&f, &n("attn_output.weight")),
        );
        let (fnorm, wg, wu, wd) = (
            tensor(&f, &n("ffn_norm.weight")),
            tensor(&f, &n("ffn_gate.weight")),
            tensor(&f, &n("ffn_up.weight")),
            tensor(&f, &n("ffn_down.weight")),
        );
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        let mut qs = Vec::new();
        for (p, x) in xs.iter().enumerate() {
            let xn = rmsnorm(x, &an, eps);
            let mut q = matvec(&wq, &xn, s.q_dim());
            let mut k = matvec(&wk, &xn, s.kv_dim());
            rope(&mut q, p, hd, base);
            rope(&mut k, p, hd, base);
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &xn, s.kv_dim()));
        }
        let group = s.n_heads / s.n_kv_heads;
        for (p, x) in xs.iter_mut().enumerate() {
            let mut att = vec![0.0; s.q_dim()];
            for h in 0..s.n_heads {
                let kh = h / group;
                let q = &qs[p][h * hd..(h + 1) * hd];
                let scores: Vec<f64> = (0..=p)
                    .map(|j| {
                        q.iter()
                            .zip(&ks[j][kh * hd..(kh + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for i in 0..hd {
                        att[h * hd + i] += ej / z * vs[j][kh * hd + i];
                    }
                }
            }
            let o = matvec(&wo, &att, d);
            for i in 0..d {
                x[i] += o[i];
            }
            let xn = rmsnorm(x, &fnorm, eps);
            let g = matvec(&wg, &xn, s.ffn_dim);
            let u = matvec(&wu, &xn, s.ffn_dim);
            let a: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            let o = matvec(&wd, &a, d);
            for i in 0..d {
                x[i] += o[i];
            }
        }
    }
    let on = tensor(&f, "output_norm.weight");
    let out = if s.tied_output {
        embd
    } else {
        tensor(&f, "output.weight")
    };
    let last = rmsnorm(xs.last().unwrap(), &on, eps);
    let logits = matvec(&out, &last, s.vocab_size);
    let mx = logits.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = logits.iter().map(|l| (l - mx).exp()).sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    for &i in &idx[..5] {
        println!("{i} {:.4}", (logits[i] - mx).exp() / z);
    }
}
