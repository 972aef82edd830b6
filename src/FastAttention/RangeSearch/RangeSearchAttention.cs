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

    private protected override bool SamplesBySubproblem => false;

    /// <inheritdoc/>
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        var plan = base.PlanHead(head, context);
        if (!context.MeasureCost) return plan;
        // Build the structure now (execution reuses it) and count the work of a sample of queries.
        var (q, k, v) = head.ToDouble();
        var prepared = Prepare(Name, q, k, v, head.N, head.M, head.D, head.Dv, head.Scale, context.Epsilon, typeof(T) == typeof(float), context.Threads);
        if (prepared is null) return plan;
        var cost = SampleCost(prepared, context);
        return Planned(head, context, plan.Parameters, plan.Budget, cost, prepared);
    }

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        Prepared? prepared = plan.State as Prepared;
        if (prepared is null)
        {
            var (q, k, v) = head.ToDouble();
            prepared = Prepare(Name, q, k, v, head.N, head.M, head.D, head.Dv, head.Scale, context.Epsilon, typeof(T) == typeof(float), context.Threads);
            if (prepared is null) { output.Clear(); return new HeadExecution([], new TrivialParameters("V = 0: output 0 exactly")); }
        }
        var (result, terms, parameters) = QueryAll(prepared, context.Threads, context.Cancellation);
        for (int i = 0; i < result.Length; i++) Store(output, i, result[i]);
        return new HeadExecution(terms, parameters);
    }

    /// <summary>Everything Algorithm 1 builds before the queries: the budget, the expansion, the tree over the keys
    /// (Definition 3.2's halfspace structure) and the query order. Immutable; shared by a plan and its executions.</summary>
    internal sealed class Prepared(string name, double[] q, int n, int d, int dv, int m, double scale, double vMax, RangeErrorBudget budget,
        CentredExpansion exp, HalfspaceRangeTree tree, int[] order, double slack, double width, double buildSeconds)
    {
        public readonly string Name = name;
        public readonly double[] Q = q;
        public readonly int N = n, D = d, Dv = dv, M = m;
        public readonly double Scale = scale, VMax = vMax, Slack = slack, Width = width, BuildSeconds = buildSeconds;
        public readonly RangeErrorBudget Budget = budget;
        public readonly CentredExpansion Exp = exp;
        public readonly HalfspaceRangeTree Tree = tree;
        public readonly int[] Order = order;
    }

    /// <summary>Builds what the queries need; null when V = 0 (the output is 0 exactly).</summary>
    internal static Prepared? Prepare(string name, double[] q, double[] k, double[] v, int n, int m, int d, int dv, double scale, double epsilon, bool float32Output, int threads)
    {
        double vMax = RangeErrorBudget.MaxAbs(v);
        if (vMax == 0) return null;
        double logitBound = RangeErrorBudget.LogitBound(q, n, k, m, d, scale);
        var budget = new RangeErrorBudget(name, epsilon, vMax, m, d, logitBound, float32Output);
        var exp = new CentredExpansion(d, HalfWidth, budget.PolynomialError);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tree = new HalfspaceRangeTree(k, v, m, d, dv, exp, LeafSize, threads);
        double buildSeconds = clock.Elapsed.TotalSeconds;
        var order = d == 1 ? QueryOrder.Sorted(q) : QueryOrder.ByDirection(q, n, d); // neighbouring queries share tree paths
        double slack = 8 * (d + 2) * RangeErrorBudget.U * logitBound, width = budget.Relevant.Width + slack;
        return new Prepared(name, q, n, d, dv, m, scale, vMax, budget, exp, tree, order, slack, width, buildSeconds);
    }

    /// <summary>Answers the queries order[from..to) into result (row i at i·dv, or at its position in
    /// <paramref name="rows"/> when a sample is answered).</summary>
    private static QueryStats Query(Prepared p, int[] rows, double[] result, bool compact, int threads, CancellationToken cancel)
    {
        int d = p.D, dv = p.Dv;
        return ForQueries(rows.Length, threads, () => new QueryStats(), (from, to, st) =>
        {
            cancel.ThrowIfCancellationRequested();
            var sc = p.Tree.CreateScratch();
            var a = new double[d];
            for (int r = from; r < to; r++)
            {
                int i = rows[r];
                var qi = p.Q.AsSpan(i * d, d);
                for (int c = 0; c < d; c++) a[c] = p.Scale * qi[c];
                int arg = p.Tree.ArgMax(a, p.Slack, sc, st);
                var (yHi, yLo) = RangeErrorBudget.Dot2(qi, p.Tree.Key(arg));
                double max = p.Scale * yHi;
                int terms = p.Tree.Sum(qi, p.Scale, yHi, yLo, max - p.Width, p.Budget.FrameLogitError, sc, st);
                double inv = 1 / sc.Acc[0];
                int at = (compact ? r : i) * dv;
                for (int col = 0; col < dv; col++) result[at + col] = sc.Acc[col + 1] * inv;
                st.Queries++;
                st.MaxTerms = Math.Max(st.MaxTerms, terms);
            }
        });
    }

    /// <summary>The counted work of executing <paramref name="p"/>: a deterministic sample of queries is answered
    /// and its counters (nodes visited, nodes answered from moments, keys summed directly) are scaled to all n queries.</summary>
    internal static CostEstimate SampleCost(Prepared p, PlanningContext context)
    {
        var rows = SampleRows(p.Order);
        var stats = Query(p, rows, new double[rows.Length * p.Dv], compact: true, 1, context.Settings.Cancellation);
        return WorkCost(stats, p.N, p.D, p.Dv, p.Exp.Terms);
    }

    /// <summary>Algorithm 1 on float64 arrays (also used by the low-rank algorithm on the reduced Q′, K′).</summary>
    internal static (double[] Result, IReadOnlyList<ErrorTerm> Terms, AlgorithmParameters Parameters) Run(
        string name, double[] q, double[] k, double[] v, int n, int m, int d, int dv, double scale, double epsilon, bool float32Output, int threads,
        CancellationToken cancel = default)
    {
        var p = Prepare(name, q, k, v, n, m, d, dv, scale, epsilon, float32Output, threads);
        if (p is null) return (new double[n * dv], [], new TrivialParameters("V = 0: output 0 exactly"));
        return QueryAll(p, threads, cancel);
    }

    private static (double[] Result, IReadOnlyList<ErrorTerm> Terms, AlgorithmParameters Parameters) QueryAll(Prepared p, int threads, CancellationToken cancel)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = new double[p.N * p.Dv];
        var stats = Query(p, p.Order, result, compact: false, threads, cancel);
        double querySeconds = clock.Elapsed.TotalSeconds;
        var exp = p.Exp; var tree = p.Tree; var budget = p.Budget;
        double rho = 1.1 * (exp.NodeRoundingUnits(p.M, 256, tree.Depth) * RangeErrorBudget.U * exp.ConditionNumber + (stats.MaxTerms + 2) * RangeErrorBudget.U);
        var terms = budget.Certify(p.Name, budget.Terms(exp.RelativeError, rho));
        return (result, terms, new RangeFamilyParameters
        {
            Degree = exp.Degree, Monomials = exp.Terms, HalfWidthH = HalfWidth, ThresholdT = budget.Relevant.Width,
            PolynomialRelativeError = exp.RelativeError, MonomialCondition = exp.ConditionNumber,
            NodesVisitedPerQuery = stats.PerQuery(stats.NodesVisited), ExpansionsPerQuery = stats.PerQuery(stats.Expansions),
            DirectKeysPerQuery = stats.PerQuery(stats.DirectKeys), PrunedPerQuery = stats.PerQuery(stats.Pruned),
            MaxSearchNodesPerQuery = stats.PerQuery(stats.MaxSearchNodes),
            TreeNodes = tree.NodeCount, MomentNodes = tree.MomentNodes, OrientedNodes = tree.ThinNodes, TreeBytes = tree.Bytes,
            DiscardBound = budget.Relevant.OutputError(p.VMax), RoundingRho = rho,
            BuildSeconds = p.BuildSeconds, QuerySeconds = querySeconds,
        });
    }
}
