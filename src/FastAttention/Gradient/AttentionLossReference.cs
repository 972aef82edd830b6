using FastAttention.Numerics;

namespace FastAttention.Gradient;

/// <summary>
/// The float64 reference for Gupta et al. Def. B.1: the loss L(X) and its gradient dL/dX computed directly,
/// O(n·m·d) time, streaming one query row at a time (O(m + d²) memory per worker; never an n×m matrix),
/// compensated sums throughout. Row chunks run in parallel and their partial gradients are added in a fixed
/// order, so the result does not depend on the thread count.
/// </summary>
/// <remarks>
/// Gradient (Alman–Song 2024b App. D.4–D.6, as quoted in Gupta et al. App. B.2): with F = D⁻¹A (row-stochastic),
/// h = A₃Y, c = F·h − E, dL/dX = s·A₁ᵀ·P·A₂ where P = F∘(c·hᵀ) − diag(δ)·F and δᵢ = ⟨cᵢ, (F·h)ᵢ⟩.
/// </remarks>
public static class AttentionLossReference
{
    private const int Chunk = 32;

    /// <summary>L(X) = ½‖D⁻¹·A·V − E‖²_F (Gupta et al. Def. B.1).</summary>
    public static double Loss(AttentionLossProblem problem, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(problem);
        var partial = RunChunks(problem, threads, gradient: false);
        var total = new CompensatedSum();
        foreach (var p in partial) total.Add(p.Loss);
        return total.Value;
    }

    /// <summary>dL/dX (d×d, row-major) computed directly.</summary>
    public static double[] Gradient(AttentionLossProblem problem, int threads = 0)
    {
        ArgumentNullException.ThrowIfNull(problem);
        int d = problem.D;
        var partial = RunChunks(problem, threads, gradient: true);
        var sum = new CompensatedSum[d * d];
        foreach (var p in partial)
            for (int t = 0; t < d * d; t++) sum[t].Add(p.Gradient![t]);
        var g = new double[d * d];
        for (int t = 0; t < d * d; t++) g[t] = sum[t].Value;
        return g;
    }

    private sealed record ChunkResult(double Loss, double[]? Gradient);

    private static ChunkResult[] RunChunks(AttentionLossProblem p, int threads, bool gradient)
    {
        if (threads < 0) throw new ArgumentOutOfRangeException(nameof(threads), $"threads must be 0 (all) or positive (got {threads}).");
        var q = p.Queries();
        var h = p.Values();
        int chunks = (p.N + Chunk - 1) / Chunk;
        var results = new ChunkResult[chunks];
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount }, c =>
            results[c] = RunChunk(p, q, h, c * Chunk, Math.Min(p.N, (c + 1) * Chunk), gradient));
        return results;
    }

    private static ChunkResult RunChunk(AttentionLossProblem p, double[] q, double[] h, int from, int to, bool gradient)
    {
        int m = p.M, d = p.D;
        double s = p.Scale;
        var a1 = p.A1.Span; var a2 = p.A2.Span; var e = p.E.Span;
        var w = new double[m];
        var o = new double[d];
        var cRow = new double[d];
        var acc = new CompensatedSum[d];
        var g = gradient ? new CompensatedSum[d * d] : null;
        var loss = new CompensatedSum();
        for (int i = from; i < to; i++)
        {
            var qi = q.AsSpan(i * d, d);
            Exact.ReferenceAttention.ProbabilityRow(qi, a2, d, s, w); // w = F_i, the i-th row of D⁻¹A
            // (F·h)_i and c_i = (F·h)_i − E_i (Gupta et al. Def. B.5)
            Array.Clear(acc);
            for (int j = 0; j < m; j++)
                for (int k = 0; k < d; k++) acc[k].Add(w[j] * h[j * d + k]);
            for (int k = 0; k < d; k++) { o[k] = acc[k].Value; cRow[k] = o[k] - e[i * d + k]; loss.Add(0.5 * cRow[k] * cRow[k]); }
            if (g is null) continue;
            double delta = CompensatedSum.Dot(cRow, o); // δ_i = ⟨c_i, (F·h)_i⟩
            // (P·A₂)_i = Σ_j F_ij (⟨c_i, h_j⟩ − δ_i) A₂_j
            Array.Clear(acc);
            for (int j = 0; j < m; j++)
            {
                double pij = w[j] * (CompensatedSum.Dot(cRow, h.AsSpan(j * d, d)) - delta);
                for (int k = 0; k < d; k++) acc[k].Add(pij * a2[j * d + k]);
            }
            // dL/dX += s · A₁_iᵀ ⊗ (P·A₂)_i
            for (int a = 0; a < d; a++)
            {
                double sa = s * a1[i * d + a];
                for (int b = 0; b < d; b++) g[a * d + b].Add(sa * acc[b].Value);
            }
        }
        double[]? grad = null;
        if (g is not null)
        {
            grad = new double[d * d];
            for (int t = 0; t < d * d; t++) grad[t] = g[t].Value;
        }
        return new ChunkResult(loss.Value, grad);
    }
}
