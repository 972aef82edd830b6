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
    public static double[] Compute<T>(AttentionProblem<T> problem) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        ComputeWithLogSumExp(problem).Output;

    /// <summary>The float64 reference output ([heads, n, dv]) and per-row log-sum-exp ([heads, n]; −∞ for rows that see no key).</summary>
    public static (double[] Output, double[] LogSumExp) ComputeWithLogSumExp<T>(AttentionProblem<T> problem) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        var output = new double[problem.OutputLength];
        var lse = new double[(long)problem.Heads * problem.N];
        for (int h = 0; h < problem.Heads; h++)
        {
            var head = problem.Head(h);
            var (q, k, v) = head.ToDouble();
            for (int i = 0; i < problem.N; i++)
                lse[h * problem.N + i] = Row(q, k, v, head.M, problem.D, problem.Dv, problem.Scale, head.Row(i), i,
                    output.AsSpan((h * problem.N + i) * problem.Dv, problem.Dv));
        }
        return (output, lse);
    }

    /// <summary>Reference output of query rows <paramref name="rows"/> of head <paramref name="head"/>, row-major.</summary>
    public static double[] ComputeRows<T>(AttentionProblem<T> problem, int head, ReadOnlySpan<int> rows)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var hd = problem.Head(head);
        var (q, k, v) = hd.ToDouble();
        var output = new double[rows.Length * problem.Dv];
        for (int r = 0; r < rows.Length; r++)
            Row(q, k, v, hd.M, problem.D, problem.Dv, problem.Scale, hd.Row(rows[r]), rows[r], output.AsSpan(r * problem.Dv, problem.Dv));
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
            Row(q, k, v, head.M, head.D, head.Dv, head.Scale, head.Row(i), i, row);
            for (int c = 0; c < head.Dv; c++) output[i * head.Dv + c] = T.CreateTruncating(row[c]);
            if ((i & 63) == 63) { context.ThrowIfCancelled(); context.Report((double)i / head.N); }
        }
        return new HeadExecution([], plan.Parameters);
    }

    /// <summary>One output row without a mask beyond PyTorch's top-left causal one (see the masked overload).</summary>
    internal static double Row(double[] q, double[] k, double[] v, int m, int d, int dv, double scale, bool causal, int i, Span<double> output) =>
        Row(q, k, v, m, d, dv, scale, new RowMask(0, causal ? Math.Min(i + 1, m) : m, default, 0, default, 0), i, output);

    /// <summary>One output row: softmax(s·qᵢKᵀ + bias)·V over the keys <paramref name="mask"/> lets row i see, with the max
    /// subtracted, in float64 with compensated sums. Returns the row's log-sum-exp (−∞, with a zero row, when it sees no key).</summary>
    internal static double Row(double[] q, double[] k, double[] v, int m, int d, int dv, double scale, in RowMask mask, int i, Span<double> output)
    {
        var p = new double[m];
        double logSumExp = ProbabilityRow(q.AsSpan(i * d, d), k, d, scale, p, mask);
        var acc = new CompensatedSum[dv];
        for (int j = mask.Lo; j < mask.Hi; j++)
        {
            if (p[j] == 0) continue; // hidden keys (and exact underflow) contribute nothing; their V rows are never read
            for (int c = 0; c < dv; c++) acc[c].Add(p[j] * v[j * dv + c]);
        }
        for (int c = 0; c < dv; c++) output[c] = acc[c].Value;
        return logSumExp;
    }

    /// <summary>The softmax row over the first p.Length keys, all visible (see the masked overload).</summary>
    internal static double ProbabilityRow(ReadOnlySpan<double> qi, ReadOnlySpan<double> k, int d, double scale, Span<double> p) =>
        ProbabilityRow(qi, k, d, scale, p, RowMask.All(p.Length));

    /// <summary>
    /// The softmax row every float64 reference shares: pⱼ = exp(xⱼ − max)/Σ with xⱼ = s·qᵢ·kⱼ + biasⱼ for the keys
    /// <paramref name="mask"/> lets row i see and pⱼ = 0 for the others (whose logits, K rows and bias are never read);
    /// logits by compensated dot products, the max subtracted before exp, the normaliser summed with compensation.
    /// Returns log Σ_j exp(xⱼ); a row that sees no key (or only −∞ biases) gets p = 0 and −∞, never NaN.
    /// </summary>
    internal static double ProbabilityRow(ReadOnlySpan<double> qi, ReadOnlySpan<double> k, int d, double scale, Span<double> p, in RowMask mask)
    {
        p.Clear();
        double max = double.NegativeInfinity;
        int lo = mask.Lo, hi = Math.Min(mask.Hi, p.Length);
        bool overflow = false;
        for (int j = lo; j < hi; j++)
        {
            if (!mask.IsVisible(j)) { p[j] = double.NegativeInfinity; continue; }
            double x = CompensatedSum.Dot(qi, k.Slice(j * d, d)), b = mask.BiasAt(j);
            p[j] = scale * x + b;
            // A finite real logit whose float64 value overflowed (|q·k| or |s·q·k + bias| > 1.8e308; Q and K are finite):
            // not a hidden key.
            if (!double.IsFinite(p[j]) && double.IsFinite(b)) overflow = true;
            if (p[j] > max) max = p[j];
        }
        if (overflow) return ScaledProbabilityRow(qi, k, d, scale, p, mask);
        if (double.IsNegativeInfinity(max))
        {
            p.Clear();
            return double.NegativeInfinity;
        }
        var z = new CompensatedSum();
        for (int j = lo; j < hi; j++) { p[j] = Math.Exp(p[j] - max); z.Add(p[j]); }
        double inv = 1.0 / z.Value;
        for (int j = lo; j < hi; j++) p[j] *= inv;
        return max + Math.Log(z.Value);
    }

    /// <summary>
    /// <see cref="ProbabilityRow(ReadOnlySpan{double}, ReadOnlySpan{double}, int, double, Span{double}, in RowMask)"/> when
    /// some visible logit overflows float64. The softmax depends only on the logits' differences, so they are formed as
    /// 2^e·(yⱼ − y_max) with yⱼ = (s·2^(a−e))·(2^(−a)qᵢ)·kⱼ + 2^(−e)·biasⱼ: 2^(−a) keeps the dot products finite, 2^(−e) the
    /// scaled logits (power-of-two scalings, exact but for the underflow of query entries far below the largest, whose
    /// products are then far below the largest logit too); a difference that overflows to −∞ is a weight that underflows
    /// to 0 in any case. Returns the log-sum-exp (+∞ when it exceeds float64).
    /// </summary>
    private static double ScaledProbabilityRow(ReadOnlySpan<double> qi, ReadOnlySpan<double> k, int d, double scale, Span<double> p, in RowMask mask)
    {
        int lo = mask.Lo, hi = Math.Min(mask.Hi, p.Length);
        static int Exponent(double x) => x > 0 ? Math.ILogB(x) : 0;
        double qMax = 0, kMax = 0;
        foreach (double x in qi) qMax = Math.Max(qMax, Math.Abs(x));
        for (int j = lo; j < hi; j++) foreach (double x in k.Slice(j * d, d)) kMax = Math.Max(kMax, Math.Abs(x));
        // |2^(−a)q·k| ≤ 2^(eq + ek + ed + 3 − a) ≤ 2^1000; |s·2^(a−e)| < 2^(−23), so |yⱼ| ≤ 2^977 + 2^1021 is finite.
        int a = Math.Max(0, Exponent(qMax) + Exponent(kMax) + Exponent(d) + 3 - 1000);
        int e = Math.Max(2, Exponent(Math.Abs(scale)) + a + 24);
        Span<double> qs = d <= 256 ? stackalloc double[d] : new double[d];
        for (int c = 0; c < d; c++) qs[c] = Math.ScaleB(qi[c], -a);
        double sc = Math.ScaleB(scale, a - e), max = double.NegativeInfinity;
        for (int j = lo; j < hi; j++)
        {
            if (!mask.IsVisible(j)) { p[j] = double.NegativeInfinity; continue; }
            p[j] = sc * CompensatedSum.Dot(qs, k.Slice(j * d, d)) + Math.ScaleB(mask.BiasAt(j), -e);
            if (p[j] > max) max = p[j];
        }
        var z = new CompensatedSum();
        for (int j = lo; j < hi; j++) { p[j] = Math.Exp(Math.ScaleB(p[j] - max, e)); z.Add(p[j]); }
        double inv = 1.0 / z.Value;
        for (int j = lo; j < hi; j++) p[j] *= inv;
        return Math.ScaleB(max, e) + Math.Log(z.Value);
    }
}
