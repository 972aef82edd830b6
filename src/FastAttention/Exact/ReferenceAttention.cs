using System.Numerics;
using FastAttention.Numerics;

namespace FastAttention.Exact;

/// <summary>
/// The float64 reference: plain, obviously correct attention (Def. 1.1 of both papers) with the maximum
/// subtracted before exp and compensated (Neumaier, TwoProduct) sums. O(n·m·(d + dv)) time, O(m) memory per
/// query row. Everything else is tested against it.
/// </summary>
public sealed class ReferenceAttention : AttentionAlgorithm
{
    /// <summary><c>"reference"</c>: the compensated float64 reference (slow; the yardstick of the tests).</summary>
    public override string Name => "reference";
    /// <summary>True: exact up to float64 rounding, with compensated sums.</summary>
    public override bool IsExact => true;

    /// <summary>Convenience: the float64 reference output of the whole problem.</summary>
    public static double[] Compute<T>(AttentionProblem<T> problem) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var output = new double[problem.OutputLength];
        for (int h = 0; h < problem.Heads; h++)
        {
            var (q, k, v) = problem.Head(h).ToDouble();
            for (int i = 0; i < problem.N; i++)
                Row(q, k, v, problem.M, problem.D, problem.Dv, problem.Scale, problem.Causal, i,
                    output.AsSpan((h * problem.N + i) * problem.Dv, problem.Dv));
        }
        return output;
    }

    /// <summary>Reference output of query rows <paramref name="rows"/> of head <paramref name="head"/>, row-major.</summary>
    public static double[] ComputeRows<T>(AttentionProblem<T> problem, int head, ReadOnlySpan<int> rows)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var (q, k, v) = problem.Head(head).ToDouble();
        var output = new double[rows.Length * problem.Dv];
        for (int r = 0; r < rows.Length; r++)
            Row(q, k, v, problem.M, problem.D, problem.Dv, problem.Scale, problem.Causal, rows[r], output.AsSpan(r * problem.Dv, problem.Dv));
        return output;
    }

    /// <inheritdoc/>
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context) =>
        Planned(head, context, new ExactParameters("reference", 1), [], FlashAttention.Cost(head) with { Flops = 8 * FlashAttention.Cost(head).Flops });

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var (q, k, v) = head.ToDouble();
        var row = new double[head.Dv];
        for (int i = 0; i < head.N; i++)
        {
            Row(q, k, v, head.M, head.D, head.Dv, head.Scale, head.Causal, i, row);
            for (int c = 0; c < head.Dv; c++) output[i * head.Dv + c] = T.CreateTruncating(row[c]);
            if ((i & 63) == 63) { context.ThrowIfCancelled(); context.Report((double)i / head.N); }
        }
        return new HeadExecution([], plan.Parameters);
    }

    /// <summary>One output row: softmax(s·qᵢKᵀ)·V with the max subtracted, in float64 with compensated sums.
    /// Returns the row's log-sum-exp log Σ_j exp(s·qᵢ·kⱼ).</summary>
    internal static double Row(double[] q, double[] k, double[] v, int m, int d, int dv, double scale, bool causal, int i, Span<double> output)
    {
        int visible = causal ? Math.Min(i + 1, m) : m;
        var p = new double[visible];
        double logSumExp = ProbabilityRow(q.AsSpan(i * d, d), k, d, scale, p);
        var acc = new CompensatedSum[dv];
        for (int j = 0; j < visible; j++)
            for (int c = 0; c < dv; c++) acc[c].Add(p[j] * v[j * dv + c]);
        for (int c = 0; c < dv; c++) output[c] = acc[c].Value;
        return logSumExp;
    }

    /// <summary>
    /// The softmax row every float64 reference shares: pⱼ = exp(s·qᵢ·kⱼ − max)/Σ for the first p.Length keys, logits by
    /// compensated dot products, the max subtracted before exp, the normaliser summed with compensation.
    /// Returns log Σ_j exp(s·qᵢ·kⱼ).
    /// </summary>
    internal static double ProbabilityRow(ReadOnlySpan<double> qi, ReadOnlySpan<double> k, int d, double scale, Span<double> p)
    {
        double max = double.NegativeInfinity;
        for (int j = 0; j < p.Length; j++)
        {
            p[j] = scale * CompensatedSum.Dot(qi, k.Slice(j * d, d));
            if (p[j] > max) max = p[j];
        }
        var z = new CompensatedSum();
        for (int j = 0; j < p.Length; j++) { p[j] = Math.Exp(p[j] - max); z.Add(p[j]); }
        double inv = 1.0 / z.Value;
        for (int j = 0; j < p.Length; j++) p[j] *= inv;
        return max + Math.Log(z.Value);
    }
}
