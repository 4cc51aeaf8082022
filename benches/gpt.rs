//! GPT training speed: the GPT example's model (`examples/gpt.rs`) in the trainer (no logger,
//! bar, summary or checkpoint; dropout 0, as the PyTorch reference runs it), on
//! `lightning::nn` (`Fast`) and on candle's slow-but-correct ops (`Reference`), for the
//! example's model (4 layers, 4 heads, d = 128, context 128) at batch 32 and a small
//! one (2 layers, 4 heads, d = 64, context 16, batch 128), on the embedded fortunes sample.
//! Prints samples/s, tokens/s and the ratios, then a per-op profile of one batch.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench gpt [-- --batches N] [--config gpt|small] [--only fast|reference]
//!     [--torch GPT_SPS,SMALL_SPS] [--default-malloc] [--profile-only | --no-profile]
//! ```
//! `--torch` takes plain PyTorch's samples/s from `scripts/bench/pytorch_reference.py --gpt`
//! for the ratios. As the example does, the bench first raises glibc's mmap threshold to
//! 32 MiB (`gpt::tune_malloc`): buffers are then reused from the heap instead of being mapped
//! and unmapped on every op; `--default-malloc` leaves glibc's defaults.

#[path = "../examples/gpt.rs"]
#[allow(dead_code)]
mod gpt;

use std::time::Instant;

use candle_core::{Device, Module, Tensor, Var, D};
use gpt::{Config, Corpus, Fast, Gpt, Kernels, Preset, Reference};
use lightning::prelude::*;

fn config(preset: Preset, vocab_size: usize) -> Config {
    let (n_layer, n_embd, block_size, batch_size) = match preset {
        Preset::Gpt => (4, 128, 128, 32),
        Preset::Small => (2, 64, 16, 128),
    };
    Config {
        preset,
        n_layer,
        n_head: 4,
        n_embd,
        block_size,
        vocab_size,
        batch_size,
        dropout: 0.0,
        lr: 3e-3,
        weight_decay: 0.01,
        seed: 1337,
    }
}

/// `batches` batches of non-overlapping windows of the corpus, repeated as needed.
fn data(corpus: &Corpus, cfg: &Config, batches: usize) -> candle_core::Result<DataLoader> {
    let (t, n) = (cfg.block_size, batches * cfg.batch_size);
    let ids: Vec<u32> = corpus.ids.iter().copied().cycle().take(n * t + 1).collect();
    let x: Vec<u32> = (0..n).flat_map(|i| ids[i * t..i * t + t].to_vec()).collect();
    let y: Vec<u32> = (0..n).flat_map(|i| ids[i * t + 1..i * t + t + 1].to_vec()).collect();
    let (x, y) = (Tensor::from_vec(x, (n, t), &Device::Cpu)?, Tensor::from_vec(y, (n, t), &Device::Cpu)?);
    Ok(DataLoader::new(x, y, cfg.batch_size).map_err(candle_core::Error::wrap)?.shuffle(0))
}

/// Samples/s of one epoch of `batches` batches in the bare trainer, and the epoch's mean loss.
fn train<K: Kernels>(corpus: &Corpus, cfg: &Config, batches: usize) -> lightning::Result<(f64, f64)> {
    let mut model = Gpt::<K>::new(cfg.clone(), &Device::Cpu)?;
    let loader = data(corpus, cfg, batches)?;
    let mut trainer = Trainer::builder()
        .max_epochs(1)
        .accelerator(Accelerator::Cpu)
        .enable_checkpointing(false)
        .enable_logger(false)
        .enable_progress_bar(false)
        .enable_model_summary(false)
        .build()?;
    let start = Instant::now();
    let out = trainer.fit(&mut model, Data::loader(loader))?;
    let secs = start.elapsed().as_secs_f64();
    let loss = out.metrics.get("train_loss_epoch").copied().unwrap_or(f64::NAN);
    Ok(((batches * cfg.batch_size) as f64 / secs, loss))
}

/// Milliseconds per call of `f`, the best of `reps`.
fn time_ms(reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// Forward and forward+backward (with a sum of squares as the loss) of `f`, in ms.
fn fb(f: impl Fn() -> candle_core::Result<Tensor>) -> candle_core::Result<(f64, f64)> {
    let fwd = time_ms(5, || f().map(drop))?;
    let bwd = time_ms(5, || f()?.sqr()?.sum_all()?.backward().map(drop))?;
    Ok((fwd, bwd))
}

/// One row of the profile for each op of one block at the config's batch, both kernels.
fn profile(cfg: &Config) -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let (b, t, d, h) = (cfg.batch_size, cfg.block_size, cfg.n_embd, cfg.n_head);
    let var = |shape: &[usize]| Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev)?);
    let x = var(&[b * t, d])?;
    let wide = var(&[b * t, 4 * d])?;
    let (q, k, v) = (var(&[b, h, t, d / h])?, var(&[b, h, t, d / h])?, var(&[b, h, t, d / h])?);
    let logits = var(&[b * t, cfg.vocab_size])?;
    let scores = var(&[b, h, t, t])?;
    let targets = Tensor::zeros(b * t, candle_core::DType::U32, &dev)?;
    let vars = candle_nn::VarMap::new();
    let vb = lightning::seeded_var_builder(&vars, 1, candle_core::DType::F32, &dev);
    let (ln_r, ln_f) = (Reference::layer_norm(d, vb.pp("r"))?, Fast::layer_norm(d, vb.pp("f"))?);
    let (fc_r, fc_f) = (Reference::linear(d, 4 * d, true, vb.pp("fr"))?, Fast::linear(d, 4 * d, true, vb.pp("ff"))?);
    let (em_r, em_f) =
        (Reference::embedding(cfg.vocab_size, d, vb.pp("er"))?, Fast::embedding(cfg.vocab_size, d, vb.pp("ef"))?);
    let ids = Tensor::zeros((b, t), candle_core::DType::U32, &dev)?;
    type Row = (&'static str, (f64, f64), (f64, f64));
    let rows: Vec<Row> = vec![
        ("layer norm (B·T, d)", fb(|| ln_r.forward(&x))?, fb(|| ln_f.forward(&x))?),
        ("linear d → 4d (c_fc)", fb(|| fc_r.forward(&x))?, fb(|| fc_f.forward(&x))?),
        (
            "causal attention (B, H, T, d/H)",
            fb(|| Reference::causal_attention(&q, &k, &v))?,
            fb(|| Fast::causal_attention(&q, &k, &v))?,
        ),
        ("gelu (B·T, 4d)", fb(|| Reference::gelu(&wide))?, fb(|| Fast::gelu(&wide))?),
        (
            "softmax of the scores (B, H, T, T)",
            fb(|| candle_nn::ops::softmax(&scores, D::Minus1))?,
            fb(|| lightning::nn::softmax(&scores))?,
        ),
        (
            "cross-entropy (B·T, vocab)",
            fb(|| Reference::cross_entropy(&logits, &targets))?,
            fb(|| Fast::cross_entropy(&logits, &targets))?,
        ),
        ("embedding (B, T) → d", fb(|| em_r.forward(&ids))?, fb(|| em_f.forward(&ids))?),
    ];
    println!(
        "\nper op, {:?} config, batch {b}, context {t}, d = {d}, best of 5 (ms; fwd+bwd adds a square and a sum):",
        cfg.preset
    );
    println!("| op | reference fwd | fast fwd | reference fwd+bwd | fast fwd+bwd |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, r, f) in rows {
        println!("| {name} | {:.2} | {:.2} | {:.2} | {:.2} |", r.0, f.0, r.1, f.1);
    }
    Ok(())
}

/// The value after `flag` on the command line.
fn flag(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn main() -> lightning::Result<()> {
    let default_malloc = std::env::args().any(|a| a == "--default-malloc");
    if !default_malloc {
        gpt::tune_malloc();
    }
    println!(
        "malloc: {}",
        if default_malloc { "glibc's defaults" } else { "mmap threshold 32 MiB (gpt::tune_malloc)" }
    );
    let corpus = Corpus::embedded()?;
    let batches: Option<usize> = flag("--batches").and_then(|v| v.parse().ok());
    let only = flag("--only");
    let torch: Vec<f64> =
        flag("--torch").map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect()).unwrap_or_default();
    let presets: Vec<Preset> = match flag("--config").as_deref() {
        Some("gpt") => vec![Preset::Gpt],
        Some("small") => vec![Preset::Small],
        _ => vec![Preset::Gpt, Preset::Small],
    };
    println!("threads: {} (pin with RAYON_NUM_THREADS=1)", candle_core::utils::get_num_threads());
    let profile_only = std::env::args().any(|a| a == "--profile-only");
    if !profile_only {
        println!("| config | kernels | batches | samples/s | tokens/s | mean loss | vs reference | vs plain PyTorch |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    }
    for (i, &preset) in presets.iter().enumerate() {
        let cfg = config(preset, corpus.chars.len());
        if profile_only {
            profile(&cfg)?;
            continue;
        }
        let n = batches.unwrap_or(if preset == Preset::Gpt { 20 } else { 100 });
        let torch_sps = torch.get(if presets.len() == 1 && preset == Preset::Small { 1 } else { i }).copied();
        let mut reference = None;
        for kernels in ["reference", "fast"] {
            if only.as_deref().is_some_and(|o| o != kernels) {
                continue;
            }
            let (sps, loss) = if kernels == "fast" {
                train::<Fast>(&corpus, &cfg, n)?
            } else {
                train::<Reference>(&corpus, &cfg, n)?
            };
            let vs_ref = reference.map_or(String::new(), |r: f64| format!("{:.2}×", sps / r));
            let vs_torch = torch_sps.map_or(String::new(), |p| format!("{:.2}×", sps / p));
            let tokens = sps * cfg.block_size as f64;
            println!("| {preset:?} | {kernels} | {n} | {sps:.0} | {tokens:.0} | {loss:.4} | {vs_ref} | {vs_torch} |");
            if kernels == "reference" {
                reference = Some(sps);
            }
        }
    }
    if !std::env::args().any(|a| a == "--no-profile") && !profile_only {
        profile(&config(presets[0], corpus.chars.len()))?;
    }
    Ok(())
}
