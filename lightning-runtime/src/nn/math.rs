//! Element functions and row reductions the transformer kernels share, written so that the
//! compiler vectorises them: no branches (selects only), no libm call per `f32` element, and
//! reductions over 8 independent lanes.
//!
//! A profile of a small GPT on candle's ops spent a quarter of its time in scalar libm
//! `tanhf`/`expm1f`. In `f32`, [`Real::exp`] is Cephes' `expf` polynomial (≈1 ulp) with the
//! exponent put in by integer arithmetic, and [`Real::normal_cdf`] is Numerical Recipes'
//! Chebyshev fit of `erfc` (relative error < 1.2·10⁻⁷ on its own) on top of it; the tests in
//! this file measure both over dense grids. In `f64` they are libm's, as accuracy to 1e-12 is
//! what `f64` is for.

use candle_core::WithDType;

/// What the kernels need of `f32` and `f64`.
pub(crate) trait Real: WithDType {
    /// `eˣ`; `f32`: within 1 ulp (tested), 0 below -104, ∞ above 88.73, NaN stays NaN.
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    /// The standard normal distribution's `Φ(x) = ½·erfc(-x/√2)`, accurate in relative terms
    /// in both tails (GELU's `x·Φ(x)` has no `1 + erf` cancellation for negative `x`).
    fn normal_cdf(self) -> Self;

    /// The standard normal density `φ(x) = e^(-x²/2)/√(2π)`.
    fn normal_pdf(self) -> Self;

    /// The larger of two values, as a select (NaN in `other` is ignored, as `f32::max`).
    #[inline(always)]
    fn larger(self, other: Self) -> Self {
        if other > self {
            other
        } else {
            self
        }
    }

    /// `1 / (1 + e⁻ˣ)`: accurate in relative terms for any `x` (no `1 - …` cancellation).
    #[inline(always)]
    fn sigmoid(self) -> Self {
        let one = Self::from_f64(1.0);
        one / (one + (Self::from_f64(0.0) - self).exp())
    }
}

impl Real for f64 {
    #[inline(always)]
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    #[inline(always)]
    fn ln(self) -> f64 {
        f64::ln(self)
    }
    #[inline(always)]
    fn normal_cdf(self) -> f64 {
        0.5 * candle_core::cpu::erf::erfc_f64(-self * std::f64::consts::FRAC_1_SQRT_2)
    }
    #[inline(always)]
    fn normal_pdf(self) -> f64 {
        (-0.5 * self * self).exp() * FRAC_1_SQRT_2PI
    }
}

impl Real for f32 {
    #[inline(always)]
    fn exp(self) -> f32 {
        exp_f32(self)
    }
    #[inline(always)]
    fn ln(self) -> f32 {
        f32::ln(self)
    }
    #[inline(always)]
    fn normal_cdf(self) -> f32 {
        normal_cdf_f32(self)
    }
    #[inline(always)]
    fn normal_pdf(self) -> f32 {
        normal_pdf_f32(self)
    }
}

/// `2ⁿ` for `-126 ≤ n ≤ 127`, built in the exponent bits.
#[inline(always)]
fn pow2i(n: i32) -> f32 {
    f32::from_bits(((n + 127) as u32) << 23)
}

/// Cephes' `expf`: `eˣ = 2ⁿ·eʳ` with `n = round(x·log₂e)` and `|r| ≤ ½ ln 2`, `eʳ` a degree-7
/// polynomial. Branch-free: the clamps are selects that let NaN through, and `2ⁿ` is applied
/// as two factors so that results down to the subnormals round once.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    let x = if x < -104.0 { -104.0 } else { x };
    let x = if x > 89.0 { 89.0 } else { x };
    exp_sum_f32(x, 0.0)
}

/// `e^(a + b)` for `a` in [-104, 89] and `|b| ≤ 2`, without rounding `a + b`: `b` joins
/// after `a` is reduced by `n·ln 2`, which is exact (`ln 2`'s high part has 9 bits, `n` 8).
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn exp_sum_f32(a: f32, b: f32) -> f32 {
    // 1.5·2²³: adding it rounds to an integer, which then sits in the low mantissa bits
    const SHIFTER: f32 = 12_582_912.0;
    let t = (a + b) * std::f32::consts::LOG2_E + SHIFTER;
    let n = t - SHIFTER;
    let ni = (t.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
    let r = (a - n * 0.693_359_375) + (b - n * -2.121_944_4e-4);
    let p = ((((1.987_569_15e-4 * r + 1.398_199_950_7e-3) * r + 8.333_451_907_3e-3) * r + 4.166_579_589_4e-2) * r
        + 1.666_666_545_9e-1)
        * r
        + 5.000_000_120_1e-1;
    let e = p * (r * r) + r + 1.0;
    let half = ni >> 1;
    e * pow2i(half) * pow2i(ni - half)
}

/// `x²/2` of `|x|` clamped to 20 (beyond it the normal tail is 0 in `f32`), as an exact high
/// part (a Veltkamp split leaves 12 significant bits, whose square is exact) clamped to 104,
/// and a small low part: rounding `x²/2` (up to 200) in `f32` would cost 10⁻⁵ in the tail.
#[inline(always)]
fn half_square_f32(x: f32) -> (f32, f32) {
    let a = x.abs();
    let a = if a > 20.0 { 20.0 } else { a };
    let c = a * 4097.0;
    let hi = c - (c - a);
    let lo = a - hi;
    let sq_hi = 0.5 * hi * hi;
    (if sq_hi > 104.0 { 104.0 } else { sq_hi }, hi * lo + 0.5 * lo * lo)
}

/// `Φ(x) = ½·erfc(-x/√2)` from Numerical Recipes' `erfcc` (`erfc(z) = t·exp(-z² + P(t))`,
/// `t = 1/(1 + z/2)`, fractional error < 1.2·10⁻⁷ for every `z ≥ 0`), so both tails keep their
/// relative accuracy; one exponential of the exactly split `-z² + P(t)`. Branch-free.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub(crate) fn normal_cdf_f32(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let z = if z > 20.0 { 20.0 } else { z };
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let (sq_hi, sq_lo) = half_square_f32(x);
    // ½·erfc(|x|/√2) = Φ(-|x|)
    let tail = 0.5 * t * exp_sum_f32(-sq_hi, p - sq_lo);
    if x < 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// The standard normal density `φ(x) = e^(-x²/2)/√(2π)`, from the same exact split of `x²/2`.
#[inline(always)]
pub(crate) fn normal_pdf_f32(x: f32) -> f32 {
    let (sq_hi, sq_lo) = half_square_f32(x);
    exp_sum_f32(-sq_hi, -sq_lo) * FRAC_1_SQRT_2PI as f32
}

/// `1/√(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Lanes of the row reductions: independent accumulators the compiler keeps in vector
/// registers (a single accumulator is a serial dependency chain it may not reorder).
const LANES: usize = 8;

/// The largest element of a non-empty row.
#[inline]
pub(crate) fn row_max<T: Real>(row: &[T]) -> T {
    let mut acc = [row[0]; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            acc[k] = acc[k].larger(c[k]);
        }
    }
    rest.iter().chain(&acc[1..]).fold(acc[0], |m, &v| m.larger(v))
}

/// `Σ f(v)` over a row.
#[inline]
pub(crate) fn row_sum<T: Real>(row: &[T], f: impl Fn(T) -> T) -> T {
    let zero = T::from_f64(0.0);
    let mut acc = [zero; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..LANES {
            acc[k] += f(c[k]);
        }
    }
    let tail = rest.iter().fold(zero, |s, &v| s + f(v));
    acc.iter().fold(tail, |s, &v| s + v)
}

/// `Σ f(v)` over a row, accumulated in `f64` (the norms' statistics: in `f32`, a nearly
/// constant row's mean would lose the digits its deviations live in).
#[inline]
pub(crate) fn row_sum_f64<T: WithDType>(row: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(0.0, |s, v| s + f(v.to_f64()));
    for c in chunks {
        for k in 0..LANES {
            acc[k] += f(c[k].to_f64());
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

/// `Σ a·b` over two rows of the same length.
#[inline]
pub(crate) fn row_dot<T: Real>(a: &[T], b: &[T]) -> T {
    let zero = T::from_f64(0.0);
    let mut acc = [zero; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(zero, |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between an `f32` and the exact value.
    fn ulps(got: f32, exact: f64) -> f64 {
        let e = exact as f32;
        if got == e {
            return 0.0;
        }
        let ulp = (f32::from_bits(e.abs().to_bits() + 1) - e.abs()) as f64;
        (got as f64 - exact).abs() / ulp
    }

    #[test]
    fn exp_f32_is_within_one_ulp_on_a_dense_grid() {
        let mut worst = (0.0, 0.0);
        // every 2⁻¹² from -87 to 88.7, where the result is a normal number
        let mut x = -87.0f32;
        while x < 88.7 {
            let u = ulps(exp_f32(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
            x += 1.0 / 4096.0;
        }
        eprintln!("exp_f32: worst {} ulp at {}", worst.0, worst.1);
        assert!(worst.0 <= 1.0, "exp_f32: {} ulp at {}", worst.0, worst.1);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
        // a subnormal result, within an ulp of the subnormal spacing
        assert!(((exp_f32(-100.0) as f64) - (-100f64).exp()).abs() <= 1.5e-45);
    }

    #[test]
    fn normal_cdf_f32_has_a_small_relative_error_on_a_dense_grid() {
        let mut worst = (0.0, 0.0);
        let mut x = -12.0f32;
        while x < 8.0 {
            let exact = 0.5 * candle_core::cpu::erf::erfc_f64(-(x as f64) * std::f64::consts::FRAC_1_SQRT_2);
            let rel = (normal_cdf_f32(x) as f64 - exact).abs() / exact;
            if rel > worst.0 {
                worst = (rel, x);
            }
            x += 1.0 / 1024.0;
        }
        eprintln!("normal_cdf_f32: worst relative error {:e} at {}", worst.0, worst.1);
        assert!(worst.0 < 1e-6, "normal_cdf_f32: relative error {} at {}", worst.0, worst.1);
        assert!(normal_cdf_f32(f32::NAN).is_nan());
        assert_eq!(normal_cdf_f32(f32::INFINITY), 1.0);
        assert_eq!(normal_cdf_f32(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn normal_pdf_f32_has_a_small_relative_error_on_a_dense_grid() {
        let mut worst = (0.0, 0.0);
        let mut x = -13.0f32;
        while x < 13.0 {
            let exact = (-0.5 * (x as f64).powi(2)).exp() * FRAC_1_SQRT_2PI;
            let rel = (normal_pdf_f32(x) as f64 - exact).abs() / exact;
            if rel > worst.0 {
                worst = (rel, x);
            }
            x += 1.0 / 1024.0;
        }
        eprintln!("normal_pdf_f32: worst relative error {:e} at {}", worst.0, worst.1);
        assert!(worst.0 < 2.5e-7, "normal_pdf_f32: relative error {} at {}", worst.0, worst.1);
    }

    #[test]
    fn row_reductions_cover_the_remainder() {
        let row: Vec<f32> = (0..19).map(|i| (i as f32 * 0.37).sin()).collect();
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        assert_eq!(row_max(&row), max);
        let sum: f32 = row.iter().sum();
        assert!((row_sum(&row, |v| v) - sum).abs() < 1e-6);
        let dot: f32 = row.iter().map(|v| v * v).sum();
        assert!((row_dot(&row, &row) - dot).abs() < 1e-5);
        assert_eq!(row_max(&[3.0f64]), 3.0);
    }
}
