//! One core's FP32 peak, measured: a tight loop of independent FMA chains, once with 8-lane
//! AVX2 FMAs and once with 16-lane AVX-512 FMAs where the CPU has them. The honest peak is
//! the larger.

#[cfg(target_arch = "x86_64")]
use std::time::Instant;

/// The peak in GFLOP/s and the loop that reached it ("AVX2" or "AVX-512").
pub struct Peak {
    pub gflops: f64,
    pub isa: &'static str,
    /// The AVX2 loop's result, printed beside the AVX-512 one.
    pub avx2: f64,
}

impl std::fmt::Display for Peak {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{:.1} GFLOP/s ({} FMA loop; AVX2's: {:.1})", self.gflops, self.isa, self.avx2)
    }
}

/// 12 independent chains (enough to cover the FMA latency on two pipes), best of 5 runs of
/// 50M FMAs; `lanes` floats an FMA.
#[cfg(target_arch = "x86_64")]
fn best_of(lanes: usize, run: impl Fn(usize) -> f32) -> f64 {
    let iters = 50_000_000 / 12;
    let mut best = 0f64;
    for _ in 0..5 {
        let start = Instant::now();
        let r = run(iters);
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(r);
        best = best.max((iters * 12 * lanes * 2) as f64 / secs / 1e9);
    }
    best
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn avx2(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let sum = acc.iter().fold(_mm256_set1_ps(0.0), |s, v| _mm256_add_ps(s, *v));
    let mut out = [0f32; 8];
    // SAFETY: `out` holds the 8 floats stored
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn avx512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); 12];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let sum = acc.iter().fold(_mm512_set1_ps(0.0), |s, v| _mm512_add_ps(s, *v));
    _mm512_reduce_add_ps(sum)
}

/// The peak, or None without AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub fn peak() -> Option<Peak> {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        return None;
    }
    // SAFETY: the features were detected above
    let avx2 = best_of(8, |n| unsafe { avx2(n) });
    let wide = is_x86_feature_detected!("avx512f").then(|| {
        // SAFETY: detected on the line above
        best_of(16, |n| unsafe { avx512(n) })
    });
    Some(match wide {
        Some(w) if w > avx2 => Peak { gflops: w, isa: "AVX-512", avx2 },
        _ => Peak { gflops: avx2, isa: "AVX2", avx2 },
    })
}

#[cfg(not(target_arch = "x86_64"))]
pub fn peak() -> Option<Peak> {
    None
}
