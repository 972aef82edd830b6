using System.Numerics;
using System.Runtime.Intrinsics;
using FastAttention.Exact;

namespace FastAttention.Gradient;

/// <summary>dQ ([heads, n, d]), dK ([kvHeads, m, d]) and dV ([kvHeads, m, dv]) of ⟨dO, Attention(Q, K, V)⟩.</summary>
public sealed record AttentionGradients<T>(ReadOnlyMemory<T> DQ, ReadOnlyMemory<T> DK, ReadOnlyMemory<T> DV) where T : unmanaged;

/// <summary>
/// The standard attention backward pass, FlashAttention-2 style (Dao 2023, Alg. 2): given dO, the output O and the
/// per-row log-sum-exp L of the forward pass, recompute P = exp(s·QKᵀ + bias − L) tile by tile and form
/// Dᵢ = ⟨dOᵢ, Oᵢ⟩, dP = dO·Vᵀ, dS = P∘(dP − D), dV = Pᵀ·dO, dK = s·dSᵀ·Q, dQ = s·dS·K. Never an n×m matrix.
/// Every <see cref="AttentionMask"/> is honoured as in the forward pass (hidden pairs get no gradient; keys past a key
/// length get dK = dV = 0); grouped-query K/V heads receive the sum over the query heads that read them.
/// </summary>
/// <remarks>
/// One pass, parallel over key blocks: each worker owns whole key blocks (so dK, dV need no synchronisation) and a
/// private dQ accumulator; the accumulators are added in a fixed order at the end, so results do not depend on
/// scheduling. Key blocks go round-robin to workers (balanced under the causal mask). Each worker visits, per key
/// block, every query head of the block's K/V group, skipping (query tile, key block) pairs the mask hides.
/// Work: 5 tile products per tile against the forward's 2, run by <see cref="BackwardKernel{T,TV,TS}"/> at the exact
/// kernel's SIMD width (Vector512, Vector256, Vector128 or scalar, one dispatch ladder). float16 is computed in float32
/// (inputs widened exactly).
/// </remarks>
public static class AttentionBackward
{
    /// <summary>Runs the forward pass (saving O and L) and then the backward pass. float16: both in float32.</summary>
    public static AttentionGradients<T> Compute<T>(AttentionProblem<T> problem, ReadOnlyMemory<T> dO, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        CheckDO(problem, dO);
        if (typeof(T) == typeof(Half))
        {
            var p32 = FlashAttention.Widen((AttentionProblem<Half>)(object)problem);
            var g32 = Compute(p32, Widen(dO), threads);
            return Narrow<T>(g32);
        }
        return Compute(problem, dO, AttentionForward.Compute(problem, threads), threads);
    }

    /// <summary>The backward pass from a saved forward pass (float16: widened to float32 — prefer the overload that
    /// runs the forward pass, which keeps O and L in float32).</summary>
    public static AttentionGradients<T> Compute<T>(AttentionProblem<T> problem, ReadOnlyMemory<T> dO, AttentionForwardResult<T> forward, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> => ComputeWithLanes(problem, dO, forward, threads, 0, out _);

    /// <summary>As <see cref="Compute{T}(AttentionProblem{T}, ReadOnlyMemory{T}, AttentionForwardResult{T}, int)"/> with a forced
    /// SIMD width (16, 8, 4 or 1 float32 lanes; 0 = the widest the CPU has; a width the CPU lacks throws) and register
    /// blocking (true: 6×4 vectors, false: 6×2, null: 6×4 where the CPU has 32 vector registers), for tests of every kernel
    /// path. <paramref name="vectorBits"/> receives the vector width that ran, in bits.</summary>
    internal static AttentionGradients<T> ComputeWithLanes<T>(AttentionProblem<T> problem, ReadOnlyMemory<T> dO, AttentionForwardResult<T> forward,
        int threads, int forcedFloat32Lanes, out int vectorBits, bool? wideBlocks = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(forward);
        CheckDO(problem, dO);
        if (forward.Output.Length != problem.OutputLength || forward.LogSumExp.Length != (long)problem.Heads * problem.N)
            throw new ArgumentException($"the forward result has {forward.Output.Length} outputs and {forward.LogSumExp.Length} log-sum-exps; " +
                $"this problem needs {problem.OutputLength} and {(long)problem.Heads * problem.N}.", nameof(forward));
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        if (typeof(T) == typeof(Half))
        {
            var p32 = FlashAttention.Widen((AttentionProblem<Half>)(object)problem);
            var f32 = new AttentionForwardResult<float>(Widen(forward.Output), Widen(forward.LogSumExp));
            return Narrow<T>(ComputeWithLanes(p32, Widen(dO), f32, threads, forcedFloat32Lanes, out vectorBits, wideBlocks));
        }
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        var dq = new T[(long)problem.Heads * n * d];
        var dk = new T[(long)problem.KvHeads * m * d];
        var dvOut = new T[(long)problem.KvHeads * m * dv];
        int threadCount = threads > 0 ? threads : Environment.ProcessorCount;
        int bits = 0;
        if (problem.KvHeads >= threadCount && threadCount > 1)
        {
            // Enough K/V heads to keep every thread busy: one per thread, each single-threaded (no dQ partials).
            Parallel.For(0, problem.KvHeads, new ParallelOptions { MaxDegreeOfParallelism = threadCount }, g =>
                bits = Math.Max(bits, BackwardGroup(problem, g, dO, forward, dq, dk, dvOut, workers: 1, forcedFloat32Lanes, wideBlocks)));
        }
        else
        {
            // Fewer K/V heads than threads: each group split inside across all threads (workers own key blocks).
            for (int g = 0; g < problem.KvHeads; g++)
                bits = Math.Max(bits, BackwardGroup(problem, g, dO, forward, dq, dk, dvOut, threadCount, forcedFloat32Lanes, wideBlocks));
        }
        vectorBits = bits;
        return new AttentionGradients<T>(dq, dk, dvOut);
    }

    /// <summary>One K/V head g and its query heads g·G … g·G + G − 1: the SIMD kernel (<see cref="BackwardKernel{T,TV,TS}"/>) at
    /// the width of the one dispatch ladder (<see cref="SimdDispatch"/>). Returns the vector width that ran, in bits (0: nothing ran).</summary>
    private static unsafe int BackwardGroup<T>(AttentionProblem<T> problem, int g, ReadOnlyMemory<T> dO, AttentionForwardResult<T> forward,
        T[] dq, T[] dk, T[] dvOut, int workers, int forcedLanes, bool? wideBlocks)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv, group = problem.GroupSize;
        var first = problem.Head(g * group);
        int keys = first.M; // the group shares its batch element, hence its key length
        if (keys == 0) return 0; // no key exists: every gradient of the group stays 0
        double scale = problem.Scale;
        var pins = new List<System.Buffers.MemoryHandle>();
        try
        {
            var heads = new BackwardHeadInput[group];
            for (int t = 0; t < group; t++)
            {
                int h = g * group + t;
                var head = problem.Head(h);
                var mask = KernelMask.Create(head, out var vp, out var bp);
                pins.Add(vp); pins.Add(bp);
                nint Pin(ReadOnlyMemory<T> x) { pins.Add(x.Pin()); return (nint)pins[^1].Pointer; }
                heads[t] = new BackwardHeadInput
                {
                    Q = Pin(head.QMemory), O = Pin(forward.Output.Slice(h * n * dv, n * dv)), DO = Pin(dO.Slice(h * n * dv, n * dv)),
                    Lse = Pin(forward.LogSumExp.Slice(h * n, n)), DQ = Pin(dq.AsMemory(h * n * d, n * d)), Mask = mask,
                };
            }
            fixed (T* k = first.K) fixed (T* v = first.V)
            fixed (T* gk = dk.AsSpan(g * m * d, keys * d)) fixed (T* gv = dvOut.AsSpan(g * m * dv, keys * dv))
            {
                var runner = new Runner
                {
                    Heads = heads, K = k, V = v, DK = gk, DV = gv,
                    N = n, M = keys, D = d, Dv = dv, Scale = scale, Workers = workers, WideBlocks = wideBlocks,
                };
                return SimdDispatch.Run<T, Runner, int>(ref runner, forcedLanes);
            }
        }
        finally
        {
            foreach (var p in pins) p.Dispose();
        }
    }

    /// <summary>The backward kernel's arguments for the dispatch ladder (untyped pointers, re-typed at the chosen T).</summary>
    private unsafe struct Runner : ISimdKernel<int>
    {
        public BackwardHeadInput[] Heads;
        public void* K, V, DK, DV;
        public int N, M, D, Dv, Workers;
        public double Scale;
        public bool? WideBlocks;

        public int Run<T, TV, TS>() where T : unmanaged, IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
        {
            BackwardKernel<T, TV, TS>.Run(Heads, (T*)K, (T*)V, (T*)DK, (T*)DV, N, M, D, Dv, Scale, Workers, WideBlocks ?? BackwardKernel<T, TV, TS>.WideBlocksByDefault);
            return TS.Count * sizeof(T) * 8;
        }
    }

    private static AttentionGradients<T> Narrow<T>(AttentionGradients<float> g) where T : unmanaged =>
        new((T[])(object)Narrow(g.DQ.Span), (T[])(object)Narrow(g.DK.Span), (T[])(object)Narrow(g.DV.Span));

    private static Half[] Narrow(ReadOnlySpan<float> x)
    {
        var r = new Half[x.Length];
        for (int i = 0; i < r.Length; i++) r[i] = (Half)x[i];
        return r;
    }

    private static float[] Widen<T>(ReadOnlyMemory<T> x) where T : unmanaged
    {
        var s = System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(x.Span);
        var r = new float[s.Length];
        for (int i = 0; i < r.Length; i++) r[i] = (float)s[i];
        return r;
    }

    private static void CheckDO<T>(AttentionProblem<T> problem, ReadOnlyMemory<T> dO) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (dO.Length != problem.OutputLength)
            throw new ArgumentException($"dO has {dO.Length} elements but the output shape heads×n×dv = {problem.Heads}×{problem.N}×{problem.Dv} needs {problem.OutputLength}.", nameof(dO));
        var s = dO.Span;
        for (int i = 0; i < s.Length; i++)
            if (!T.IsFinite(s[i])) throw new ArgumentException($"dO contains a non-finite value ({s[i]}) at flat index {i}.", nameof(dO));
    }
}
