using System.Numerics;

namespace FastAttention.Exact;

/// <summary>
/// The a-priori floating-point rounding bound of the exact kernel (<see cref="FlashKernel{T,TV,TS}"/>) for one head:
/// ‖Ô − Att‖∞ ≤ <see cref="Terms.Total"/>, from first principles in the style of Higham, <i>Accuracy and Stability of
/// Numerical Algorithms</i> (γₖ = k·u/(1 − k·u), Lemma 3.1), following the kernel's operations one by one. Computed
/// from the inputs before the run in O((n + m)·(d + dv)): row norms of Q, K, the range of V and the largest bias.
/// </summary>
/// <remarks>
/// With u the kernel's unit roundoff (2⁻²⁴ float32, also for float16 inputs; 2⁻⁵³ float64), c = s·log₂e:
/// <list type="number">
/// <item>Logits (log₂ units). Q is scaled by ĉ = fl(c) and rounded (2 roundings), then the dot product runs as FMAs over
/// c' = 0 … d − 1, so term c' meets d − c' + 2 roundings, and adding a bias one more:
/// |ŝⱼ − sⱼ| ≤ Eᵢ = u/(1 − (d+3)u)·(c·‖ω∘|qᵢ|‖·max‖kⱼ‖ + 3·log₂e·max|bias|), ωc' = d − c' + 3 (Cauchy–Schwarz).</item>
/// <item>Exponentials. The argument ŝⱼ − m̂ rounds (relative u), the running-max rescale α = 2^(old − new) of a key's
/// later blocks adds at most as much again (their increments sum to at most |xⱼ| = m̂ − ŝⱼ) and each α has its own
/// error (≤ 4u, at most one per visited block); the exp₂ polynomial has relative error η ≤ 3u (Horner with FMA,
/// coefficient rounding, Taylor remainder; tested); arguments below −126 (−1022) flush to 0.
/// So p̂ⱼ = C·pⱼ(1 + ρⱼ) with a common C, and Σⱼ wⱼ|ρⱼ| ≤ Sᵢ = κ(η + B·4u + ln2·(Eᵢ + 2u·(log₂ m + 2Eᵢ))) + flush,
/// κ = 2^(Eᵢ + 254u) (using Σⱼ wⱼ|xⱼ| ≤ log₂ m, the entropy bound, for the true softmax weights w).</item>
/// <item>Softmax weights. Σⱼ|Ŵⱼ − wⱼ| ≤ 2Sᵢ/(1 − Sᵢ), and since both weight vectors sum to 1 the output moves by at
/// most that times the half-range H of V's columns — and never by more than 2H (both are convex combinations).</item>
/// <item>P·V and the row sum. Each block's P·V is summed from zero (bc FMAs) and added to the accumulator, which is
/// rescaled at most once per block: γ_{bc + 2B + 1}·Σ P|V|; the row sum: γ_{bc/W + W + 2B + 1}·Σ P (B = key blocks
/// visited, W = lanes).</item>
/// <item>The final division O = acc·(1/Σ): 2 roundings; float16 output: one more rounding at 2⁻¹¹.</item>
/// </list>
/// </remarks>
internal static class ExactRoundingBound
{
    /// <summary>Relative error of the kernel's vectorised exp₂ (<see cref="ISimd{T,TV}.Exp2"/>), in units of u.</summary>
    public const double Exp2Units = 3;
    /// <summary>Relative error of the scalar exp₂ of the running-max rescale (MathF.Exp2 / Math.Exp2), in units of u.</summary>
    public const double RescaleExp2Units = 4;

    /// <summary>The bound's parts, for the certificate.</summary>
    public readonly record struct Terms(double Logits, double Weights, double Accumulation, double OutputRounding)
    {
        public double Total => Weights + Accumulation + OutputRounding;
    }

    /// <summary>γₖ = k·u/(1 − k·u) (Higham Lemma 3.1); ∞ when k·u ≥ 1.</summary>
    public static double Gamma(double k, double u) => k * u < 1 ? k * u / (1 - k * u) : double.PositiveInfinity;

    /// <summary>The bound for one head run by the kernel at unit roundoff <paramref name="u"/> with key blocks of
    /// <paramref name="bc"/> keys and <paramref name="lanes"/> lanes, rounding the output at <paramref name="uOut"/>
    /// (0 when the output has the kernel's precision).</summary>
    public static Terms ForHead<T>(AttentionHead<T> head, double u, int bc, int lanes, double uOut) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = head.N, m = head.M, d = head.D, dv = head.Dv;
        if (m == 0) return default;
        double c = Math.Abs(head.Scale) * 1.4426950408889634;
        // Norms in float64, inflated so they bound the exact values (d + 2 roundings, a square root).
        double inflate = 1 + Gamma(d + 4, Math.ScaleB(1.0, -53));
        var q = head.Q;
        double qNorm = 0;
        for (int i = 0; i < n; i++)
        {
            double s = 0;
            for (int k = 0; k < d; k++)
            {
                double x = double.CreateTruncating(q[i * d + k]) * (d - k + 3);
                s = Math.FusedMultiplyAdd(x, x, s);
            }
            qNorm = Math.Max(qNorm, s);
        }
        qNorm = Math.Sqrt(qNorm) * inflate;
        var kk = head.K;
        double kNorm = 0;
        for (int j = 0; j < m; j++)
        {
            double s = 0;
            for (int k = 0; k < d; k++) { double x = double.CreateTruncating(kk[j * d + k]); s = Math.FusedMultiplyAdd(x, x, s); }
            kNorm = Math.Max(kNorm, s);
        }
        kNorm = Math.Sqrt(kNorm) * inflate;
        var v = head.V;
        double vMax = 0, half = 0;
        for (int col = 0; col < dv; col++)
        {
            double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
            for (int j = 0; j < m; j++)
            {
                double x = double.CreateTruncating(v[j * dv + col]);
                lo = Math.Min(lo, x); hi = Math.Max(hi, x);
            }
            vMax = Math.Max(vMax, Math.Max(Math.Abs(lo), Math.Abs(hi)));
            half = Math.Max(half, 0.5 * (hi - lo) * (1 + Math.ScaleB(1.0, -52)));
        }
        double biasMax = 0;
        if (head.Mask.Bias is { } bias)
            foreach (double b in bias.Data.Span)
                if (double.IsFinite(b)) biasMax = Math.Max(biasMax, Math.Abs(b));

        // 1. Logit error in log₂ units (the max over rows of the per-row bound: qNorm is the largest weighted row norm).
        double logit = u / (1 - (d + 3) * u) * (c * qNorm * kNorm * inflate + 3 * 1.4426950408889634 * biasMax);
        // 2. Relative weight perturbations, averaged under the softmax weights.
        int blocks = (m + bc - 1) / bc + 1;
        double flush = m * (typeof(T) == typeof(double) ? Math.ScaleB(1.0, -1021) : Math.ScaleB(1.0, -125));
        double kappa = Math.Pow(2, logit + 254 * u);
        double ln2 = 0.6931471805599453;
        double sum = kappa * (Exp2Units * u + blocks * RescaleExp2Units * u + ln2 * (logit + 2 * u * (Math.Log2(m) + 2 * logit))) + flush;
        double weights = sum < 1 ? Math.Min(2 * half, 2 * sum / (1 - sum) * half) : 2 * half;
        if (!double.IsFinite(weights)) weights = 2 * half;
        // 4–5. Accumulation, row sum and the final division.
        double gA = Gamma(bc + 2 * blocks + 1, u), gS = Gamma(bc / lanes + lanes + 2 * blocks + 1, u), g2 = Gamma(2, u);
        // Underflow in the FMAs (gradual, absolute ≤ the smallest subnormal per operation) against a row sum ≥ 1.
        double tiny = typeof(T) == typeof(double) ? double.Epsilon : float.Epsilon;
        double accumulation = vMax * ((g2 + gS) + gA * (1 + g2)) / (1 - gS) + (bc + 2 * blocks + lanes + 2) * tiny * (1 + vMax);
        double output = uOut * (vMax + weights + accumulation);
        return new Terms(logit, weights, accumulation, output);
    }
}
