using System.Numerics;

namespace FastAttention.Exact;

/// <summary>
/// Exact attention with the FlashAttention-2 kernel (<see cref="FlashKernel{T,TV,TS}"/>): tiles of queries × keys, online
/// softmax, SIMD register blocks with FMA at the width of the one dispatch ladder (<see cref="SimdDispatch"/>: Vector512,
/// Vector256, Vector128 or scalar), float32 and float64, causal mask skipping fully masked key blocks. Few queries (decode)
/// read K and V in place with the keys split across threads (flash-decoding); d ≤ 4 takes an exp-bound loop.
/// Extreme logits give the correct near-one-hot rows: a reference max is subtracted before every exp. Should float32
/// logits themselves overflow (|s·q·k| &gt; 3·10³⁸), the affected rows are recomputed in float64.
/// </summary>
public sealed class FlashAttention : AttentionAlgorithm
{
    /// <summary><c>"exact"</c>: the FlashAttention-2 kernel; exact up to floating-point rounding.</summary>
    public override string Name => "exact";
    /// <summary>True: no ε is needed; the certificate carries the kernel's rounding bound.</summary>
    public override bool IsExact => true;

    /// <summary>Forces a SIMD width (16, 8, 4 or 1 float32 lanes) for tests; 0 = the widest the CPU has. A width the CPU
    /// lacks throws <see cref="PlatformNotSupportedException"/> (it never silently runs a narrower one).</summary>
    internal int ForcedFloat32Lanes { get; init; }

    /// <summary>Forces path, tiles, key splits or register blocking for tests; default = chosen by the kernel's plan.</summary>
    internal FlashTuning Tuning { get; init; }

    /// <inheritdoc/>
    protected override unsafe HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        var plan = FlashKernels.Plan(FlashParams<T>.Contiguous(null, null, null, null, null, 1, head.N, head.M, head.D, head.Dv, head.Scale, head.Causal),
            context.Threads, Tuning, ForcedFloat32Lanes);
        return Planned(head, context, FlashParameters.Of(plan), [], Cost(head));
    }

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        context.ThrowIfCancelled();
        var ran = Run(head.Problem, head.Index, 1, output, [], [], context.Threads);
        return new HeadExecution([], FlashParameters.Of(ran));
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

    /// <summary>
    /// Exact attention and the per-row log-sum-exp Lᵢ = log Σ_{j visible} exp(s·qᵢ·kⱼ) ([heads, n]) — what the
    /// FlashAttention-2 backward pass keeps from the forward pass. All heads run in one parallel loop on all threads.
    /// </summary>
    public (T[] Output, T[] LogSumExp) ComputeWithLogSumExp<T>(AttentionProblem<T> problem, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (threads < 0) ThrowHelper.ArgumentOutOfRange(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        var output = new T[problem.OutputLength];
        var lse = new T[(long)problem.Heads * problem.N];
        Run(problem, 0, problem.Heads, output, lse, [], threads > 0 ? threads : Environment.ProcessorCount);
        return (output, lse);
    }

    /// <summary>
    /// The mergeable partial state of this problem (rows = heads·n, row h·n + i): per row the max logit, the sum of
    /// exp(logit − max) and the unnormalised output, over the problem's keys. Partials of problems that share Q and split
    /// the keys (disjoint sets of K, V rows) merge (<see cref="AttentionPartial{T}.MergeFrom"/>) into the partial of the
    /// whole; <see cref="AttentionPartial{T}.Normalize"/> then gives the attention output. A causal problem masks by the key
    /// positions within this problem (query i sees its keys 0..i).
    /// </summary>
    public AttentionPartial<T> ComputePartial<T>(AttentionProblem<T> problem, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (threads < 0) ThrowHelper.ArgumentOutOfRange(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        var partial = new AttentionPartial<T>(problem.Heads * problem.N, problem.Dv);
        Run(problem, 0, problem.Heads, partial.Output, partial.Max, partial.Sum, threads > 0 ? threads : Environment.ProcessorCount);
        return partial;
    }

    /// <summary>Runs heads [h0, h0 + heads) of <paramref name="problem"/> (contiguous [heads, n, d] layout) into
    /// <paramref name="output"/> and, when not empty, <paramref name="lse"/>; partial mode when <paramref name="partialSum"/> is not empty.</summary>
    private unsafe FlashPlan Run<T>(AttentionProblem<T> problem, int h0, int heads, Span<T> output, Span<T> lse, Span<T> partialSum, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        FlashPlan plan;
        using (var qh = problem.Q.Slice(h0 * n * d, heads * n * d).Pin())
        using (var kh = problem.K.Slice(h0 * m * d, heads * m * d).Pin())
        using (var vh = problem.V.Slice(h0 * m * dv, heads * m * dv).Pin())
        fixed (T* o = output)
        fixed (T* l = lse)
        fixed (T* ps = partialSum)
        {
            var p = FlashParams<T>.Contiguous((T*)qh.Pointer, (T*)kh.Pointer, (T*)vh.Pointer, o, l, heads, n, m, d, dv, problem.Scale, problem.Causal);
            p.PartialSum = ps;
            plan = FlashKernels.Run(p, threads, Tuning, ForcedFloat32Lanes);
        }
        for (int h = 0; h < heads; h++)
            RecomputeNonFinite(problem.Head(h0 + h), output.Slice(h * n * dv, n * dv),
                lse.IsEmpty ? [] : lse.Slice(h * n, n), partialSum.IsEmpty ? [] : partialSum.Slice(h * n, n));
        return plan;
    }

    /// <summary>Rows whose float logits overflowed (only possible for |s·q·k| beyond the type's range) are redone in float64;
    /// in partial mode the row becomes the partial of its finished result (max = log-sum-exp, sum = 1).</summary>
    private static void RecomputeNonFinite<T>(AttentionHead<T> head, Span<T> output, Span<T> lse, Span<T> partialSum)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double[]? q = null, k = null, v = null;
        double[]? row = null;
        bool partial = !partialSum.IsEmpty;
        for (int i = 0; i < head.N; i++)
        {
            var oi = output.Slice(i * head.Dv, head.Dv);
            bool bad = partial && (!T.IsFinite(partialSum[i]) || T.IsPositiveInfinity(lse[i]) || T.IsNaN(lse[i]));
            foreach (var x in oi) if (!T.IsFinite(x)) { bad = true; break; }
            if (!bad) continue;
            if (q is null) (q, k, v) = head.ToDouble();
            row ??= new double[head.Dv];
            double logSumExp = ReferenceAttention.Row(q, k!, v!, head.M, head.D, head.Dv, head.Scale, head.Causal, i, row);
            for (int c = 0; c < head.Dv; c++) oi[c] = T.CreateTruncating(row[c]);
            if (!lse.IsEmpty) lse[i] = T.CreateTruncating(logSumExp);
            if (partial) partialSum[i] = T.One;
        }
    }
}
