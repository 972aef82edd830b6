using System.Numerics;

namespace FastAttention.RangeSearch;

/// <summary>
/// ApproxAttention (Gupta et al. Algorithm 1, Lemmas 3.4–3.6, A.4) for constant head dimension d ≤
/// <see cref="RangeSearchFamily.MaxRangeDimension"/>: per query, the exact maximum logit by branch-and-bound maximum
/// inner-product search (instead of Lemma A.4's binary search over s·log(1 + ε)), the relevant halfspace
/// {k : s·q·k ≥ M − T} (Definition 3.2), and Σ_relevant P(·)·(1, V) from the moments of a
/// <see cref="HalfspaceRangeTree"/>. The error budget is that of <see cref="RangeErrorBudget"/>.
/// </summary>
public sealed class RangeSearchAttention : RangeSearchFamily
{
    /// <summary>Half-width H of the logit interval one node expansion covers (the polynomial lives on [−H, H]).</summary>
    public const double HalfWidth = 2.0;
    /// <summary>Keys per leaf.</summary>
    public const int LeafSize = 16;

    public override string Name => "range";

    protected override void Validate<T>(AttentionProblem<T> problem, AttentionSettings settings)
    {
        if (problem.D > MaxRangeDimension)
            ThrowHelper.Refused(Name, RefusalReason.HeadDimension, $"head dimension d = {problem.D} exceeds the range-search limit d ≤ {MaxRangeDimension} (C(g + d, d) moments per node outgrow the keys, and the crossing number n^(1−1/d) approaches n); use 'lowrank' if Q or K has low rank, else 'exact'.");
        base.Validate(problem, settings);
    }

    protected override HeadReport ComputeHead<T>(AttentionHead<T> head, Span<T> output, AttentionSettings settings)
    {
        var (q, k, v) = head.ToDouble();
        var (result, bound, parameters) = Run(Name, q, k, v, head.N, head.M, head.D, head.Dv, head.Scale, settings.Epsilon,
            typeof(T) == typeof(float), settings.EffectiveThreads);
        for (int i = 0; i < result.Length; i++) Store(output, i, result[i]);
        return new HeadReport(bound, parameters);
    }

    /// <summary>Algorithm 1 on float64 arrays (also used by the low-rank algorithm on the reduced Q′, K′).</summary>
    internal static (double[] Result, double Bound, List<KeyValuePair<string, object>> Parameters) Run(
        string name, double[] q, double[] k, double[] v, int n, int m, int d, int dv, double scale, double epsilon, bool float32Output, int threads)
    {
        double vMax = RangeErrorBudget.MaxAbs(v);
        var result = new double[n * dv];
        if (vMax == 0) return (result, 0, [new("note", "V = 0: output 0 exactly")]);
        double logitBound = RangeErrorBudget.LogitBound(q, n, k, m, d, scale);
        var budget = new RangeErrorBudget(name, epsilon, vMax, m, d, logitBound, float32Output);
        var exp = new CentredExpansion(d, HalfWidth, budget.PolynomialError);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tree = new HalfspaceRangeTree(k, v, m, d, dv, exp, LeafSize, threads);
        double buildSeconds = clock.Elapsed.TotalSeconds;
        var order = d == 1 ? QueryOrder.Sorted(q) : QueryOrder.ByDirection(q, n, d); // neighbouring queries share tree paths
        double slack = 8 * (d + 2) * RangeErrorBudget.U * logitBound, width = budget.Relevant.Width + slack;
        var stats = ForQueries(n, threads, () => new QueryStats(), (from, to, st) =>
        {
            var sc = tree.CreateScratch();
            var a = new double[d];
            for (int r = from; r < to; r++)
            {
                int i = order[r];
                var qi = q.AsSpan(i * d, d);
                for (int c = 0; c < d; c++) a[c] = scale * qi[c];
                int arg = tree.ArgMax(a, slack, sc, st);
                var (yHi, yLo) = RangeErrorBudget.Dot2(qi, tree.Key(arg));
                double max = scale * yHi;
                int terms = tree.Sum(qi, scale, yHi, yLo, max - width, budget.FrameLogitError, sc, st);
                double inv = 1 / sc.Acc[0];
                for (int col = 0; col < dv; col++) result[i * dv + col] = sc.Acc[col + 1] * inv;
                st.Queries++;
                st.MaxTerms = Math.Max(st.MaxTerms, terms);
            }
        });
        double querySeconds = clock.Elapsed.TotalSeconds - buildSeconds;
        double rho = 1.1 * (exp.NodeRoundingUnits(m, 256, tree.Depth) * RangeErrorBudget.U * exp.ConditionNumber + (stats.MaxTerms + 2) * RangeErrorBudget.U);
        double bound = budget.Certify(name, budget.Bound(exp.RelativeError, rho));
        return (result, bound,
        [
            new("degree", exp.Degree), new("monomials", exp.Terms), new("halfWidthH", HalfWidth), new("thresholdT", budget.Relevant.Width),
            new("polynomialRelativeError", exp.RelativeError), new("monomialCondition", exp.ConditionNumber),
            new("nodesVisitedPerQuery", stats.PerQuery(stats.NodesVisited)), new("expansionsPerQuery", stats.PerQuery(stats.Expansions)),
            new("directKeysPerQuery", stats.PerQuery(stats.DirectKeys)), new("prunedPerQuery", stats.PerQuery(stats.Pruned)),
            new("maxSearchNodesPerQuery", stats.PerQuery(stats.MaxSearchNodes)),
            new("treeNodes", tree.NodeCount), new("momentNodes", tree.MomentNodes), new("orientedNodes", tree.ThinNodes), new("treeBytes", tree.Bytes),
            new("discardBound", budget.Relevant.OutputError(vMax)), new("roundingRho", rho),
            new("buildSeconds", buildSeconds), new("querySeconds", querySeconds),
        ]);
    }
}
