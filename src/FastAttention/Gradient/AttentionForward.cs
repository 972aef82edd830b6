using System.Numerics;
using System.Numerics.Tensors;

namespace FastAttention.Gradient;

/// <summary>What the forward pass keeps for the backward pass (FlashAttention-2, Dao 2023, Alg. 1): the output O
/// ([heads, n, dv]) and the per-row log-sum-exp Lᵢ = log Σ_j exp(s·qᵢ·k_j) ([heads, n]); never the n×m matrix.</summary>
public sealed record AttentionForwardResult<T>(ReadOnlyMemory<T> Output, ReadOnlyMemory<T> LogSumExp) where T : unmanaged;

/// <summary>
/// The forward pass of the gradient module: exact attention with the per-row log-sum-exp saved, tiled
/// (query blocks × key blocks, keys packed transposed per block, online softmax), SIMD via <see cref="PanelKernel"/>,
/// parallel over query blocks. O(n·m·(d + dv)) time, O((n + m)·(d + dv)) memory.
/// </summary>
public static class AttentionForward
{
    internal const int QueryBlock = 64;

    /// <summary>Key block width: 8 vectors (128 floats or 64 doubles with AVX-512, 64 or 32 with 256-bit vectors).</summary>
    internal static int KeyBlock<T>() where T : unmanaged => 8 * PanelKernel.Lanes<T>();

    public static AttentionForwardResult<T> Compute<T>(AttentionProblem<T> problem, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        var output = new T[problem.OutputLength];
        var lse = new T[(long)problem.Heads * n];
        int bc = KeyBlock<T>();
        int keyBlocks = (m + bc - 1) / bc, queryBlocks = (n + QueryBlock - 1) / QueryBlock;
        int threadCount = threads > 0 ? threads : Environment.ProcessorCount;
        bool headsParallel = problem.Heads >= threadCount && threadCount > 1;
        void Head(int h, int degree)
        {
            var head = problem.Head(h);
            var kt = new T[keyBlocks * d * bc];
            for (int b = 0; b < keyBlocks; b++)
                PanelKernel.PackTransposed(head.K, d, b * bc, Math.Min(bc, m - b * bc), bc, kt.AsSpan(b * d * bc, d * bc));
            var outHead = output.AsMemory(h * n * dv, n * dv);
            var lseHead = lse.AsMemory(h * n, n);
            Parallel.For(0, queryBlocks, new ParallelOptions { MaxDegreeOfParallelism = degree }, qb => ForwardBlock(head, kt, qb, outHead.Span, lseHead.Span));
        }
        if (headsParallel)
            Parallel.For(0, problem.Heads, new ParallelOptions { MaxDegreeOfParallelism = threadCount }, h => Head(h, 1)); // one head per thread
        else
            for (int h = 0; h < problem.Heads; h++) Head(h, threadCount);
        return new AttentionForwardResult<T>(output, lse);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void ForwardBlock<T>(AttentionHead<T> head, T[] kt, int qb, Span<T> output, Span<T> lse)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int n = head.N, m = head.M, d = head.D, dv = head.Dv, bc = KeyBlock<T>();
        int i0 = qb * QueryBlock, rows = Math.Min(QueryBlock, n - i0);
        T scale = T.CreateTruncating(head.Scale);
        var q = head.Q; var v = head.V;
        var acc = new T[rows * dv];
        var max = new T[rows]; var z = new T[rows];
        Array.Fill(max, T.NegativeInfinity);
        var sTile = new T[rows * bc];
        var qRows = q.Slice(i0 * d, rows * d);
        int lastKey = head.Causal ? Math.Min(m, i0 + rows) : m; // keys ≥ lastKey are masked for every row here
        int keyBlocks = (lastKey + bc - 1) / bc;
        for (int b = 0; b < keyBlocks; b++)
        {
            int j0 = b * bc, keys = Math.Min(bc, m - j0);
            // S = Q_blk·K_bᵀ for the whole query block (4-row micro-kernel)
            Array.Clear(sTile);
            PanelKernel.AccumulateRows(qRows, d, 1, d, kt.AsSpan(b * d * bc, d * bc), bc, sTile, bc, bc, rows);
            for (int r = 0; r < rows; r++)
            {
                int i = i0 + r;
                int valid = Math.Min(keys, (head.Causal ? Math.Min(i + 1, m) : m) - j0);
                var sRow = sTile.AsSpan(r * bc, bc);
                if (valid <= 0) { sRow.Clear(); continue; }
                var s = sRow.Slice(0, valid);
                T newMax = T.Max(max[r], PanelKernel.ScaleAndMax(s, scale));
                if (newMax > max[r])
                {
                    // FlashAttention-2 Alg. 1 line 10: rescale the running sum and output (exp(−∞) = 0 on the first block)
                    T rescale = T.Exp(max[r] - newMax);
                    z[r] *= rescale;
                    var accRow = acc.AsSpan(r * dv, dv);
                    TensorPrimitives.Multiply(accRow, rescale, accRow);
                    max[r] = newMax;
                }
                z[r] += PanelKernel.ExpAndSum(s, newMax);
                sRow.Slice(valid).Clear(); // masked keys: P = 0
            }
            // O_blk += P·V_b (4-row micro-kernel)
            PanelKernel.AccumulateRows(sTile, bc, 1, keys, v.Slice(j0 * dv, keys * dv), dv, acc, dv, dv, rows);
        }
        for (int r = 0; r < rows; r++)
        {
            int i = i0 + r;
            TensorPrimitives.Divide(acc.AsSpan(r * dv, dv), z[r], output.Slice(i * dv, dv));
            lse[i] = max[r] + T.Log(z[r]);
        }
    }
}
