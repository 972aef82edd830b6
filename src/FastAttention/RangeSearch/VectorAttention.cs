using System.Numerics;

namespace FastAttention.RangeSearch;

/// <summary>
/// VectorAttention (Gupta et al. Algorithm 2, Lemmas A.1–A.3): d = 1 attention in Õ(m·log m + n·polylog(B/ε)).
/// Keys are sorted once; for a query with a = s·qᵢ the relevant keys (Definition 3.2) are a suffix of the sorted keys
/// when a &gt; 0 and a prefix when a &lt; 0 (the sign split of the paper), found by binary search; a = 0 attends uniformly.
/// <para>Numerics: instead of the paper's prefix sums of raw monomials kℓ (which cancel catastrophically for large
/// entries), the sorted keys carry a segment tree whose blocks store centred, scaled moments Σ uℓ·v,
/// u = (k − κ)/w ∈ [−1, 1]. The relevant index range decomposes into O(log m) blocks; a block is answered from its
/// moments when |a|·w ≤ H (the polynomial's interval in the logit is then [−H, H], so its float64 floor 2⁻⁵³e^{2H} is
/// negligible), otherwise it is split; leaves are summed directly with exp. Per query O((T/H + log m)·g) work.</para>
/// </summary>
public sealed class VectorAttention : RangeSearchFamily
{
    /// <summary>Half-width H of the logit interval one block expansion covers.</summary>
    public const double HalfWidth = 2.0;
    private const int Leaf = 16, Chunk = 256;

    /// <summary><c>"vector"</c>: Gupta et al. Algorithm 2 for d = 1, certified within ε.</summary>
    public override string Name => "vector";

    /// <summary>Refuses (<see cref="RefusalReason.HeadDimension"/>) unless d = 1.</summary>
    protected override void CheckHead<T>(AttentionHead<T> head)
    {
        if (head.D != 1)
            ThrowHelper.Refused(Name, RefusalReason.HeadDimension, $"VectorAttention (Algorithm 2) needs head dimension d = 1 (got d = {head.D}); use 'range' for d ≤ {MaxRangeDimension} or 'lowrank' for low-rank Q, K.", "range", "lowrank", "exact");
    }

    private protected override bool SamplesBySubproblem => false;

    /// <inheritdoc/>
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        var plan = base.PlanHead(head, context);
        if (!context.MeasureCost) return plan;
        // Build the sorted-key tree now (execution reuses it) and count the work of a sample of queries.
        var prepared = Prepare(head, context.Epsilon, context.Threads);
        if (prepared is null) return plan;
        var rows = SampleRows(prepared.Order);
        var stats = Query(prepared, rows, new double[rows.Length * head.Dv], compact: true, 1, context.Settings.Cancellation);
        return Planned(head, context, plan.Parameters, plan.Budget, WorkCost(stats, head.N, 1, head.Dv, prepared.Exp.Degree + 1), prepared);
    }

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var p = plan.State as Prepared ?? Prepare(head, context.Epsilon, context.Threads);
        if (p is null)
        {
            output.Clear();
            return new HeadExecution([], new TrivialParameters("V = 0: output 0 exactly"));
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = new double[p.N * p.Dv];
        var stats = Query(p, p.Order, result, compact: false, context.Threads, context.Cancellation);
        double querySeconds = clock.Elapsed.TotalSeconds;
        for (int i = 0; i < result.Length; i++) Store(output, i, result[i]);
        var exp = p.Exp; var budget = p.Budget;
        double rho = 1.1 * (exp.NodeRoundingUnits(p.M, Chunk, p.Tree.Depth) * RangeErrorBudget.U * exp.ConditionNumber + (stats.MaxTerms + 2) * RangeErrorBudget.U);
        var terms = budget.Certify(Name, budget.Terms(exp.RelativeError, rho));
        return new HeadExecution(terms, new RangeFamilyParameters
        {
            Degree = exp.Degree, HalfWidthH = HalfWidth, ThresholdT = budget.Relevant.Width,
            PolynomialRelativeError = exp.RelativeError, MonomialCondition = exp.ConditionNumber,
            ExpansionsPerQuery = stats.PerQuery(stats.Expansions), NodesVisitedPerQuery = stats.PerQuery(stats.NodesVisited),
            DirectKeysPerQuery = stats.PerQuery(stats.DirectKeys), TreeNodes = p.Tree.NodeCount,
            DiscardBound = budget.Relevant.OutputError(p.VMax), RoundingRho = rho,
            BuildSeconds = p.BuildSeconds, QuerySeconds = querySeconds,
        });
    }

    /// <summary>What Algorithm 2 builds before the queries (budget, expansion, sorted-key tree, query order); shared
    /// by a plan and its executions. Immutable.</summary>
    private sealed class Prepared(double[] q, int n, int dv, int m, double scale, double vMax, RangeErrorBudget budget, CentredExpansion exp,
        SortedKeyTree tree, int[] order, double width, double buildSeconds)
    {
        public readonly double[] Q = q;
        public readonly int N = n, Dv = dv, M = m;
        public readonly double Scale = scale, VMax = vMax, Width = width, BuildSeconds = buildSeconds;
        public readonly RangeErrorBudget Budget = budget;
        public readonly CentredExpansion Exp = exp;
        public readonly SortedKeyTree Tree = tree;
        public readonly int[] Order = order;
    }

    private Prepared? Prepare<T>(AttentionHead<T> head, double epsilon, int threads) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var (q, k, v) = head.ToDouble();
        int n = head.N, m = head.M, dv = head.Dv;
        double s = head.Scale, vMax = RangeErrorBudget.MaxAbs(v);
        if (vMax == 0) return null;
        var budget = new RangeErrorBudget(Name, epsilon, vMax, m, 1, RangeErrorBudget.LogitBound(q, n, k, m, 1, s), typeof(T) == typeof(float));
        var exp = new CentredExpansion(1, HalfWidth, budget.PolynomialError);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tree = new SortedKeyTree(k, v, m, dv, exp, Leaf, Chunk, threads);
        double buildSeconds = clock.Elapsed.TotalSeconds;
        var order = QueryOrder.Sorted(q); // neighbouring queries share tree paths
        double width = budget.Relevant.Width + 8 * RangeErrorBudget.U * budget.LogitMagnitude;
        return new Prepared(q, n, dv, m, s, vMax, budget, exp, tree, order, width, buildSeconds);
    }

    private static QueryStats Query(Prepared p, int[] rows, double[] result, bool compact, int threads, CancellationToken cancel) =>
        ForQueries(rows.Length, threads, () => new QueryStats(), (from, to, st) =>
        {
            cancel.ThrowIfCancellationRequested();
            var scratch = p.Tree.CreateScratch();
            for (int r = from; r < to; r++)
            {
                int i = rows[r];
                p.Tree.Query(p.Q[i], p.Scale, p.Width, scratch, result.AsSpan((compact ? r : i) * p.Dv, p.Dv), st);
            }
        });

    /// <summary>
    /// The sorted keys with a segment tree of centred moments (the numerically safe form of Lemma A.2's prefix sums).
    /// Node ν covers sorted positions [lo, hi), has centre κ = (k_lo + k_{hi−1})/2, half-width w and moments
    /// μ_{c,ℓ} = Σ_j uⱼℓ·v_{j,c} (c = 0 is the all-ones column). Immutable after construction.
    /// </summary>
    internal sealed class SortedKeyTree
    {
        private readonly double[] _keys, _values; // sorted keys; values in the same order, m×dv
        private readonly int[] _lo, _hi, _left, _right;
        private readonly double[] _centre, _half, _moments;
        private readonly CentredExpansion _exp;
        private readonly int _dv, _stride;

        public SortedKeyTree(double[] k, double[] v, int m, int dv, CentredExpansion exp, int leaf, int chunk, int threads)
        {
            _exp = exp; _dv = dv;
            var order = new int[m];
            for (int j = 0; j < m; j++) order[j] = j;
            _keys = (double[])k.Clone();
            Array.Sort(_keys, order);
            _values = new double[m * dv];
            for (int j = 0; j < m; j++) Array.Copy(v, order[j] * dv, _values, j * dv, dv);
            var lo = new List<int>(); var hi = new List<int>(); var left = new List<int>(); var right = new List<int>();
            Build(0, m, leaf, lo, hi, left, right);
            _lo = [.. lo]; _hi = [.. hi]; _left = [.. left]; _right = [.. right];
            int nodes = _lo.Length;
            _centre = new double[nodes]; _half = new double[nodes];
            _stride = (dv + 1) * exp.Terms;
            _moments = new double[nodes * _stride];
            for (int node = 0; node < nodes; node++)
            {
                double a = _keys[_lo[node]], b = _keys[_hi[node] - 1];
                double c = 0.5 * (a + b);
                _centre[node] = c; _half[node] = Math.Max(b - c, c - a);
            }
            // Leaves sum their keys; internal blocks translate their children's moments to their own centre and scale
            // (CentredExpansion.TranslateAdd), one depth at a time from the bottom.
            var depth = new int[nodes];
            for (int node = 0; node < nodes; node++)
                if (_left[node] >= 0) { depth[_left[node]] = depth[node] + 1; depth[_right[node]] = depth[node] + 1; }
            Depth = depth.Max();
            var opts = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) };
            for (int level = Depth; level >= 0; level--)
            {
                int lv = level;
                var ids = Enumerable.Range(0, nodes).Where(x => depth[x] == lv).ToArray();
                Parallel.For(0, ids.Length, opts, () => (new double[exp.Terms], new double[_stride], new double[2 * exp.Terms]), (idx, _, buf) =>
                {
                    int node = ids[idx];
                    if (_left[node] < 0) Accumulate(node, _centre[node], _half[node], chunk, buf.Item1, buf.Item2);
                    else { Translate(node, _left[node], buf.Item3); Translate(node, _right[node], buf.Item3); }
                    return buf;
                }, _ => { });
            }
        }

        /// <summary>Depth of the tree: the most translations any block's moments went through.</summary>
        public int Depth { get; }

        private void Translate(int parent, int child, double[] work)
        {
            int terms = _exp.Terms;
            double wp = _half[parent];
            ReadOnlySpan<double> delta = [wp > 0 ? (_centre[child] - _centre[parent]) / wp : 0];
            ReadOnlySpan<double> sigma = [wp > 0 ? _half[child] / wp : 0];
            var src = _moments.AsSpan(child * _stride, _stride);
            var dst = _moments.AsSpan(parent * _stride, _stride);
            for (int col = 0; col <= _dv; col++)
                _exp.TranslateAdd(src.Slice(col * terms, terms), delta, sigma, dst.Slice(col * terms, terms), work);
        }

        public int NodeCount => _lo.Length;

        private static int Build(int lo, int hi, int leaf, List<int> los, List<int> his, List<int> left, List<int> right)
        {
            int id = los.Count;
            los.Add(lo); his.Add(hi); left.Add(-1); right.Add(-1);
            if (hi - lo > leaf)
            {
                int mid = lo + (hi - lo) / 2;
                int l = Build(lo, mid, leaf, los, his, left, right);
                int r = Build(mid, hi, leaf, los, his, left, right);
                left[id] = l; right[id] = r;
            }
            return id;
        }

        /// <summary>Moments of one node, summed in chunks (rounding (chunk + count/chunk)·u relative to Σ|terms|).</summary>
        private void Accumulate(int node, double c, double w, int chunk, double[] pw, double[] part)
        {
            int terms = _exp.Terms, dv = _dv;
            var mom = _moments.AsSpan(node * _stride, _stride);
            double inv = w > 0 ? 1 / w : 0;
            Span<double> x = stackalloc double[1];
            for (int start = _lo[node]; start < _hi[node]; start += chunk)
            {
                Array.Clear(part);
                int end = Math.Min(_hi[node], start + chunk);
                for (int j = start; j < end; j++)
                {
                    x[0] = (_keys[j] - c) * inv;
                    _exp.Powers(x, pw);
                    for (int t = 0; t < terms; t++) part[t] += pw[t];
                    for (int col = 0; col < dv; col++)
                    {
                        double vj = _values[j * dv + col];
                        int off = (col + 1) * terms;
                        for (int t = 0; t < terms; t++) part[off + t] = Math.FusedMultiplyAdd(pw[t], vj, part[off + t]);
                    }
                }
                for (int t = 0; t < _stride; t++) mom[t] += part[t];
            }
        }

        public Scratch CreateScratch() => new(_exp.Terms, _dv, 2 * 64 + 4);

        internal sealed class Scratch(int terms, int dv, int stack)
        {
            public readonly double[] Weights = new double[terms], Acc = new double[dv + 1];
            public readonly int[] Stack = new int[stack];
        }

        /// <summary>Attention for one query qᵢ (logit slope a = s·qᵢ): sign split, binary search, range decomposition.
        /// Logit differences to the maximum are computed from error-free products (see <see cref="RangeErrorBudget"/>).</summary>
        public void Query(double qi, double scale, double width, Scratch sc, Span<double> output, QueryStats st)
        {
            int m = _keys.Length, dv = _dv;
            double a = scale * qi;
            int lo, hi, arg;
            if (a > 0)
            {
                arg = m - 1;
                lo = LowerBound(a, a * _keys[arg] - width); hi = m;      // first position with a·k ≥ thr
            }
            else if (a < 0)
            {
                arg = 0;
                lo = 0; hi = LowerBoundNegative(a, a * _keys[arg] - width); // first position with a·k < thr
            }
            else { arg = 0; lo = 0; hi = m; }
            // The maximum logit as a double-double: y* = qᵢ·k* exactly (TwoProduct).
            double yHi = qi * _keys[arg], yLo = Math.FusedMultiplyAdd(qi, _keys[arg], -yHi);
            var acc = sc.Acc;
            Array.Clear(acc);
            int terms = 0, sp = 0;
            sc.Stack[sp++] = 0;
            var wt = sc.Weights;
            while (sp > 0)
            {
                int node = sc.Stack[--sp];
                int nlo = _lo[node], nhi = _hi[node];
                if (nhi <= lo || nlo >= hi) continue;
                st.NodesVisited++;
                bool contained = lo <= nlo && nhi <= hi;
                double h = Math.Abs(a) * _half[node];
                if (contained && h <= _exp.H)
                {
                    // Σ_j e^{a·kⱼ − max}·v ≈ e^{aκ − max}·Σ_ℓ α_ℓ zℓ·μ_ℓ with z = a·w/H.
                    Span<double> z = [a * _half[node] / _exp.H];
                    _exp.Weights(z, wt);
                    double f = Math.Exp(scale * Diff(qi, _centre[node], yHi, yLo));
                    var mom = _moments.AsSpan(node * _stride, _stride);
                    for (int col = 0; col <= dv; col++)
                        acc[col] += f * System.Numerics.Tensors.TensorPrimitives.Dot<double>(wt, mom.Slice(col * wt.Length, wt.Length));
                    st.Expansions++; terms++;
                }
                else if (_left[node] < 0)
                {
                    int from = Math.Max(lo, nlo), to = Math.Min(hi, nhi);
                    for (int j = from; j < to; j++)
                    {
                        double wgt = Math.Exp(scale * Diff(qi, _keys[j], yHi, yLo));
                        acc[0] += wgt;
                        for (int col = 0; col < dv; col++) acc[col + 1] += wgt * _values[j * dv + col];
                    }
                    st.DirectKeys += to - from; terms += to - from;
                }
                else
                {
                    sc.Stack[sp++] = _right[node];
                    sc.Stack[sp++] = _left[node];
                }
            }
            double inv = 1 / acc[0];
            for (int col = 0; col < dv; col++) output[col] = acc[col + 1] * inv;
            st.Queries++;
            st.MaxTerms = Math.Max(st.MaxTerms, terms);
        }

        /// <summary>q·k − (yHi + yLo) from the exact product and a compensated sum (RangeErrorBudget.DotMinus for d = 1).</summary>
        private static double Diff(double q, double k, double yHi, double yLo)
        {
            double p = q * k, e = Math.FusedMultiplyAdd(q, k, -p);
            double t = p - yHi;
            double bp = t + yHi; // TwoSum(p, −yHi)
            double err = (p - bp) + (-yHi - (t - bp));
            return t + (err + e - yLo);
        }

        private int LowerBound(double a, double thr)
        {
            int l = 0, r = _keys.Length;
            while (l < r) { int mid = (l + r) >>> 1; if (a * _keys[mid] >= thr) r = mid; else l = mid + 1; }
            return l;
        }

        private int LowerBoundNegative(double a, double thr)
        {
            int l = 0, r = _keys.Length;
            while (l < r) { int mid = (l + r) >>> 1; if (a * _keys[mid] < thr) r = mid; else l = mid + 1; }
            return l;
        }
    }
}
