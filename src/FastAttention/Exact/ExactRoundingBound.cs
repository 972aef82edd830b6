using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using FastAttention.Numerics;

namespace FastAttention.Exact;

/// <summary>
/// The a-priori floating-point rounding bound of the exact kernel (<see cref="FlashKernel{T,TV,TS}"/>) for one head:
/// ‖Ô − Att‖∞ ≤ <see cref="Terms.Total"/>, from first principles in the style of Higham, <i>Accuracy and Stability of
/// Numerical Algorithms</i> (γₖ = k·u/(1 − k·u), Lemma 3.1), following the kernel's operations one by one. Computed
/// from the inputs before the run in O((n + m)·(d + dv)): row norms of Q, K, the range of V and the largest bias.
/// </summary>
/// <remarks>
/// With u the kernel's unit roundoff (2⁻²⁴ float32, also for float16 inputs; 2⁻⁵³ float64), c = s·log₂e, W the lanes:
/// <list type="number">
/// <item>Logits (log₂ units). Q is scaled by ĉ = fl(c) and rounded (2 roundings); the dot product is an FMA chain over
/// c' = 0 … d − 1 (prefill, small d: term c' meets d − c' roundings) or lanes plus a horizontal sum and a tail (decode: at
/// most ⌈d/W⌉ + W − 1 + d mod W per term); adding the bias one more; key splits round the merge's maxima in natural units
/// (3 more). With ω the per-term counts: |ŝⱼ − sⱼ| ≤ E = u/(1 − ω_max·u)·(c·max‖ω∘qᵢ‖·max‖kⱼ‖ + ω_max·log₂e·max|bias|)
/// + 3u·log₂e·max|bias| (Cauchy–Schwarz).</item>
/// <item>Exponentials. The argument ŝⱼ − ref rounds (relative u; the lazy reference sits at most 8 below the max), the
/// rescales of a key's later blocks add at most as much again (their increments sum to at most m̂ − ŝⱼ), and each rescale
/// or merge factor has its own error (≤ 4u, at most one per visited block and split); the exp₂ polynomial has relative
/// error η ≤ 3u (Horner with FMA, coefficient rounding, Taylor remainder; tested); arguments below −126 (−1022) flush to 0,
/// and the small-d path clamps them at −94 (−958) instead (a weight of at most 2^−94 per key, the flush term).
/// So p̂ⱼ = C·pⱼ(1 + ρⱼ) with a common C, and Σⱼ wⱼ|ρⱼ| ≤ S = κ(η + (B + splits)·4u + ln2·(E + 2u·(log₂ m + 2E + 8))) + flush,
/// κ = 2^(E + 270u) (using Σⱼ wⱼ|xⱼ| ≤ log₂ m, the entropy bound, for the true softmax weights w).</item>
/// <item>Softmax weights. Σⱼ|Ŵⱼ − wⱼ| ≤ 2S/(1 − S), and since both weight vectors sum to 1 the output moves by at
/// most that times the half-range H of V's columns — and never by more than 2H (both are convex combinations).</item>
/// <item>P·V and the row sum. Each block's P·V is summed from zero (bc FMAs) and added to the accumulator, which is
/// rescaled at most once per block: γ_{bc + 2B + 1}·Σ P|V|; the row sum: γ_{bc/W + W + 2B + 1}·Σ P (B = key blocks
/// visited); the small-d path, whose lanes run over keys: γ_{bc/W + 2B + W + 2}; each key split adds a rescale and an
/// addition.</item>
/// <item>The final division O = acc·(1/Σ): 2 roundings; float16 output: one more rounding at 2⁻¹¹.</item>
/// </list>
/// </remarks>
internal static class ExactRoundingBound
{
    /// <summary>Relative error of the kernel's vectorised exp₂ (<see cref="ISimd{T,TV}.Exp2"/>), float32 and float64: the
    /// SIMD layer's own figures (<see cref="Exp2Coefficients"/>), tested against high-precision references.</summary>
    public static double Exp2Error(bool f64) => f64 ? Exp2Coefficients.RelativeErrorF64 : Exp2Coefficients.RelativeErrorF32;
    /// <summary>Relative error of a scalar exp₂ / exp (running-max rescale, split merge: MathF/Math), in units of u.</summary>
    public const double ScalarExpUnits = 4;

    /// <summary>The bound's parts, for the certificate.</summary>
    public readonly record struct Terms(double Logits, double Weights, double Accumulation, double OutputRounding)
    {
        public double Total => Weights + Accumulation + OutputRounding;
    }

    /// <summary>The bound for one head computed by the kernel plan <paramref name="plan"/> (path, lanes, key block, splits);
    /// float16 heads run the float32 kernel and round the output once more.</summary>
    /// <param name="head">The head.</param>
    /// <param name="plan">The kernel plan that runs (or ran) it.</param>
    /// <param name="stats">The head's <see cref="Statistics"/> if already computed (planning computes them once and
    /// execution reuses them); null = computed here.</param>
    public static Terms ForHead<T>(AttentionHead<T> head, FlashPlan plan, KeyStatistics? stats = null) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = head.N, m = head.M, d = head.D, dv = head.Dv;
        if (m == 0) return default;
        bool f64 = typeof(T) == typeof(double);
        double u = f64 ? FloatingPoint.U : FloatingPoint.UFloat32;
        double uOut = typeof(T) == typeof(Half) ? FloatingPoint.UFloat16 : 0;
        int w = Math.Max(1, plan.Lanes), bc = Math.Max(1, plan.KeyBlock), splits = Math.Max(1, plan.KeySplits);
        double c = Math.Abs(head.Scale) * 1.4426950408889634;
        // Norms in float64, inflated so they bound the exact values (d + 2 roundings, a square root).
        double inflate = 1 + FloatingPoint.Gamma(d + 4);
        // Roundings of dot-product term k: the prefill and small-d paths run an FMA chain over k = 0 … d − 1 (term k meets
        // d − k of them), the decode path lanes plus a horizontal sum and a scalar tail (at most ⌈d/W⌉ + W − 1 + d mod W);
        // scaling Q adds 2, the bias 1, and with key splits the merge's maxima in natural units 3 (relative to |logit|).
        int extra = 3 + (splits > 1 ? 3 : 0);
        bool decode = plan.Path == FlashPath.Decode;
        double Weight(int k) => (decode ? (d + w - 1) / w + (w - 1) + d % w : d - k) + extra;
        double maxWeight = Weight(0);
        var q = head.Q;
        double qNorm = 0, qNorm0 = 0; // max over rows of ‖ω∘qᵢ‖ (ω the per-term rounding counts) and of ‖qᵢ‖
        for (int i = 0; i < n; i++)
        {
            double s = 0, s0 = 0;
            for (int k = 0; k < d; k++)
            {
                double e = double.CreateTruncating(q[i * d + k]), x = e * Weight(k);
                s = Math.FusedMultiplyAdd(x, x, s); s0 = Math.FusedMultiplyAdd(e, e, s0);
            }
            qNorm = Math.Max(qNorm, s); qNorm0 = Math.Max(qNorm0, s0);
        }
        qNorm = Math.Sqrt(qNorm) * inflate; qNorm0 = Math.Sqrt(qNorm0) * inflate;
        var (kNorm, vMax, halfRange, biasMax) = stats ?? Statistics(head, 1);
        double half = halfRange * (1 + 2 * FloatingPoint.U);

        // 1. Logit error in log₂ units (the weights ω above; the bias term meets at most the largest count).
        // γ_k ≤ k·u/(1 − k_max·u) for every k ≤ k_max: one factor for all terms.
        double unitScale = u / (1 - maxWeight * u);
        double logit = unitScale * (c * qNorm * kNorm * inflate + maxWeight * 1.4426950408889634 * biasMax) + 3 * u * 1.4426950408889634 * biasMax;
        // The small-d path folds the reference (a logit, |ref| ≤ the largest |logit|) into its FMA chain: each of its d
        // roundings is then relative to a partial sum that includes −ref.
        if (plan.Path == FlashPath.SmallD) logit += unitScale * d * (c * qNorm0 * kNorm * inflate + 1.4426950408889634 * biasMax);
        // 2. Relative weight perturbations averaged under the softmax weights: the exp₂ polynomial, one scalar exp per
        // rescale (≤ one per visited block) and per split merge, the argument roundings (entropy bound, plus the lazy
        // rescale's offset of at most RescaleThreshold above the reference).
        int blocks = (m + bc - 1) / bc + 1;
        // Flushed or clamped weights: ≤ 2^(floor + 1) per key, floor the small-d path's raised clamp (the other paths
        // flush below −1022 / −126, which this covers too).
        double flush = m * Math.ScaleB(1.0, 1 + (f64 ? FlashKernel<double, double, ScalarSimd<double>>.FusedFloor64 : FlashKernel<float, float, ScalarSimd<float>>.FusedFloor32));
        int offset = FlashKernel<float, float, ScalarSimd<float>>.RescaleThreshold;
        double kappa = Math.Pow(2, logit + 2 * (127 + offset) * u);
        double ln2 = 0.6931471805599453;
        double sum = kappa * (Exp2Error(f64) + (blocks + splits) * ScalarExpUnits * u + ln2 * (logit + 2 * u * (Math.Log2(m) + 2 * logit + offset))) + flush;
        double weights = sum < 1 ? Math.Min(2 * half, 2 * sum / (1 - sum) * half) : 2 * half;
        if (!double.IsFinite(weights)) weights = 2 * half;
        // 3. Accumulation: how many roundings a key's term of P·V and of the row sum meets, by path.
        double termsPV, termsSum;
        switch (plan.Path)
        {
            case FlashPath.SmallD:
                // Lanes run over keys: a block's lane sums from zero (bc/W steps), one addition and one rescale per later
                // block, the W lanes summed at the end.
                termsPV = bc / w + 2 * blocks + w + 2;
                termsSum = termsPV;
                break;
            default:
                // Block sums from zero (bc FMAs), one addition per later block, one rescale per block; the lane sum of P.
                termsPV = bc + 2 * blocks + 1;
                termsSum = bc / w + w + 2 * blocks + 1;
                break;
        }
        termsPV += 2 * splits; termsSum += 2 * splits; // each split merge: a rescale and an addition
        double gA = FloatingPoint.Gamma(termsPV, u), gS = FloatingPoint.Gamma(termsSum, u), g2 = FloatingPoint.Gamma(2, u);
        // Underflow in the FMAs (gradual, absolute ≤ the smallest subnormal per operation) against a row sum ≥ 1.
        double tiny = f64 ? double.Epsilon : float.Epsilon;
        double accumulation = vMax * ((g2 + gS) + gA * (1 + g2)) / (1 - gS) + (termsPV + termsSum) * tiny * (1 + vMax);
        double output = uOut * (vMax + weights + accumulation);
        return new Terms(logit, weights, accumulation, output);
    }

    /// <summary>What the bound needs from K, V and the bias: the largest ‖kⱼ‖ (rounded up, <see cref="FloatingPoint.MaxRowNorm"/>), the largest
    /// |V| entry, the largest half-range (max − min)/2 of a V column (min and max do not round; the subtraction's rounding
    /// is covered by the caller's 1 + 2u) and the largest finite |bias|. A NaN in V propagates (the bound is then NaN, as the output).</summary>
    public readonly record struct KeyStatistics(double KNorm, double VMax, double HalfRange, double BiasMax);

    /// <summary>
    /// <see cref="KeyStatistics"/> of a head in one pass over K and V, row by row (sequential reads; the column ranges
    /// kept as running min/max vectors), split over <paramref name="threads"/> ranges of keys.
    /// </summary>
    public static KeyStatistics Statistics<T>(AttentionHead<T> head, int threads) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        head.Problem.KeyStatistics(head, threads);

    /// <summary>Computes <see cref="Statistics"/> (the problem caches the result per K/V head).</summary>
    internal static KeyStatistics ComputeStatistics<T>(AttentionHead<T> head, int threads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int m = head.M, d = head.D, dv = head.Dv;
        if (m == 0) return default;
        var problem = head.Problem;
        long kOff = (long)head.KvIndex * problem.M * d, vOff = (long)head.KvIndex * problem.M * dv;
        // Enough keys per part that the split pays (≥ 64 KiB of K and V each).
        int parts = Math.Clamp(Math.Min(threads, (int)Math.Min(int.MaxValue, (long)m * (d + dv) * Unsafe.SizeOf<T>() / 65536)), 1, 64);
        var kMax = new double[parts];
        var lo = new double[parts * dv];
        var hi = new double[parts * dv];
        void Part(int p)
        {
            int j0 = (int)((long)m * p / parts), j1 = (int)((long)m * (p + 1) / parts);
            var k = problem.K.Span.Slice((int)(kOff + (long)j0 * d), (j1 - j0) * d);
            var v = problem.V.Span.Slice((int)(vOff + (long)j0 * dv), (j1 - j0) * dv);
            kMax[p] = FloatingPoint.MaxRowNorm(k, j1 - j0, d);
            ColumnRange(v, dv, lo.AsSpan(p * dv, dv), hi.AsSpan(p * dv, dv));
        }
        if (parts == 1) Part(0);
        else Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = parts }, Part);
        double kNorm = 0, vMax = 0, half = 0;
        for (int p = 0; p < parts; p++) kNorm = Math.Max(kNorm, kMax[p]);
        for (int c = 0; c < dv; c++)
        {
            double l = double.PositiveInfinity, h = double.NegativeInfinity;
            for (int p = 0; p < parts; p++) { l = Math.Min(l, lo[p * dv + c]); h = Math.Max(h, hi[p * dv + c]); }
            vMax = Math.Max(vMax, Math.Max(Math.Abs(l), Math.Abs(h)));
            half = Math.Max(half, 0.5 * (h - l));
        }
        double biasMax = 0;
        if (head.Mask.Bias is { } bias)
            foreach (double b in bias.Data.Span)
                if (double.IsFinite(b)) biasMax = Math.Max(biasMax, Math.Abs(b));
        return new KeyStatistics(kNorm, vMax, half, biasMax);
    }

    /// <summary>Per column of the row-major rows×cols <paramref name="x"/>: its minimum and maximum (exact; the data are
    /// finite, which the problem checked).</summary>
    private static void ColumnRange<T>(ReadOnlySpan<T> x, int cols, Span<double> lo, Span<double> hi) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int rows = cols == 0 ? 0 : x.Length / cols;
        lo.Fill(double.PositiveInfinity); hi.Fill(double.NegativeInfinity);
        int c0 = 0;
        if (typeof(T) == typeof(float) && Vector256.IsHardwareAccelerated && rows > 0 && cols >= 8)
        {
            // Blocks of rows (≤ 16 KiB, so they stay in L1), and within a block chunks of 32 columns with four running
            // min and max vectors in registers: the rows are streamed from memory once, in order (chunk-by-chunk passes
            // over all rows had read each row in strided pieces, at half the bandwidth).
            var f = MemoryMarshal.Cast<T, float>(x);
            ref float f0 = ref MemoryMarshal.GetReference(f);
            int vecCols = cols / 8 * 8;
            var runLo = new float[vecCols]; var runHi = new float[vecCols];
            runLo.AsSpan().Fill(float.PositiveInfinity); runHi.AsSpan().Fill(float.NegativeInfinity);
            ref float rl = ref MemoryMarshal.GetArrayDataReference(runLo);
            ref float rh = ref MemoryMarshal.GetArrayDataReference(runHi);
            int blockRows = Math.Max(1, 4096 / cols);
            for (int r0 = 0; r0 < rows; r0 += blockRows)
            {
                int r1 = Math.Min(rows, r0 + blockRows);
                for (int c = 0; c < vecCols; c += 32)
                {
                    int nv = Math.Min(4, (vecCols - c) / 8);
                    nuint cc = (nuint)c;
                    var l0 = Vector256.LoadUnsafe(ref rl, cc); var h0 = Vector256.LoadUnsafe(ref rh, cc);
                    var l1 = nv > 1 ? Vector256.LoadUnsafe(ref rl, cc + 8) : l0; var h1 = nv > 1 ? Vector256.LoadUnsafe(ref rh, cc + 8) : h0;
                    var l2 = nv > 2 ? Vector256.LoadUnsafe(ref rl, cc + 16) : l0; var h2 = nv > 2 ? Vector256.LoadUnsafe(ref rh, cc + 16) : h0;
                    var l3 = nv > 3 ? Vector256.LoadUnsafe(ref rl, cc + 24) : l0; var h3 = nv > 3 ? Vector256.LoadUnsafe(ref rh, cc + 24) : h0;
                    for (int r = r0; r < r1; r++)
                    {
                        nuint at = (nuint)((long)r * cols + c);
                        var a = Vector256.LoadUnsafe(ref f0, at); l0 = Vector256.Min(l0, a); h0 = Vector256.Max(h0, a);
                        if (nv > 1) { a = Vector256.LoadUnsafe(ref f0, at + 8); l1 = Vector256.Min(l1, a); h1 = Vector256.Max(h1, a); }
                        if (nv > 2) { a = Vector256.LoadUnsafe(ref f0, at + 16); l2 = Vector256.Min(l2, a); h2 = Vector256.Max(h2, a); }
                        if (nv > 3) { a = Vector256.LoadUnsafe(ref f0, at + 24); l3 = Vector256.Min(l3, a); h3 = Vector256.Max(h3, a); }
                    }
                    l0.StoreUnsafe(ref rl, cc); h0.StoreUnsafe(ref rh, cc);
                    if (nv > 1) { l1.StoreUnsafe(ref rl, cc + 8); h1.StoreUnsafe(ref rh, cc + 8); }
                    if (nv > 2) { l2.StoreUnsafe(ref rl, cc + 16); h2.StoreUnsafe(ref rh, cc + 16); }
                    if (nv > 3) { l3.StoreUnsafe(ref rl, cc + 24); h3.StoreUnsafe(ref rh, cc + 24); }
                }
            }
            for (int c = 0; c < vecCols; c++) { lo[c] = runLo[c]; hi[c] = runHi[c]; }
            c0 = vecCols;
        }
        if (c0 >= cols) return;
        for (int r = 0; r < rows; r++)
            for (int c = c0; c < cols; c++)
            {
                double e = double.CreateTruncating(x[r * cols + c]);
                lo[c] = Math.Min(lo[c], e); hi[c] = Math.Max(hi[c], e);
            }
    }
}
