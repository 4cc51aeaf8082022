//! Micro-benchmark of `lightning::nn`'s attention and embedding ops against the candle
//! compositions they replace, forward and backward, at the issue's small GPT's sizes
//! (batch 128, 4 heads, context 16, head width 16, f32). Prints the time of each and the
//! ratios; run with one thread:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench attention [-- ITERATIONS]
//! ```

use std::time::Instant;

use candle_core::{Device, Module, Tensor, Var};
use lightning::nn::{attention_composed, scaled_dot_product_attention, self_attention_packed, AttentionOptions};

/// Seconds per iteration of `f` (forward and backward), after two warm-up runs.
fn time(iters: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> candle_core::Result<f64> {
    f()?;
    f()?;
    let start = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() / iters as f64)
}

type Attn = fn(&Tensor, &Tensor, &Tensor, &AttentionOptions) -> candle_core::Result<Tensor>;

/// Seconds per forward+backward and per forward alone.
fn attention(iters: usize, f: Attn) -> candle_core::Result<(f64, f64)> {
    let dev = Device::Cpu;
    let qkv: Vec<Var> =
        (0..3).map(|_| Var::randn(0f32, 1.0, (128, 4, 16, 16), &dev)).collect::<candle_core::Result<_>>()?;
    let opts = AttentionOptions::new().causal(true);
    let w = Tensor::randn(0f32, 1.0, (128, 4, 16, 16), &dev)?;
    let both = time(iters, || {
        let y = f(qkv[0].as_tensor(), qkv[1].as_tensor(), qkv[2].as_tensor(), &opts)?;
        (y * &w)?.sum_all()?.backward()?;
        Ok(())
    })?;
    let forward = time(iters, || {
        f(&qkv[0].detach(), &qkv[1].detach(), &qkv[2].detach(), &opts)?;
        Ok(())
    })?;
    Ok((both, forward))
}

/// Self-attention from a (B, T, 3C) projection back to (B, T, C), forward and backward:
/// stacked (one permute, `self_attention_packed`) or split into three tensors as usual.
fn split_heads(iters: usize, packed: bool) -> candle_core::Result<f64> {
    let dev = Device::Cpu;
    let proj = Var::randn(0f32, 1.0, (128, 16, 3 * 64), &dev)?;
    let w = Tensor::randn(0f32, 1.0, (128, 16, 64), &dev)?;
    let opts = AttentionOptions::new().causal(true);
    time(iters, || {
        let qkv = proj.as_tensor().reshape((128, 16, 3, 4, 16))?;
        let y = if packed {
            self_attention_packed(&qkv.permute((2, 0, 3, 1, 4))?, &opts)?
        } else {
            let head = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous();
            scaled_dot_product_attention(&head(0)?, &head(1)?, &head(2)?, &opts)?
        };
        let y = y.transpose(1, 2)?.reshape((128, 16, 64))?;
        (y * &w)?.sum_all()?.backward()?;
        Ok(())
    })
}

fn embedding(iters: usize, ours: bool) -> candle_core::Result<f64> {
    let dev = Device::Cpu;
    let table = Var::randn(0f32, 1.0, (65, 64), &dev)?;
    let ids: Vec<u32> = (0..128 * 16).map(|i| (i * 7 % 65) as u32).collect();
    let ids = Tensor::from_vec(ids, (128, 16), &dev)?;
    let w = Tensor::randn(0f32, 1.0, (128, 16, 64), &dev)?;
    time(iters, || {
        let y = if ours {
            lightning::nn::Embedding::new(table.as_tensor().clone()).forward(&ids)?
        } else {
            candle_nn::Embedding::new(table.as_tensor().clone(), 64).forward(&ids)?
        };
        (y * &w)?.sum_all()?.backward()?;
        Ok(())
    })
}

fn main() -> candle_core::Result<()> {
    let iters = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200);
    println!("threads: {}", candle_core::utils::get_num_threads());
    let (fast, fast_fwd) = attention(iters, scaled_dot_product_attention)?;
    let (slow, slow_fwd) = attention(iters, attention_composed)?;
    println!(
        "attention (128×4 heads, T=16, D=16, causal), forward+backward: ours {:.3} ms, candle composition {:.3} ms, {:.2}×",
        fast * 1e3,
        slow * 1e3,
        slow / fast
    );
    println!(
        "attention forward alone: ours {:.3} ms, candle composition {:.3} ms, {:.2}×",
        fast_fwd * 1e3,
        slow_fwd * 1e3,
        slow_fwd / fast_fwd
    );
    let (packed, apart) = (split_heads(iters, true)?, split_heads(iters, false)?);
    println!(
        "self-attention from a (128, 16, 192) projection, forward+backward: stacked {:.3} ms, three tensors {:.3} ms, {:.2}×",
        packed * 1e3,
        apart * 1e3,
        apart / packed
    );
    let fast = embedding(iters, true)?;
    let slow = embedding(iters, false)?;
    println!(
        "embedding (65×64 table, 128×16 ids), forward+backward: ours {:.3} ms, candle-nn {:.3} ms, {:.2}×",
        fast * 1e3,
        slow * 1e3,
        slow / fast
    );
    Ok(())
}
