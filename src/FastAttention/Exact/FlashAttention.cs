using System.Numerics;

namespace FastAttention.Exact;

/// <summary>
/// Exact attention with the FlashAttention-2 kernel (<see cref="FlashKernel{T,TV,TS}"/>): tiles of queries × keys, online
/// softmax, SIMD register blocks with FMA at the width of the one dispatch ladder (<see cref="SimdDispatch"/>: Vector512,
/// Vector256, Vector128 or scalar), float32 and float64, causal mask skipping fully masked key blocks. Few queries (decode)
/// read K and V in place with the keys split across threads (flash-decoding); d ≤ 4 takes an exp-bound loop.
/// Every <see cref="AttentionMask"/> (key blocks a mask hides are skipped), grouped-query K/V heads read in place, and
/// float16 inputs (widened exactly to float32, computed there, rounded once at the end).
/// Extreme logits give the correct near-one-hot rows: a reference max is subtracted before every exp. Should float32
/// logits themselves overflow (|s·q·k| &gt; 3·10³⁸), the affected rows are recomputed in float64.
/// The certificate's bound is the a-priori rounding bound of <see cref="ExactRoundingBound"/>, for the path that ran.
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
        var plan = PlanKernel(head, context.Threads);
        // K and V are read once for the bound's statistics; execution reuses them (the plan is of this data).
        var stats = ExactRoundingBound.Statistics(head, context.Threads);
        return Planned(head, context, FlashParameters.Of(plan), RoundingBudget(head, plan, stats), Cost(head), stats);
    }

    /// <summary>What the kernel would run for this head (float16 runs the float32 kernel).</summary>
    private unsafe FlashPlan PlanKernel<T>(AttentionHead<T> head, int threads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var mask = new MaskParams { Window = head.Mask.Window ?? 0, BottomRight = head.Mask.CausalAlignment == CausalAlignment.BottomRight };
        if (typeof(T) == typeof(Half))
        {
            var p32 = FlashParams<float>.Contiguous(null, null, null, null, null, 1, head.N, head.M, head.D, head.Dv, head.Scale, head.Causal);
            p32.Mask = mask;
            return FlashKernels.Plan(p32, threads, Tuning, ForcedFloat32Lanes);
        }
        var p = FlashParams<T>.Contiguous(null, null, null, null, null, 1, head.N, head.M, head.D, head.Dv, head.Scale, head.Causal);
        p.Mask = mask;
        return FlashKernels.Plan(p, threads, Tuning, ForcedFloat32Lanes);
    }

    /// <summary>The a-priori rounding bound of this head for the kernel plan that runs it, as named error terms.</summary>
    internal static IReadOnlyList<ErrorTerm> RoundingBudget<T>(AttentionHead<T> head, FlashPlan plan, ExactRoundingBound.KeyStatistics? stats = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var t = ExactRoundingBound.ForHead(head, plan, stats);
        return [
            new ErrorTerm("softmax weights (logit, exp₂, rescale rounding)", t.Weights),
            new ErrorTerm("P·V and row-sum accumulation, final division", t.Accumulation),
            new ErrorTerm("output rounding", t.OutputRounding),
        ];
    }

    /// <summary>float16 inputs with a float32 output (no rounding to float16 at the end): the inputs are widened to
    /// float32 exactly and computed there; the certificate bounds the float32 result.</summary>
    /// <param name="problem">A float16 problem (any mask, grouped-query heads).</param>
    /// <param name="settings">Threads, cancellation, progress; null = defaults.</param>
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

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        context.ThrowIfCancelled();
        var ran = Run(head.Problem, head.Index, 1, output, [], [], context.Threads);
        var stats = plan.State as ExactRoundingBound.KeyStatistics? ?? ExactRoundingBound.Statistics(head, context.Threads);
        return new HeadExecution(RoundingBudget(head, ran, stats), FlashParameters.Of(ran));
    }

    /// <summary>The counted work of exact attention on one head: 2·(d + dv) flops and one exp per visible logit, Q, K,
    /// V read and O written once.</summary>
    internal static CostEstimate Cost<T>(AttentionHead<T> head) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double logits = 0;
        if (!head.HasUpperBound && head.Mask.Window is null) logits = (double)head.N * head.M;
        else for (int i = 0; i < head.N; i++) { var (lo, hi) = head.KeyRange(i); logits += hi - lo; }
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

    /// <summary>Runs heads [h0, h0 + heads) of <paramref name="problem"/> (contiguous [heads, n, d] layout; K/V heads
    /// [kvHeads, m, ·]) into <paramref name="output"/> and, when not empty, <paramref name="lse"/>; partial mode when
    /// <paramref name="partialSum"/> is not empty. float16 is widened to float32 for the kernel and rounded back.</summary>
    private unsafe FlashPlan Run<T>(AttentionProblem<T> problem, int h0, int heads, Span<T> output, Span<T> lse, Span<T> partialSum, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv, g = problem.GroupSize;
        int kv0 = h0 / g, kv1 = (h0 + heads - 1) / g + 1;
        FlashPlan plan;
        if (typeof(T) == typeof(Half))
        {
            var hp = (AttentionProblem<Half>)(object)problem;
            float[] q = Widen(hp.Q.Span.Slice(h0 * n * d, heads * n * d)), k = Widen(hp.K.Span.Slice(kv0 * m * d, (kv1 - kv0) * m * d));
            float[] v = Widen(hp.V.Span.Slice(kv0 * m * dv, (kv1 - kv0) * m * dv));
            var o32 = new float[output.Length]; var l32 = new float[lse.Length]; var s32 = new float[partialSum.Length];
            fixed (float* pq = q) fixed (float* pk = k) fixed (float* pv = v) fixed (float* po = o32) fixed (float* pl = l32) fixed (float* ps = s32)
                plan = RunKernel(hp, h0, heads, pq, pk, pv, po, lse.IsEmpty ? null : pl, partialSum.IsEmpty ? null : ps, threads);
            var oh = System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(output);
            for (int i = 0; i < oh.Length; i++) oh[i] = (Half)o32[i];
            var lh = System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(lse);
            for (int i = 0; i < lh.Length; i++) lh[i] = (Half)l32[i];
            var sh = System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(partialSum);
            for (int i = 0; i < sh.Length; i++) sh[i] = (Half)s32[i];
            for (int h = 0; h < heads; h++)
                RecomputeNonFinite(problem.Head(h0 + h), output.Slice(h * n * dv, n * dv),
                    lse.IsEmpty ? [] : lse.Slice(h * n, n), partialSum.IsEmpty ? [] : partialSum.Slice(h * n, n));
            return plan;
        }
        using (var qh = problem.Q.Slice(h0 * n * d, heads * n * d).Pin())
        using (var kh = problem.K.Slice(kv0 * m * d, (kv1 - kv0) * m * d).Pin())
        using (var vh = problem.V.Slice(kv0 * m * dv, (kv1 - kv0) * m * dv).Pin())
        fixed (T* o = output)
        fixed (T* l = lse)
        fixed (T* ps = partialSum)
            plan = RunKernel(problem, h0, heads, (T*)qh.Pointer, (T*)kh.Pointer, (T*)vh.Pointer, o, lse.IsEmpty ? null : l, partialSum.IsEmpty ? null : ps, threads);
        for (int h = 0; h < heads; h++)
            RecomputeNonFinite(problem.Head(h0 + h), output.Slice(h * n * dv, n * dv),
                lse.IsEmpty ? [] : lse.Slice(h * n, n), partialSum.IsEmpty ? [] : partialSum.Slice(h * n, n));
        return plan;
    }

    /// <summary>The kernel on heads [h0, h0 + heads) of <paramref name="problem"/> over buffers of the kernel's type TK: Q, O
    /// (and the log-sum-exp / partial sums) from head h0, K and V from K/V head h0 / G. With key lengths the heads run
    /// in batch-element groups (the kernel's m is the group's key length); a group without keys gets zeros and −∞.</summary>
    private unsafe FlashPlan RunKernel<TIn, TK>(AttentionProblem<TIn> problem, int h0, int heads, TK* q, TK* k, TK* v, TK* o, TK* lse, TK* partialSum, int threads)
        where TIn : unmanaged, IBinaryFloatingPointIeee754<TIn>
        where TK : unmanaged, IBinaryFloatingPointIeee754<TK>
    {
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv, g = problem.GroupSize, hpb = problem.HeadsPerBatch;
        FlashPlan plan = default;
        var maskParams = MaskParams.Create(problem, h0, out var visiblePin, out var biasPin);
        using (visiblePin)
        using (biasPin)
        {
            for (int start = h0; start < h0 + heads;)
            {
                // Heads of one batch element share its key length; without key lengths every head runs in one call.
                int end = problem.Mask.HasKeyLengths ? Math.Min(h0 + heads, (start / hpb + 1) * hpb) : h0 + heads;
                int keys = problem.KeyCount(start), count = end - start, off = start - h0;
                if (keys == 0)
                {
                    for (int t = 0; t < count * n; t++)
                    {
                        if (lse != null) lse[off * n + t] = TK.NegativeInfinity;
                        if (partialSum != null) partialSum[off * n + t] = TK.Zero;
                    }
                    new Span<TK>(o + (long)off * n * dv, count * n * dv).Clear();
                }
                else
                {
                    long kvOff = (long)(start / g - h0 / g) * m;
                    var p = FlashParams<TK>.Contiguous(q + (long)off * n * d, k + kvOff * d, v + kvOff * dv, o + (long)off * n * dv,
                        lse == null ? null : lse + (long)off * n, count, n, m, d, dv, problem.Scale, problem.Causal);
                    p.M = keys; // strides stay those of the full m
                    p.PartialSum = partialSum == null ? null : partialSum + (long)off * n;
                    p.Mask = maskParams;
                    p.Mask.HeadBase = start;
                    plan = FlashKernels.Run(p, threads, Tuning, ForcedFloat32Lanes);
                }
                start = end;
            }
        }
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
            // A row the kernel finished as "saw no key" (zeros) although it sees keys: its logits may all have overflowed
            // to −∞ in the kernel's type (s·q·k ≪ −3.4e38 in float32, or s itself beyond float32), which is not a mask.
            if (!bad && IsZero(oi) && MayOverflow(head, i)) bad = true;
            if (!bad) continue;
            if (q is null) (q, k, v) = head.ToDouble();
            row ??= new double[head.Dv];
            double logSumExp = ReferenceAttention.Row(q, k!, v!, head.M, head.D, head.Dv, head.Scale, head.Row(i), i, row);
            for (int c = 0; c < head.Dv; c++) oi[c] = T.CreateTruncating(row[c]);
            if (!lse.IsEmpty) lse[i] = T.CreateTruncating(logSumExp);
            // A partial's max of −∞ means "saw no key": a row that saw keys, with a log-sum-exp below the type's range,
            // keeps the most negative finite value (against any representable partial its weight is 0 either way).
            if (partial && T.IsNegativeInfinity(lse[i]) && !double.IsNegativeInfinity(logSumExp)) lse[i] = -T.CreateTruncating(typeof(T) == typeof(double) ? double.MaxValue : typeof(T) == typeof(Half) ? (double)Half.MaxValue : float.MaxValue);
            if (partial) partialSum[i] = T.One;
        }
    }

    private static bool IsZero<T>(Span<T> row) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        foreach (var x in row) if (x != T.Zero) return false;
        return true;
    }

    /// <summary>Whether row i's scaled logits can leave the kernel's type: it sees a key, and s·log₂e (the kernel's query
    /// scale) or |s|·‖qᵢ‖∞·‖K‖∞·d·log₂e is beyond float32's range (float32 and float16 inputs run the float32 kernel) or
    /// float64's (a margin of 2⁶ for the bias, which float64 holds as given).</summary>
    private static bool MayOverflow<T>(AttentionHead<T> head, int i) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var (lo, hi) = head.KeyRange(i);
        if (lo >= hi) return false;
        double limit = typeof(T) == typeof(double) ? Math.ScaleB(1.0, 1017) : Math.ScaleB(1.0, 121), s = Math.Abs(head.Scale) * 1.4426950408889634;
        if (!(s < limit)) return true;
        double qMax = 0;
        foreach (var x in head.Q.Slice(i * head.D, head.D)) qMax = Math.Max(qMax, Math.Abs(double.CreateTruncating(x)));
        return !(s * qMax * head.Problem.KMax * head.D < limit);
    }
}
