using System.Numerics;
using System.Runtime.Intrinsics;

namespace FastAttention.Exact;

/// <summary>
/// Exact attention with the FlashAttention-2 kernel (<see cref="FlashKernel{T,TV,TS}"/>): tiles of queries × keys,
/// online softmax, SIMD micro-kernels with FMA (Vector512 where the CPU has AVX-512, else Vector256, else scalar),
/// multi-threaded over query tiles, float32 and float64, causal mask skipping fully masked key blocks.
/// Extreme logits give the correct near-one-hot rows: the max is subtracted before every exp. Should float32
/// logits themselves overflow (|s·q·k| &gt; 3·10³⁸), the affected rows are recomputed in float64.
/// </summary>
public sealed class FlashAttention : AttentionAlgorithm
{
    public override string Name => "exact";
    public override bool IsExact => true;

    /// <summary>Forces a SIMD width (16, 8 or 1 float32 lanes) for tests; 0 = the widest the CPU has.</summary>
    internal int ForcedFloat32Lanes { get; init; }

    /// <summary>Forces the register blocking for tests: true = 4×2 (16-register CPUs), false = 4×4; null = by CPU.</summary>
    internal bool? ForcedNarrowBlocks { get; init; }

    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        int lanes = Lanes<T>();
        return Planned(head, context, new ExactParameters("flash", lanes), [], Cost(head));
    }

    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        Run(head, output, [], context.Threads);
        return new HeadExecution([], plan.Parameters);
    }

    /// <summary>The counted work of exact attention on one head: 2·(d + dv) flops and one exp per visible logit, Q, K,
    /// V read and O written once.</summary>
    internal static CostEstimate Cost<T>(AttentionHead<T> head) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double logits = 0;
        if (!head.Causal) logits = (double)head.N * head.M;
        else for (int i = 0; i < head.N; i++) logits += head.VisibleKeys(i);
        double size = System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        double bytes = size * ((double)head.N * head.D + (double)head.M * (head.D + head.Dv) + (double)head.N * head.Dv);
        double width = typeof(T) == typeof(double) ? 2 : 1; // float64 runs half the lanes
        return new CostEstimate(2.0 * logits * (head.D + head.Dv) * width, logits * width, bytes);
    }

    private int Lanes<T>() where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int lanes = ForcedFloat32Lanes > 0 ? ForcedFloat32Lanes : SimdInfo.Float32Lanes;
        int w = lanes >= 16 && Vector512.IsHardwareAccelerated ? 16 : lanes >= 8 && Vector256.IsHardwareAccelerated ? 8 : 1;
        return typeof(T) == typeof(double) ? Math.Max(1, w / 2) : w;
    }

    /// <summary>
    /// Exact attention and the per-row log-sum-exp Lᵢ = log Σ_{j visible} exp(s·qᵢ·kⱼ) ([heads, n]) — what the
    /// FlashAttention-2 backward pass keeps from the forward pass. Heads run one after another, each on all threads.
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

    private unsafe void Run<T>(AttentionHead<T> head, Span<T> output, Span<T> lse, int threads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int lanes = ForcedFloat32Lanes > 0 ? ForcedFloat32Lanes : SimdInfo.Float32Lanes;
        using var qh = head.QMemory.Pin();
        using var kh = head.KMemory.Pin();
        using var vh = head.VMemory.Pin();
        int n = head.N, m = head.M, d = head.D, dv = head.Dv;
        double scale = head.Scale;
        // Without AVX-512 there are 16 vector registers: 4×4 accumulator blocks would spill.
        bool narrow = ForcedNarrowBlocks ?? !Vector512.IsHardwareAccelerated;
        bool causal = head.Causal;
        fixed (T* o = output)
        fixed (T* l = lse)
        {
            if (typeof(T) == typeof(float))
            {
                float* q = (float*)qh.Pointer, k = (float*)kh.Pointer, v = (float*)vh.Pointer, of = (float*)o, lf = (float*)l;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) FlashKernel<float, Vector512<float>, Simd512F>.Run(q, k, v, of, lf, n, m, d, dv, scale, causal, threads, narrow);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) FlashKernel<float, Vector256<float>, Simd256F>.Run(q, k, v, of, lf, n, m, d, dv, scale, causal, threads, narrow);
                else FlashKernel<float, float, ScalarSimd<float>>.Run(q, k, v, of, lf, n, m, d, dv, scale, causal, threads, narrow);
            }
            else
            {
                double* q = (double*)qh.Pointer, k = (double*)kh.Pointer, v = (double*)vh.Pointer, od = (double*)o, ld = (double*)l;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) FlashKernel<double, Vector512<double>, Simd512D>.Run(q, k, v, od, ld, n, m, d, dv, scale, causal, threads, narrow);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) FlashKernel<double, Vector256<double>, Simd256D>.Run(q, k, v, od, ld, n, m, d, dv, scale, causal, threads, narrow);
                else FlashKernel<double, double, ScalarSimd<double>>.Run(q, k, v, od, ld, n, m, d, dv, scale, causal, threads, narrow);
            }
        }
        RecomputeNonFinite(head, output, lse);
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
            double logSumExp = ReferenceAttention.Row(q, k!, v!, head.M, head.D, head.Dv, head.Scale, head.Causal, i, row);
            for (int c = 0; c < head.Dv; c++) oi[c] = T.CreateTruncating(row[c]);
            if (!lse.IsEmpty) lse[i] = T.CreateTruncating(logSumExp);
        }
    }
}
