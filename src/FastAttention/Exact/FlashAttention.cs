using System.Numerics;
using System.Runtime.Intrinsics;

namespace FastAttention.Exact;

/// <summary>
/// Exact attention with the FlashAttention-2 kernel (<see cref="FlashKernel{T,TV,TS}"/>): tiles of queries × keys,
/// online softmax, SIMD micro-kernels with FMA (Vector512 where the CPU has AVX-512, else Vector256, else scalar),
/// multi-threaded over query tiles, float32 and float64 (float16 inputs computed in float32), every
/// <see cref="AttentionMask"/> (key blocks a mask hides are skipped), grouped-query K/V heads read in place.
/// Extreme logits give the correct near-one-hot rows: the max is subtracted before every exp. Should float32
/// logits themselves overflow (|s·q·k| &gt; 3·10³⁸), the affected rows are recomputed in float64.
/// The certificate's bound is the a-priori rounding bound of <see cref="ExactRoundingBound"/>.
/// </summary>
public sealed class FlashAttention : AttentionAlgorithm
{
    public override string Name => "exact";
    public override bool IsExact => true;

    /// <summary>Forces a SIMD width (16, 8 or 1 float32 lanes) for tests; 0 = the widest the CPU has.</summary>
    internal int ForcedFloat32Lanes { get; init; }

    /// <summary>Forces the register blocking for tests: true = 4×2 (16-register CPUs), false = 4×4; null = by CPU.</summary>
    internal bool? ForcedNarrowBlocks { get; init; }

    protected override HeadReport ComputeHead<T>(AttentionHead<T> head, Span<T> output, AttentionSettings settings)
    {
        Run(head, output, [], settings.EffectiveThreads);
        var t = RoundingBound(head);
        return new HeadReport(t.Total, [
            new("roundingBound", t.Total), new("logitErrorLog2", t.Logits), new("softmaxWeightTerm", t.Weights),
            new("accumulationTerm", t.Accumulation), new("outputRoundingTerm", t.OutputRounding),
        ]);
    }

    /// <summary>float16 inputs with a float32 output (no rounding to float16 at the end): the inputs are widened to
    /// float32 exactly and computed there; the certificate bounds the float32 result.</summary>
    public AttentionResult<float> ComputeFloat32Output(AttentionProblem<Half> problem, AttentionSettings? settings = null)
    {
        ArgumentNullException.ThrowIfNull(problem);
        return Compute(Widen(problem), settings);
    }

    /// <summary>The same problem with float16 data widened (exactly) to float32; mask, heads and batch shared.</summary>
    internal static AttentionProblem<float> Widen(AttentionProblem<Half> p) =>
        new(Widen(p.Q.Span), Widen(p.K.Span), Widen(p.V.Span), p.N, p.M, p.D, p.Dv, p.Heads, p.Scale, p.Causal, p.Mask, p.KvHeads, p.Batch);

    private static float[] Widen(ReadOnlySpan<Half> x)
    {
        var r = GC.AllocateUninitializedArray<float>(x.Length);
        for (int i = 0; i < x.Length; i++) r[i] = (float)x[i];
        return r;
    }

    /// <summary>The a-priori rounding bound of this head at the kernel's precision and blocking.</summary>
    internal ExactRoundingBound.Terms RoundingBound<T>(AttentionHead<T> head) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int lanes = ForcedFloat32Lanes > 0 ? ForcedFloat32Lanes : SimdInfo.Float32Lanes;
        bool f64 = typeof(T) == typeof(double);
        int w = lanes >= 16 && Vector512.IsHardwareAccelerated ? (f64 ? 8 : 16) : lanes >= 8 && Vector256.IsHardwareAccelerated ? (f64 ? 4 : 8) : 1;
        int bc = FlashKernel<float, float, ScalarSimd<float>>.KeyVectors(head.D) * w;
        double u = f64 ? Math.ScaleB(1.0, -53) : Math.ScaleB(1.0, -24);
        double uOut = typeof(T) == typeof(Half) ? Math.ScaleB(1.0, -11) : 0;
        return ExactRoundingBound.ForHead(head, u, bc, w, uOut);
    }

    /// <summary>
    /// Exact attention and the per-row log-sum-exp Lᵢ = log Σ_{j visible} exp(s·qᵢ·kⱼ + biasᵢⱼ) ([heads, n]; −∞ for
    /// rows that see no key) — what the FlashAttention-2 backward pass keeps from the forward pass. Heads run one after
    /// another, each on all threads. float16 problems are computed in float32 and return float16.
    /// </summary>
    public (T[] Output, T[] LogSumExp) ComputeWithLogSumExp<T>(AttentionProblem<T> problem, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (threads < 0) ThrowHelper.ArgumentOutOfRange(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        var output = new T[problem.OutputLength];
        var lse = new T[(long)problem.Heads * problem.N];
        int t = threads > 0 ? threads : Environment.ProcessorCount;
        for (int h = 0; h < problem.Heads; h++)
            Run(problem.Head(h), output.AsSpan(h * problem.N * problem.Dv, problem.N * problem.Dv), lse.AsSpan(h * problem.N, problem.N), t);
        return (output, lse);
    }

    private void Run<T>(AttentionHead<T> head, Span<T> output, Span<T> lse, int threads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (head.M == 0)
        {
            // No key exists for this head (key length 0): every row sees nothing.
            output.Clear();
            lse.Fill(T.NegativeInfinity);
            return;
        }
        if (typeof(T) == typeof(Half))
        {
            // float16: widen this head's Q, K, V (exactly) to float32, compute there, round once at the end.
            var q = Widen(System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(head.Q));
            var k = Widen(System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(head.K));
            var v = Widen(System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(head.V));
            var o32 = new float[output.Length];
            var l32 = new float[lse.Length];
            RunKernel(head, q, k, v, o32, l32, threads);
            var oh = System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(output);
            for (int i = 0; i < oh.Length; i++) oh[i] = (Half)o32[i];
            var lh = System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(lse);
            for (int i = 0; i < lh.Length; i++) lh[i] = (Half)l32[i];
            return;
        }
        RunKernel(head, head.Q, head.K, head.V, output, lse, threads);
        RecomputeNonFinite(head, output, lse);
    }

    /// <summary>The kernel at the chosen SIMD width on one head's Q (n×d), K (m×d), V (m×dv) in the kernel's type TK.</summary>
    private unsafe void RunKernel<TIn, TK>(AttentionHead<TIn> head, ReadOnlySpan<TK> qs, ReadOnlySpan<TK> ks, ReadOnlySpan<TK> vs, Span<TK> output, Span<TK> lse, int threads)
        where TIn : unmanaged, IBinaryFloatingPointIeee754<TIn>
        where TK : unmanaged, IBinaryFloatingPointIeee754<TK>
    {
        int lanes = ForcedFloat32Lanes > 0 ? ForcedFloat32Lanes : SimdInfo.Float32Lanes;
        int n = head.N, m = head.M, d = head.D, dv = head.Dv;
        double scale = head.Scale;
        // Without AVX-512 there are 16 vector registers: 4×4 accumulator blocks would spill.
        bool narrow = ForcedNarrowBlocks ?? !Vector512.IsHardwareAccelerated;
        var mask = KernelMask.Create(head, out var visiblePin, out var biasPin);
        using (visiblePin)
        using (biasPin)
        fixed (TK* qh = qs)
        fixed (TK* kh = ks)
        fixed (TK* vh = vs)
        fixed (TK* o = output)
        fixed (TK* l = lse)
        {
            if (typeof(TK) == typeof(float))
            {
                float* q = (float*)qh, k = (float*)kh, v = (float*)vh, of = (float*)o, lf = (float*)l;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) FlashKernel<float, Vector512<float>, Simd512F>.Run(q, k, v, of, lf, n, m, d, dv, scale, mask, threads, narrow);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) FlashKernel<float, Vector256<float>, Simd256F>.Run(q, k, v, of, lf, n, m, d, dv, scale, mask, threads, narrow);
                else FlashKernel<float, float, ScalarSimd<float>>.Run(q, k, v, of, lf, n, m, d, dv, scale, mask, threads, narrow);
            }
            else
            {
                double* q = (double*)qh, k = (double*)kh, v = (double*)vh, od = (double*)o, ld = (double*)l;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) FlashKernel<double, Vector512<double>, Simd512D>.Run(q, k, v, od, ld, n, m, d, dv, scale, mask, threads, narrow);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) FlashKernel<double, Vector256<double>, Simd256D>.Run(q, k, v, od, ld, n, m, d, dv, scale, mask, threads, narrow);
                else FlashKernel<double, double, ScalarSimd<double>>.Run(q, k, v, od, ld, n, m, d, dv, scale, mask, threads, narrow);
            }
        }
    }

    /// <summary>Rows whose float logits overflowed (only possible for |s·q·k| beyond the type's range) are redone in float64.</summary>
    private static void RecomputeNonFinite<T>(AttentionHead<T> head, Span<T> output, Span<T> lse) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double[]? q = null, k = null, v = null;
        double[]? row = null;
        for (int i = 0; i < head.N; i++)
        {
            var oi = output.Slice(i * head.Dv, head.Dv);
            bool bad = false;
            foreach (var x in oi) if (!T.IsFinite(x)) { bad = true; break; }
            if (!bad) continue;
            if (q is null) (q, k, v) = head.ToDouble();
            row ??= new double[head.Dv];
            double logSumExp = ReferenceAttention.Row(q, k!, v!, head.M, head.D, head.Dv, head.Scale, head.Row(i), i, row);
            for (int c = 0; c < head.Dv; c++) oi[c] = T.CreateTruncating(row[c]);
            if (!lse.IsEmpty) lse[i] = T.CreateTruncating(logSumExp);
        }
    }
}
