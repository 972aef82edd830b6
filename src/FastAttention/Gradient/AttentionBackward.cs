using System.Numerics;
using System.Numerics.Tensors;

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
/// key block [j₀, j₀ + B) only visits queries i ≥ j₀. Work: 5 tile products per tile against the forward's 2.
/// </remarks>
public static class AttentionBackward
{
    /// <summary>Query rows per tile of the backward pass.</summary>
    internal const int QueryBlock = 64;

    /// <summary>Key block width: 8 vectors (128 floats or 64 doubles with AVX-512, 64 or 32 with 256-bit vectors).</summary>
    internal static int KeyBlock<T>() where T : unmanaged => 8 * PanelKernel.Lanes<T>();

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
        int keyBlocks = (m + KeyBlock<T>() - 1) / KeyBlock<T>();
        if (problem.Heads >= threadCount && threadCount > 1)
        {
            // Enough heads to keep every thread busy: one head per thread, each single-threaded (no dQ partials).
            Parallel.For(0, problem.Heads, new ParallelOptions { MaxDegreeOfParallelism = threadCount }, h =>
                BackwardHead(problem, h, dO, forward, dq, dk, dvOut, workers: 1));
        }
        else
        {
            for (int h = 0; h < problem.Heads; h++)
                BackwardHead(problem, h, dO, forward, dq, dk, dvOut, Math.Max(1, Math.Min(threadCount, keyBlocks)));
        }
        return new AttentionGradients<T>(dq, dk, dvOut);
    }

    /// <summary>One head: Dᵢ, the packed Kᵀ/Vᵀ panels, then <paramref name="workers"/> workers over the key blocks.</summary>
    private static void BackwardHead<T>(AttentionProblem<T> problem, int h, ReadOnlyMemory<T> dO, AttentionForwardResult<T> forward,
        T[] dq, T[] dk, T[] dvOut, int workers)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        int bc = KeyBlock<T>();
        int keyBlocks = (m + bc - 1) / bc;
        var head = problem.Head(h);
        var doHead = dO.Slice(h * n * dv, n * dv);
        var oHead = forward.Output.Slice(h * n * dv, n * dv);
        var lseHead = forward.LogSumExp.Slice(h * n, n);
        // Dᵢ = ⟨dOᵢ, Oᵢ⟩ (FlashAttention-2 Alg. 2 line 4), accumulated in float64.
        var rowD = new T[n];
        for (int i = 0; i < n; i++)
        {
            var a = doHead.Span.Slice(i * dv, dv); var o = oHead.Span.Slice(i * dv, dv);
            double sum = 0;
            for (int c = 0; c < dv; c++) sum += double.CreateTruncating(a[c]) * double.CreateTruncating(o[c]);
            rowD[i] = T.CreateTruncating(sum);
        }
        // Kᵀ and Vᵀ packed per key block (d×B and dv×B panels), O(m·(d + dv)).
        var kt = new T[keyBlocks * d * bc];
        var vt = new T[keyBlocks * dv * bc];
        for (int b = 0; b < keyBlocks; b++)
        {
            int count = Math.Min(bc, m - b * bc);
            PanelKernel.PackTransposed(head.K, d, b * bc, count, bc, kt.AsSpan(b * d * bc, d * bc));
            PanelKernel.PackTransposed(head.V, dv, b * bc, count, bc, vt.AsSpan(b * dv * bc, dv * bc));
        }
        var dqPartial = new T[workers][];
        var dkHead = dk.AsMemory(h * m * d, m * d);
        var dvHead = dvOut.AsMemory(h * m * dv, m * dv);
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            var dqw = new T[n * d];
            var ws = new Workspace<T>(bc, d, dv);
            for (int b = w; b < keyBlocks; b += workers)
                KeyBlockPass(head, doHead.Span, lseHead.Span, rowD, kt, vt, b, dqw, dkHead.Span, dvHead.Span, ws);
            dqPartial[w] = dqw;
        });
        var dqHead = dq.AsSpan(h * n * d, n * d);
        foreach (var part in dqPartial) TensorPrimitives.Add(dqHead, part, dqHead);
        TensorPrimitives.Multiply(dqHead, T.CreateTruncating(head.Scale), dqHead);
    }

    private sealed class Workspace<T>(int bc, int d, int dv) where T : unmanaged
    {
        /// <summary>P and dS of one query block × key block tile, row-major (query rows × B).</summary>
        public readonly T[] P = new T[QueryBlock * bc];
        public readonly T[] DS = new T[QueryBlock * bc];
        public readonly T[] DK = new T[bc * d];
        public readonly T[] DV = new T[bc * dv];
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void KeyBlockPass<T>(AttentionHead<T> head, ReadOnlySpan<T> dO, ReadOnlySpan<T> lse, T[] rowD, T[] kt, T[] vt,
        int b, T[] dq, Span<T> dkOut, Span<T> dvOut, Workspace<T> ws)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = head.N, m = head.M, d = head.D, dv = head.Dv, bc = KeyBlock<T>(), br = QueryBlock;
        int j0 = b * bc, keys = Math.Min(bc, m - j0);
        T scale = T.CreateTruncating(head.Scale);
        var q = head.Q; var k = head.K;
        var kPanel = kt.AsSpan(b * d * bc, d * bc);
        var vPanel = vt.AsSpan(b * dv * bc, dv * bc);
        var kRows = k.Slice(j0 * d, keys * d);
        Array.Clear(ws.DK); Array.Clear(ws.DV);
        int firstQuery = head.Causal ? j0 : 0;
        if (firstQuery >= n) return; // no query sees these keys; their gradients stay 0
        for (int i0 = firstQuery / br * br; i0 < n; i0 += br)
        {
            int rows = Math.Min(br, n - i0);
            var pTile = ws.P.AsSpan(0, rows * bc);
            var dsTile = ws.DS.AsSpan(0, rows * bc);
            var qRows = q.Slice(i0 * d, rows * d);
            var doRows = dO.Slice(i0 * dv, rows * dv);
            // S = Q_blk·K_bᵀ, then P = exp(s·S − L) row by row (recomputed; Alg. 2 lines 8–9); masked keys get P = 0
            pTile.Clear();
            PanelKernel.AccumulateRows(qRows, d, 1, d, kPanel, bc, pTile, bc, bc, rows);
            for (int r = 0; r < rows; r++)
            {
                int i = i0 + r;
                int valid = Math.Max(0, head.Causal ? Math.Min(keys, i - j0 + 1) : keys);
                var pRow = pTile.Slice(r * bc, bc);
                PanelKernel.ScaledExp(pRow, scale, lse[i], valid, pRow);
            }
            // dP = dO_blk·V_bᵀ, dS = P∘(dP − D) (Alg. 2 lines 11–12)
            dsTile.Clear();
            PanelKernel.AccumulateRows(doRows, dv, 1, dv, vPanel, bc, dsTile, bc, bc, rows);
            for (int r = 0; r < rows; r++)
                PanelKernel.JacobianRow(pTile.Slice(r * bc, bc), rowD[i0 + r], dsTile.Slice(r * bc, bc));
            // dQ_blk += dS·K_b (scaled by s at the end; Alg. 2 line 13)
            PanelKernel.AccumulateRows(dsTile, bc, 1, keys, kRows, d, dq.AsSpan(i0 * d, rows * d), d, d, rows);
            // dV_b += Pᵀ·dO_blk, dK_b += dSᵀ·Q_blk, reading tile columns in place (Alg. 2 lines 10 and 14)
            PanelKernel.AccumulateRows(pTile, 1, bc, rows, doRows, dv, ws.DV, dv, dv, keys);
            PanelKernel.AccumulateRows(dsTile, 1, bc, rows, qRows, d, ws.DK, d, d, keys);
        }
        TensorPrimitives.Multiply(ws.DK.AsSpan(0, keys * d), scale, dkOut.Slice(j0 * d, keys * d));
        ws.DV.AsSpan(0, keys * dv).CopyTo(dvOut.Slice(j0 * dv, keys * dv));
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
