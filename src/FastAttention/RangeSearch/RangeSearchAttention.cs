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

    /// <summary><c>"range"</c>: Gupta et al. Algorithm 1 for d ≤ 4, certified within ε.</summary>
    public override string Name => "range";

    /// <summary>Refuses (<see cref="RefusalReason.HeadDimension"/>) when d exceeds <see cref="RangeSearchFamily.MaxRangeDimension"/>.</summary>
    protected override void CheckHead<T>(AttentionHead<T> head)
    {
        if (head.D > MaxRangeDimension)
            ThrowHelper.Refused(Name, RefusalReason.HeadDimension, $"head dimension d = {head.D} exceeds the range-search limit d ≤ {MaxRangeDimension} (C(g + d, d) moments per node outgrow the keys, and the crossing number n^(1−1/d) approaches n); use 'lowrank' if Q or K has low rank, else 'exact'.", "lowrank", "exact");
    }

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var (q, k, v) = head.ToDouble();
        var (result, terms, parameters) = Run(Name, q, k, v, head.N, head.M, head.D, head.Dv, head.Scale, context.Epsilon,
            typeof(T) == typeof(float), context.Threads);
        for (int i = 0; i < result.Length; i++) Store(output, i, result[i]);
        return new HeadExecution(terms, parameters);
    }

    /// <summary>Algorithm 1 on float64 arrays (also used by the low-rank algorithm on the reduced Q′, K′).</summary>
    internal static (double[] Result, IReadOnlyList<ErrorTerm> Terms, AlgorithmParameters Parameters) Run(
        string name, double[] q, double[] k, double[] v, int n, int m, int d, int dv, double scale, double epsilon, bool float32Output, int threads)
    {
        double vMax = RangeErrorBudget.MaxAbs(v);
        var result = new double[n * dv];
        if (vMax == 0) return (result, [], new TrivialParameters("V = 0: output 0 exactly"));
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
        var terms = budget.Certify(name, budget.Terms(exp.RelativeError, rho));
        return (result, terms, new RangeFamilyParameters
        {
            Degree = exp.Degree, Monomials = exp.Terms, HalfWidthH = HalfWidth, ThresholdT = budget.Relevant.Width,
            PolynomialRelativeError = exp.RelativeError, MonomialCondition = exp.ConditionNumber,
            NodesVisitedPerQuery = stats.PerQuery(stats.NodesVisited), ExpansionsPerQuery = stats.PerQuery(stats.Expansions),
            DirectKeysPerQuery = stats.PerQuery(stats.DirectKeys), PrunedPerQuery = stats.PerQuery(stats.Pruned),
            MaxSearchNodesPerQuery = stats.PerQuery(stats.MaxSearchNodes),
            TreeNodes = tree.NodeCount, MomentNodes = tree.MomentNodes, OrientedNodes = tree.ThinNodes, TreeBytes = tree.Bytes,
            DiscardBound = budget.Relevant.OutputError(vMax), RoundingRho = rho,
            BuildSeconds = buildSeconds, QuerySeconds = querySeconds,
        });
    }
}
