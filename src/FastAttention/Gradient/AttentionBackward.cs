using System.Numerics;
using System.Runtime.Intrinsics;
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
/// <see cref="BackwardKernel{T,TV,TS}"/> at the exact kernel's SIMD width (Vector512, Vector256 or scalar).
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
        where T : unmanaged, IBinaryFloatingPointIeee754<T> => ComputeWithLanes(problem, dO, forward, threads, 0);

    /// <summary>As <see cref="Compute{T}(AttentionProblem{T}, ReadOnlyMemory{T}, AttentionForwardResult{T}, int)"/> with a forced
    /// SIMD width (16, 8 or 1 float32 lanes; 0 = the widest the CPU has) and register blocking (true: 4×4 vectors, false:
    /// 4×2, null: 4×4 where the CPU has 32 vector registers), for tests of every kernel path.</summary>
    internal static AttentionGradients<T> ComputeWithLanes<T>(AttentionProblem<T> problem, ReadOnlyMemory<T> dO, AttentionForwardResult<T> forward,
        int threads, int forcedFloat32Lanes, bool? wideBlocks = null)
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
        int lanes = forcedFloat32Lanes > 0 ? forcedFloat32Lanes : SimdInfo.Float32Lanes;
        if (problem.Heads >= threadCount && threadCount > 1)
        {
            // Enough heads to keep every thread busy: one head per thread, each single-threaded (no dQ partials).
            Parallel.For(0, problem.Heads, new ParallelOptions { MaxDegreeOfParallelism = threadCount }, h =>
                BackwardHead(problem, h, dO, forward, dq, dk, dvOut, workers: 1, lanes, wideBlocks));
        }
        else
        {
            for (int h = 0; h < problem.Heads; h++)
                BackwardHead(problem, h, dO, forward, dq, dk, dvOut, threadCount, lanes, wideBlocks);
        }
        return new AttentionGradients<T>(dq, dk, dvOut);
    }

    /// <summary>One head: the SIMD kernel (<see cref="BackwardKernel{T,TV,TS}"/>) at the chosen width.</summary>
    private static unsafe void BackwardHead<T>(AttentionProblem<T> problem, int h, ReadOnlyMemory<T> dO, AttentionForwardResult<T> forward,
        T[] dq, T[] dk, T[] dvOut, int workers, int lanes, bool? wideBlocks)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        var head = problem.Head(h);
        var doHead = dO.Slice(h * n * dv, n * dv).Span;
        var oHead = forward.Output.Slice(h * n * dv, n * dv).Span;
        double scale = head.Scale;
        bool causal = head.Causal;
        fixed (T* q = head.Q) fixed (T* k = head.K) fixed (T* v = head.V) fixed (T* o = oHead) fixed (T* g = doHead)
        fixed (T* l = forward.LogSumExp.Slice(h * n, n).Span)
        fixed (T* gq = dq.AsSpan(h * n * d, n * d)) fixed (T* gk = dk.AsSpan(h * m * d, m * d)) fixed (T* gv = dvOut.AsSpan(h * m * dv, m * dv))
        {
            if (typeof(T) == typeof(float))
            {
                float* qf = (float*)q, kf = (float*)k, vf = (float*)v, gf = (float*)g, lf = (float*)l, of = (float*)o, gqf = (float*)gq, gkf = (float*)gk, gvf = (float*)gv;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) BackwardKernel<float, Vector512<float>, Simd512F>.Run(qf, kf, vf, of, gf, lf, gqf, gkf, gvf, n, m, d, dv, scale, causal, workers, wideBlocks ?? BackwardKernel<float, Vector512<float>, Simd512F>.WideBlocksByDefault);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) BackwardKernel<float, Vector256<float>, Simd256F>.Run(qf, kf, vf, of, gf, lf, gqf, gkf, gvf, n, m, d, dv, scale, causal, workers, wideBlocks ?? BackwardKernel<float, Vector256<float>, Simd256F>.WideBlocksByDefault);
                else BackwardKernel<float, float, ScalarSimd<float>>.Run(qf, kf, vf, of, gf, lf, gqf, gkf, gvf, n, m, d, dv, scale, causal, workers, wideBlocks ?? BackwardKernel<float, float, ScalarSimd<float>>.WideBlocksByDefault);
            }
            else
            {
                double* qd = (double*)q, kd = (double*)k, vd = (double*)v, gd = (double*)g, ld = (double*)l, od = (double*)o, gqd = (double*)gq, gkd = (double*)gk, gvd = (double*)gv;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) BackwardKernel<double, Vector512<double>, Simd512D>.Run(qd, kd, vd, od, gd, ld, gqd, gkd, gvd, n, m, d, dv, scale, causal, workers, wideBlocks ?? BackwardKernel<double, Vector512<double>, Simd512D>.WideBlocksByDefault);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) BackwardKernel<double, Vector256<double>, Simd256D>.Run(qd, kd, vd, od, gd, ld, gqd, gkd, gvd, n, m, d, dv, scale, causal, workers, wideBlocks ?? BackwardKernel<double, Vector256<double>, Simd256D>.WideBlocksByDefault);
                else BackwardKernel<double, double, ScalarSimd<double>>.Run(qd, kd, vd, od, gd, ld, gqd, gkd, gvd, n, m, d, dv, scale, causal, workers, wideBlocks ?? BackwardKernel<double, double, ScalarSimd<double>>.WideBlocksByDefault);
            }
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
