using System.Numerics;
using FastAttention.Numerics;

namespace FastAttention.Gradient;

/// <summary>
/// The float64 reference backward pass: the textbook softmax Jacobian applied one query row at a time
/// (O(m) memory per row, compensated dot products), for testing <see cref="AttentionBackward"/>.
/// dS_ij = P_ij(⟨dOᵢ, V_j⟩ − ⟨dOᵢ, Oᵢ⟩), dQ = s·dS·K, dK = s·dSᵀ·Q, dV = Pᵀ·dO.
/// </summary>
public static class BackwardReference
{
    /// <summary>dQ ([heads, n, d]), dK ([kvHeads, m, d]) and dV ([kvHeads, m, dv]) of ⟨dO, Att(Q, K, V)⟩ in float64
    /// (compensated), row-major like Q, K and V; grouped-query K/V heads sum their query heads' contributions; keys past
    /// a key length, and hidden pairs, get nothing.</summary>
    /// <param name="problem">The forward problem (scale and mask included).</param>
    /// <param name="dO">The upstream gradient, [heads, n, dv] row-major.</param>
    /// <exception cref="ArgumentException"><paramref name="dO"/> does not have heads·n·dv elements.</exception>
    public static (double[] DQ, double[] DK, double[] DV) Compute<T>(AttentionProblem<T> problem, ReadOnlySpan<T> dO)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        if (dO.Length != problem.OutputLength)
            throw new ArgumentException($"dO has {dO.Length} elements but the output needs {problem.OutputLength}.", nameof(dO));
        int n = problem.N, m = problem.M, d = problem.D, dv = problem.Dv;
        double s = problem.Scale;
        var dq = new double[problem.Heads * n * d];
        var dk = new double[problem.KvHeads * m * d];
        var dvOut = new double[problem.KvHeads * m * dv];
        var o = new double[dv];
        var g = new double[dv];
        for (int h = 0; h < problem.Heads; h++)
        {
            var head = problem.Head(h);
            int kv = head.KvIndex;
            var (q, k, v) = head.ToDouble();
            var p = new double[head.M];
            for (int i = 0; i < n; i++)
            {
                var mask = head.Row(i);
                var qi = q.AsSpan(i * d, d);
                Exact.ReferenceAttention.ProbabilityRow(qi, k, d, s, p, mask);
                for (int c = 0; c < dv; c++)
                {
                    var acc = new CompensatedSum();
                    for (int j = mask.Lo; j < mask.Hi; j++) if (p[j] != 0) acc.Add(p[j] * v[j * dv + c]);
                    o[c] = acc.Value;
                    g[c] = double.CreateTruncating(dO[(h * n + i) * dv + c]);
                }
                double di = CompensatedSum.Dot(g, o);
                for (int j = mask.Lo; j < mask.Hi; j++)
                {
                    if (p[j] == 0) continue;
                    double dsij = p[j] * (CompensatedSum.Dot(g, v.AsSpan(j * dv, dv)) - di);
                    for (int c = 0; c < d; c++)
                    {
                        dq[(h * n + i) * d + c] += s * dsij * k[j * d + c];
                        dk[(kv * m + j) * d + c] += s * dsij * qi[c];
                    }
                    for (int c = 0; c < dv; c++) dvOut[(kv * m + j) * dv + c] += p[j] * g[c];
                }
            }
        }
        return (dq, dk, dvOut);
    }

    /// <summary>Rows <paramref name="rows"/> of dQ for head 0 (rows.Length×d), O(|rows|·m·(d + dv)): a cheap check of large runs.</summary>
    public static double[] DQRows<T>(AttentionProblem<T> problem, ReadOnlySpan<T> dO, ReadOnlySpan<int> rows)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        int d = problem.D, dv = problem.Dv;
        double s = problem.Scale;
        var head = problem.Head(0);
        var (q, k, v) = head.ToDouble();
        var result = new double[rows.Length * d];
        var p = new double[head.M]; var o = new double[dv]; var g = new double[dv];
        for (int r = 0; r < rows.Length; r++)
        {
            int i = rows[r];
            if ((uint)i >= (uint)problem.N) throw new ArgumentOutOfRangeException(nameof(rows), $"row {i} is outside [0, {problem.N}).");
            var mask = head.Row(i);
            var qi = q.AsSpan(i * d, d);
            Exact.ReferenceAttention.ProbabilityRow(qi, k, d, s, p, mask);
            for (int c = 0; c < dv; c++)
            {
                var acc = new CompensatedSum();
                for (int j = mask.Lo; j < mask.Hi; j++) if (p[j] != 0) acc.Add(p[j] * v[j * dv + c]);
                o[c] = acc.Value;
                g[c] = double.CreateTruncating(dO[i * dv + c]);
            }
            double di = CompensatedSum.Dot(g, o);
            var dq = new CompensatedSum[d];
            for (int j = mask.Lo; j < mask.Hi; j++)
            {
                if (p[j] == 0) continue;
                double dsij = p[j] * (CompensatedSum.Dot(g, v.AsSpan(j * dv, dv)) - di);
                for (int c = 0; c < d; c++) dq[c].Add(s * dsij * k[j * d + c]);
            }
            for (int c = 0; c < d; c++) result[r * d + c] = dq[c].Value;
        }
        return result;
    }

    /// <summary>ℓ = ⟨dO, Attention(Q, K, V)⟩ by the float64 reference: the scalar whose gradient the backward pass computes.</summary>
    public static double Objective<T>(AttentionProblem<T> problem, ReadOnlySpan<T> dO) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var o = Exact.ReferenceAttention.Compute(problem);
        var sum = new CompensatedSum();
        for (int t = 0; t < o.Length; t++) sum.Add(o[t] * double.CreateTruncating(dO[t]));
        return sum.Value;
    }
}
