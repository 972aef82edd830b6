using System.Numerics;
using FastAttention.Exact;

namespace FastAttention.Gradient;

/// <summary>dQ ([heads, n, d]), dK ([heads, m, d]) and dV ([heads, m, dv]) of ⟨dO, Attention(Q, K, V)⟩.</summary>
public sealed record AttentionGradients<T>(ReadOnlyMemory<T> DQ, ReadOnlyMemory<T> DK, ReadOnlyMemory<T> DV) where T : unmanaged;

/// <summary>
/// The standard attention backward pass, FlashAttention-2 style (Dao 2023, Alg. 2): given dO, the output O and the
/// per-row log-sum-exp L of the forward pass, recompute P = exp(s·QKᵀ − L) tile by tile and form
/// Dᵢ = ⟨dOᵢ, Oᵢ⟩, dP = dO·Vᵀ, dS = P∘(dP − D), dV = Pᵀ·dO, dK = s·dSᵀ·Q, dQ = s·dS·K. Never an n×m matrix.
/// </summary>
/// <remarks>
/// One pass, parallel over key blocks: each worker owns whole key blocks (so dK, dV need no synchronisation) and a
/// private dQ accumulator; the accumulators are added in a fixed order at the end, so results do not depend on
/// scheduling. Key blocks go round-robin to workers (balanced under the causal mask). Causal: query i sees keys j ≤ i;
/// key block [j₀, j₀ + B) only visits queries i ≥ j₀. Work: 5 tile products per tile against the forward's 2, run by
/// <see cref="BackwardKernel{T,TV,TS}"/> at the exact kernel's SIMD width (Vector512, Vector256, Vector128 or scalar, one dispatch ladder).
/// </remarks>
public static class AttentionBackward
{
    /// <summary>Runs the forward pass (saving O and L) and then the backward pass.</summary>
    public static AttentionGradients<T> Compute<T>(AttentionProblem<T> problem, ReadOnlyMemory<T> dO, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        CheckDO(problem, dO);
        return Compute(problem, dO, AttentionForward.Compute(problem, threads), threads);
    }

    /// <summary>The backward pass from a saved forward pass.</summary>
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
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        var dq = new T[(long)problem.Heads * n * d];
        var dk = new T[(long)problem.Heads * m * d];
        var dvOut = new T[(long)problem.Heads * m * dv];
        int threadCount = threads > 0 ? threads : Environment.ProcessorCount;
        int bits = 0;
        if (problem.Heads >= threadCount && threadCount > 1)
        {
            // Enough heads to keep every thread busy: one head per thread, each single-threaded (no dQ partials).
            Parallel.For(0, problem.Heads, new ParallelOptions { MaxDegreeOfParallelism = threadCount }, h =>
                bits = BackwardHead(problem, h, dO, forward, dq, dk, dvOut, workers: 1, forcedFloat32Lanes, wideBlocks));
        }
        else
        {
            // Fewer heads than threads: each head split inside across all threads (workers own key blocks).
            for (int h = 0; h < problem.Heads; h++)
                bits = BackwardHead(problem, h, dO, forward, dq, dk, dvOut, threadCount, forcedFloat32Lanes, wideBlocks);
        }
        vectorBits = bits;
        return new AttentionGradients<T>(dq, dk, dvOut);
    }

    /// <summary>One head: the SIMD kernel (<see cref="BackwardKernel{T,TV,TS}"/>) at the width of the one dispatch ladder
    /// (<see cref="SimdDispatch"/>). Returns the vector width that ran, in bits.</summary>
    private static unsafe int BackwardHead<T>(AttentionProblem<T> problem, int h, ReadOnlyMemory<T> dO, AttentionForwardResult<T> forward,
        T[] dq, T[] dk, T[] dvOut, int workers, int forcedLanes, bool? wideBlocks)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        var head = problem.Head(h);
        var doHead = dO.Slice(h * n * dv, n * dv).Span;
        var oHead = forward.Output.Slice(h * n * dv, n * dv).Span;
        fixed (T* q = head.Q) fixed (T* k = head.K) fixed (T* v = head.V) fixed (T* o = oHead) fixed (T* g = doHead)
        fixed (T* l = forward.LogSumExp.Slice(h * n, n).Span)
        fixed (T* gq = dq.AsSpan(h * n * d, n * d)) fixed (T* gk = dk.AsSpan(h * m * d, m * d)) fixed (T* gv = dvOut.AsSpan(h * m * dv, m * dv))
        {
            var runner = new Runner
            {
                Q = q, K = k, V = v, O = o, DO = g, Lse = l, DQ = gq, DK = gk, DV = gv,
                N = n, M = m, D = d, Dv = dv, Scale = head.Scale, Causal = head.Causal, Workers = workers, WideBlocks = wideBlocks,
            };
            return SimdDispatch.Run<T, Runner, int>(ref runner, forcedLanes);
        }
    }

    /// <summary>The backward kernel's arguments for the dispatch ladder (untyped pointers, re-typed at the chosen T).</summary>
    private unsafe struct Runner : ISimdKernel<int>
    {
        public void* Q, K, V, O, DO, Lse, DQ, DK, DV;
        public int N, M, D, Dv, Workers;
        public double Scale;
        public bool Causal;
        public bool? WideBlocks;

        public int Run<T, TV, TS>() where T : unmanaged, IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
        {
            BackwardKernel<T, TV, TS>.Run((T*)Q, (T*)K, (T*)V, (T*)O, (T*)DO, (T*)Lse, (T*)DQ, (T*)DK, (T*)DV,
                N, M, D, Dv, Scale, Causal, Workers, WideBlocks ?? BackwardKernel<T, TV, TS>.WideBlocksByDefault);
            return TS.Count * sizeof(T) * 8;
        }
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
