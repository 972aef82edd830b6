using System.Runtime.CompilerServices;
using System.Numerics;
using FastAttention.Exact;

namespace FastAttention.RangeSearch;

/// <summary>
/// Common checks of the Gupta et al. family (vector, rounding, range, lowrank): approximate, ε given, the per-query
/// statistics every certificate reports, and the planner's work estimate (<see cref="EstimateWork"/>).
/// </summary>
public abstract class RangeSearchFamily : AttentionAlgorithm
{
    /// <summary>The largest head dimension 'range' accepts: the C(g + d, d) moments per node outgrow the keys beyond it.</summary>
    public const int MaxRangeDimension = 4;

    /// <summary>False: every member needs ε; the output is within ε of Att in ‖·‖∞, or the call refuses.</summary>
    public override bool IsExact => false;

    /// <summary>Tests only: the expansion half-width H to use (0: no moments) instead of choosing it by counting
    /// (this also keeps the range-search plan: the exact kernel is never chosen).</summary>
    internal double? ForcedHalfWidth { get; set; }

    /// <summary>Tests only: the working band T′ as a fraction of T (<see cref="RangeEngine.WidthFractions"/>) instead of
    /// choosing it by counting; 1 keeps the a-priori band.</summary>
    internal double? WidthFraction { get; set; }

    /// <summary>Tests only: the maximum search's node budget (<see cref="MomentTree.MaxSearchBudget"/>) instead of a quarter
    /// of each tree; a small one sends every search to Lemma A.4's binary search.</summary>
    internal int? MaxSearchBudget { get; set; }

    /// <summary>Tests only: false keeps the range-search plan even where the exact kernel is predicted faster.</summary>
    internal bool AllowExactPlan { get; set; } = true;

    /// <summary>Tests only: false builds the plain kd-tree (split the widest axis) even for lopsided queries
    /// (<see cref="MomentTree.QueryAxisWeights"/>).</summary>
    internal bool QueryWeightedSplits { get; set; } = true;

    /// <summary>Checks what the algorithm supports (head dimension); refuses otherwise.</summary>
    protected virtual void CheckHead<T>(AttentionHead<T> head) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
    }

    /// <inheritdoc/>
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        CheckHead(head);
        // The error budget refuses now (before any work) when ε is out of float64's or the output type's reach.
        double vMax = Numerics.FloatingPoint.MaxAbs(head.V);
        double logitBound = Math.Abs(head.Scale) * Numerics.FloatingPoint.MaxRowNorm(head.Q, head.N, head.D) * Numerics.FloatingPoint.MaxRowNorm(head.K, head.M, head.D);
        int dim = Math.Min(head.D, MaxRangeDimension);
        // Planned terms: the approximation at its target; float64 rounding is measured during the run and added then.
        IReadOnlyList<ErrorTerm> planned = [];
        if (vMax > 0)
        {
            var budget = new RangeErrorBudget(Name, context.Epsilon, vMax, head.M, dim, logitBound, typeof(T) != typeof(double));
            planned = budget.Terms(budget.PolynomialError, 0);
        }
        var plan = Planned(head, context, new RangeFamilyParameters(), planned, EstimateCost(head, dim));
        return context.MeasureCost && SamplesBySubproblem && vMax > 0 ? Planned(head, context, plan.Parameters, planned, SampleBySubproblem(plan, head, context)) : plan;
    }

    /// <summary>True for algorithms that measure their data-dependent cost by running on a sample of the queries
    /// (against all keys); vector and range instead build their structure once during planning and sample on it.</summary>
    private protected virtual bool SamplesBySubproblem => true;

    /// <summary>Runs the algorithm on <see cref="SampleSize"/> sampled queries against all keys and scales the
    /// measured work counters to the n queries (the structure's build is counted by <see cref="EstimateCost"/>).</summary>
    private CostEstimate SampleBySubproblem<T>(HeadPlan plan, AttentionHead<T> head, PlanningContext context) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int count = Math.Min(SampleSize, head.N), d = head.D;
        var q = new T[count * d];
        var src = head.Q;
        for (int r = 0; r < count; r++) src.Slice((int)((long)r * head.N / count) * d, d).CopyTo(q.AsSpan(r * d, d));
        var sub = new AttentionProblem<T>(q, head.KMemory, head.VMemory, count, head.M, d, head.Dv, 1, head.Scale, head.Causal);
        var output = new T[count * head.Dv];
        var run = ExecuteHead(plan, sub.Head(0), output, new ExecutionContext(context.Settings, context.Epsilon, 1, null));
        if (run.Parameters is not RangeFamilyParameters w) return plan.Cost;
        var stats = new QueryStats
        {
            Queries = count,
            NodesVisited = (long)Math.Round(count * (w.NodesVisitedPerQuery ?? w.BucketsPerQuery ?? 0)),
            Expansions = (long)Math.Round(count * (w.ExpansionsPerQuery ?? 0)),
            DirectKeys = (long)Math.Round(count * (w.DirectKeysPerQuery ?? w.RelevantKeysPerQuery ?? 0)),
            MaxSearchNodes = (long)Math.Round(count * (w.MaxSearchNodesPerQuery ?? 0)),
        };
        int dim = Math.Min(d, w.Rank ?? MaxRangeDimension);
        var work = WorkCost(stats, head.N, dim, head.Dv, w.Monomials ?? (w.Degree ?? 0) + 1);
        var build = EstimateCost(head, dim);
        return work with { ScalarFlops = work.ScalarFlops + BuildFlops(head, dim), Bytes = build.Bytes };
    }

    /// <summary>Flops of building a moment structure over the m keys (m·log₂m node moments of C(12 + d, d) terms).</summary>
    private static double BuildFlops<T>(AttentionHead<T> head, int d) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        head.M * Math.Log2(head.M + 1.0) * LowRankFactorsCount(12, d) * (head.Dv + 1) * 2;

    /// <summary>
    /// A counted-work model of the family before any sampling: building the structure (m·log₂m node moments of
    /// C(g + d, d) terms, g ≈ 12) and per query O(log m) nodes plus the leaf keys of the boundary cells, taken as
    /// m^(1−1/d) (the crossing number of a partition tree; a kd-tree can exceed it on adversarial data).
    /// </summary>
    internal static CostEstimate EstimateCost<T>(AttentionHead<T> head, int d) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double m = head.M, n = head.N, logm = Math.Log2(m + 1);
        double monomials = LowRankFactorsCount(12, d);
        double leafKeys = n * Math.Min(m, 16 * Math.Pow(m, 1 - 1.0 / Math.Max(1, d)));
        double nodes = n * 4 * logm * Math.Max(1, d);
        double flops = m * logm * monomials * (head.Dv + 1) * 2 + nodes * monomials * (head.Dv + 1) * 2 + leafKeys * 2 * (head.D + head.Dv);
        double bytes = 8.0 * ((n + m) * head.D + m * head.Dv + n * head.Dv) + 8.0 * m / 16 * monomials * (head.Dv + 1);
        return new CostEstimate(0, 0, bytes, nodes, leafKeys, ScalarFlops: flops - leafKeys * 2 * (head.D + head.Dv));
    }

    /// <summary>Queries sampled to measure data-dependent work: every ⌈n/64⌉-th of the locality order (deterministic).</summary>
    internal const int SampleSize = 64;

    /// <summary>A deterministic sample of at most <see cref="SampleSize"/> rows spread over <paramref name="order"/>.</summary>
    internal static int[] SampleRows(int[] order)
    {
        int count = Math.Min(SampleSize, order.Length);
        var rows = new int[count];
        for (int r = 0; r < count; r++) rows[r] = order[(int)((long)r * order.Length / count)];
        return rows;
    }

    /// <summary>Counted work of all n queries from a sample's counters: nodes visited (tree work), nodes answered from
    /// moments (monomials·(dv + 1) multiply-adds each), keys summed directly (one exp and d + dv multiply-adds each).</summary>
    internal static CostEstimate WorkCost(QueryStats sample, int n, int d, int dv, int monomials)
    {
        double scale = sample.Queries == 0 ? 0 : (double)n / sample.Queries;
        double nodes = (sample.NodesVisited + sample.MaxSearchNodes) * scale, expansions = sample.Expansions * scale, keys = sample.DirectKeys * scale;
        return new CostEstimate(Flops: 0, ExpEvaluations: 0, Bytes: 0, TreeNodes: nodes, LeafKeys: keys, ScalarFlops: 2 * expansions * monomials * (dv + 1)) { Sampled = true };
    }

    private static double LowRankFactorsCount(int g, int d)
    {
        double c = 1;
        for (int i = 1; i <= d; i++) c = c * (g + i) / i;
        return c;
    }

    /// <summary>
    /// The data-dependent work this algorithm would do on <paramref name="problem"/>, without doing it: the key structure's
    /// geometry is built (no moments) and the traversal is run on <paramref name="sampleQueries"/> queries per head; the
    /// counts (nodes visited, keys summed directly, expansions evaluated) are returned per query and extrapolated to all
    /// queries, with a predicted time and the exact kernel's pair count. Refuses (throws <see cref="AttentionRefusedException"/>)
    /// as planning would: head dimension, rank, ε.
    /// </summary>
    public RangeWorkEstimate EstimateWork<T>(AttentionProblem<T> problem, AttentionSettings settings, int sampleQueries = RangeEngine.DefaultSample)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(settings);
        if (sampleQueries < 1) ThrowHelper.ArgumentOutOfRange(nameof(sampleQueries), $"sampleQueries must be at least 1 (got {sampleQueries}).");
        settings.Validate();
        if (settings.ValidEpsilon is not double epsilon)
        {
            ThrowHelper.Refused(Name, settings.Epsilon is null ? RefusalReason.EpsilonMissing : RefusalReason.EpsilonInvalid, $"'{Name}' needs a positive finite ε to estimate its work (got {settings.Epsilon?.ToString() ?? "none"}).", "exact");
            return null!;
        }
        var heads = new List<RangeWorkEstimate>();
        for (int h = 0; h < problem.Heads; h++)
        {
            var head = problem.Head(h);
            CheckHead(head);
            heads.Add(EstimateHead(head, epsilon, settings.EffectiveThreads, sampleQueries));
        }
        return RangeWorkEstimate.Sum(heads);
    }

    /// <summary>One head's work estimate (see <see cref="EstimateWork"/>).</summary>
    internal virtual RangeWorkEstimate EstimateHead<T>(AttentionHead<T> head, double epsilon, int threads, int sampleQueries)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        PrepareEngine(head, epsilon, threads, MachineRates.Default, sampleQueries)?.Estimate() ?? RangeWorkEstimate.Zero(Name, head.N, head.M);

    /// <summary>vector, range: with a measured cost (the planner), the engine is prepared now — geometry, the sampled
    /// traversal and the plan chosen by counting — and reused by execution; otherwise the model plan stands.</summary>
    private protected HeadPlan PlanWithEngine<T>(AttentionHead<T> head, PlanningContext context, HeadPlan plan) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (!context.MeasureCost) return plan;
        var prepared = PrepareEngine(head, context.Epsilon, context.Threads, context.Settings.EffectiveRates, RangeEngine.DefaultSample);
        return prepared is null ? plan : Planned(head, context, plan.Parameters, plan.Budget, prepared.Cost, prepared);
    }

    /// <summary>vector, range: executes the prepared engine (prepared now when the plan did not).</summary>
    private protected HeadExecution ExecuteWithEngine<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var planned = plan.State as RangeEngine.Prepared;
        var prepared = planned ?? PrepareEngine(head, context.Epsilon, context.Threads, context.Settings.EffectiveRates, RangeEngine.DefaultSample);
        if (prepared is null)
        {
            output.Clear();
            return new HeadExecution([], new TrivialParameters("V = 0: output 0 exactly"));
        }
        try
        {
            var (terms, parameters) = prepared.Execute(output, context.Threads, context.Cancellation);
            return new HeadExecution(terms, parameters);
        }
        finally
        {
            if (planned is null) prepared.Dispose(); // prepared for this run only: its moments go back to the pool
        }
    }

    /// <summary>vector, range: the engine's preparation for one head (null when V = 0).</summary>
    private protected RangeEngine.Prepared? PrepareEngine<T>(AttentionHead<T> head, double epsilon, int threads, MachineRates rates, int sample) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var (q, k, v) = head.ToDouble();
        return RangeEngine.Prepare(Name, q, k, v, head.N, head.M, head.D, head.Dv, head.Scale, epsilon, typeof(T) != typeof(double), head.Causal,
            new RangeEngine.Options(threads, rates, sample, ForcedHalfWidth, AllowExactPlan, head.CausalOffset, QueryWeightedSplits, WidthFraction, MaxSearchBudget));
    }

    /// <summary>Writes a row-major n×dv output from float64 values.</summary>
    internal static void Store<T>(Span<T> output, int index, double value) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        output[index] = T.CreateTruncating(value);

    /// <summary>Queries per work item of <see cref="ForQueries"/> (blocks start at multiples of it, whatever the threads).</summary>
    internal const int QueryBlock = 256;

    /// <summary>Runs <paramref name="body"/>(from, to, stats) over query blocks, in parallel when threads &gt; 1, and merges the statistics.</summary>
    internal static QueryStats ForQueries(int n, int threads, Func<QueryStats> init, Action<int, int, QueryStats> body) =>
        ForQueries(n, threads, () => (init(), 0), (from, to, local) => body(from, to, local.Stats));

    /// <summary>As above with per-thread state beside the statistics (scratch made once per thread, not per block).</summary>
    internal static QueryStats ForQueries<TState>(int n, int threads, Func<(QueryStats Stats, TState State)> init,
        Action<int, int, (QueryStats Stats, TState State)> body)
    {
        const int Block = QueryBlock;
        int blocks = (n + Block - 1) / Block;
        var total = new QueryStats();
        if (threads <= 1 || blocks == 1)
        {
            var s = init();
            body(0, n, s);
            total.Merge(s.Stats);
            return total;
        }
        var gate = new object();
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = threads }, init,
            (b, _, s) => { body(b * Block, Math.Min(n, (b + 1) * Block), s); return s; },
            s => { lock (gate) total.Merge(s.Stats); });
        return total;
    }
}

/// <summary>Query orders that keep consecutive queries on nearby tree paths (cache locality, and the range engine's warm start
/// of each query's maximum from the previous one's; the outputs depend on the order only through which key within the
/// maximum's tolerance is the reference, i.e. in rounding, inside the certificate).</summary>
internal static class QueryOrder
{
    /// <summary>d = 1: the queries' indices into <paramref name="order"/> in ascending order of qᵢ to 32 bits (sign, exponent
    /// and the top 20 bits of the mantissa; ties in query order), by the radix sort of
    /// <see cref="SortByCode(Span{long}, Span{int}, Span{long}, Span{int}, int)"/> — the order is only for cache locality
    /// (consecutive queries expand the same nodes), and at n = 2²⁰ Array.Sort of the values took 6 % of the whole run.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Sorted(ReadOnlySpan<double> q, Span<int> order)
    {
        int n = q.Length;
        if (order.Length != n) throw new ArgumentException("one entry per query", nameof(order));
        using var codes = new KernelBuffer<long>(n);
        var c = codes.Span;
        for (int i = 0; i < n; i++)
        {
            order[i] = i;
            c[i] = (long)(OrderKey(q[i]) >> 32);
        }
        SortInPlace(c, order, 32);
    }

    /// <summary>The order regrouped into blocks of 2^<paramref name="blockLog"/> consecutive positions (ascending), the given
    /// order kept within each block, in place: a stable counting sort by position >> blockLog, O(n).</summary>
    public static void InPositionBlocks(Span<int> order, int blockLog)
    {
        int n = order.Length, blocks = (int)(((long)n + (1L << blockLog) - 1) >> blockLog);
        var start = new int[blocks + 1];
        foreach (int i in order) start[(i >> blockLog) + 1]++;
        for (int b = 0; b < blocks; b++) start[b + 1] += start[b];
        using var result = new KernelBuffer<int>(n);
        var r = result.Span;
        foreach (int i in order) r[start[i >> blockLog]++] = i;
        r.CopyTo(order);
    }

    /// <summary>The bits of x as an unsigned integer that orders finite doubles as their values do (−0 just below +0): the
    /// sign bit flipped for x ≥ 0, all bits flipped for x &lt; 0.</summary>
    internal static ulong OrderKey(double x)
    {
        long bits = BitConverter.DoubleToInt64Bits(x);
        return bits >= 0 ? (ulong)bits | (1UL << 63) : ~(ulong)bits;
    }

    /// <summary>The inverse of <see cref="OrderKey"/> (bit for bit, −0 and +0 apart).</summary>
    internal static double FromOrderKey(ulong code) =>
        BitConverter.Int64BitsToDouble((long)((code >> 63) != 0 ? code & ~(1UL << 63) : ~code));

    /// <summary>d ≥ 2: queries sorted by a Morton (Z-order) code of their direction qᵢ/‖qᵢ‖∞ and their log-norm, each
    /// quantised to the same number of bits: consecutive queries then have nearby directions and norms, so they expand
    /// the same nodes (the band of relevant keys lies at the keys' extreme in the query's direction, its thickness ∝ 1/‖q‖)
    /// and read the same moments from cache.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // runs once per execution: its loops would otherwise run as OSR code
    public static void ByDirection(double[] q, int n, int d, Span<int> order, int threads = 1)
    {
        if (order.Length != n) throw new ArgumentException("one entry per query", nameof(order));
        using var codeBuffer = new KernelBuffer<long>(n);
        using var logNormBuffer = new KernelBuffer<double>(n);
        const int Chunk = 8192;
        int chunks = (n + Chunk - 1) / Chunk;
        var options = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) };
        var los = new double[chunks]; var his = new double[chunks];
        Parallel.For(0, chunks, options, k =>
        {
            var logNorm = logNormBuffer.Span;
            double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
            for (int i = k * Chunk, end = Math.Min(n, i + Chunk); i < end; i++)
            {
                // log₂‖q‖² as 2·log₂‖q‖∞ + log₂Σ(q_c/‖q‖∞)²: no overflow or underflow at any finite entry (a plain Σq_c²
                // is ∞ at |q| ≈ 1e155, and one such query made every norm cell equal).
                double mx = 0, s = 0;
                for (int c = 0; c < d; c++) mx = Math.Max(mx, Math.Abs(q[i * d + c]));
                if (mx > 0) for (int c = 0; c < d; c++) { double x = q[i * d + c] / mx; s += x * x; }
                double l = mx > 0 && double.IsFinite(mx) ? 2 * Math.Log2(mx) + Math.Log2(s) : double.NegativeInfinity;
                logNorm[i] = l;
                if (double.IsFinite(l)) { lo = Math.Min(lo, l); hi = Math.Max(hi, l); }
            }
            los[k] = lo; his[k] = hi;
        });
        double lo = los.Length > 0 ? los.Min() : 0, hi = his.Length > 0 ? his.Max() : 0;
        int bits = Math.Min(10, 60 / (d + 1)), top = (1 << bits) - 1;
        double span = hi > lo ? hi - lo : 1;
        Parallel.For(0, chunks, options, k =>
        {
            Span<long> cells = stackalloc long[d + 1];
            var codes = codeBuffer.Span;
            var logNorm = logNormBuffer.Span;
            for (int i = k * Chunk, end = Math.Min(n, i + Chunk); i < end; i++)
            {
                double mx = 0;
                for (int c = 0; c < d; c++) mx = Math.Max(mx, Math.Abs(q[i * d + c]));
                for (int c = 0; c < d; c++)
                {
                    double x = mx > 0 ? q[i * d + c] / mx : 0;
                    cells[c] = Math.Clamp((long)((x + 1) * 0.5 * (1 << bits)), 0, top);
                }
                cells[d] = double.IsFinite(logNorm[i]) ? Math.Clamp((long)((logNorm[i] - lo) / span * (1 << bits)), 0, top) : 0;
                codes[i] = Interleave(cells, bits, deposit: true);
            }
        });
        for (int i = 0; i < n; i++) order[i] = i;
        SortInPlace(codeBuffer.Span, order, bits * (d + 1));
    }

    /// <summary>The Morton code of the cells (each below 2^<paramref name="bits"/>): bit b of cell c at position
    /// b·k + k − 1 − c for k cells, i.e. most significant bits first, cell 0 first within each group. <paramref name="deposit"/>:
    /// BMI2's bit deposit where the CPU has it (tests run both forms).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long Interleave(ReadOnlySpan<long> cells, int bits, bool deposit)
    {
        int k = cells.Length;
        long code = 0;
        if (deposit && System.Runtime.Intrinsics.X86.Bmi2.X64.IsSupported)
        {
            // One bit deposit per cell into its lanes of the code.
            ulong lane = 0;
            for (int b = 0; b < bits; b++) lane |= 1UL << (b * k);
            for (int c = 0; c < k; c++)
                code |= (long)System.Runtime.Intrinsics.X86.Bmi2.X64.ParallelBitDeposit((ulong)cells[c], lane << (k - 1 - c));
            return code;
        }
        for (int b = bits - 1; b >= 0; b--)
            for (int c = 0; c < k; c++) code = (code << 1) | ((cells[c] >> b) & 1);
        return code;
    }

    /// <summary>The items ordered by their codes (each below 2^<paramref name="codeBits"/>; 64: any bits), ties in item
    /// order: an LSD radix sort in 11-bit digits — every digit's histogram from one read of the codes, and a digit that
    /// all codes share skipped (no pass) — so at most ⌈bits/11⌉ stable counting passes. 8-bit digits took 8 passes for
    /// the d = 1 keys' 64-bit codes, and the sorts 15 % of a d = 1 run at n = 2²⁰. Each pass moves the pairs between
    /// (codes, items) and the scratch (codes2, items2), all of one length; returns true when the sorted pairs end in the
    /// scratch (an odd number of passes), false when in (codes, items).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static bool SortByCode(Span<long> codes, Span<int> items, Span<long> codes2, Span<int> items2, int codeBits)
    {
        const int Digit = 11, Buckets = 1 << Digit;
        int n = codes.Length, digits = (Math.Max(codeBits, 1) + Digit - 1) / Digit;
        if (items.Length != n || codes2.Length != n || items2.Length != n) throw new ArgumentException("codes, items and their scratch must have one length");
        var count = new int[digits * Buckets];
        for (int i = 0; i < n; i++)
        {
            ulong c = (ulong)codes[i];
            for (int g = 0; g < digits; g++) count[g * Buckets + (int)((c >> (g * Digit)) & (Buckets - 1))]++;
        }
        bool inScratch = false;
        for (int g = 0; g < digits; g++)
        {
            var hist = count.AsSpan(g * Buckets, Buckets);
            if (n == 0 || hist[(int)(((ulong)codes[0] >> (g * Digit)) & (Buckets - 1))] == n) continue; // one digit value: nothing moves
            for (int b = 0, sum = 0; b < Buckets; b++) { int c = hist[b]; hist[b] = sum; sum += c; }
            int shift = g * Digit;
            for (int i = 0; i < n; i++)
            {
                int at = hist[(int)(((ulong)codes[i] >> shift) & (Buckets - 1))]++;
                codes2[at] = codes[i]; items2[at] = items[i];
            }
            var tc = codes; codes = codes2; codes2 = tc;
            var ti = items; items = items2; items2 = ti;
            inScratch = !inScratch;
        }
        return inScratch;
    }

    /// <summary><see cref="SortByCode(Span{long}, Span{int}, Span{long}, Span{int}, int)"/> with pooled scratch, the sorted
    /// items left in <paramref name="items"/> (the codes are left permuted, sorted or not).</summary>
    internal static void SortInPlace(Span<long> codes, Span<int> items, int codeBits)
    {
        int n = codes.Length;
        using var codes2 = new KernelBuffer<long>(n);
        using var items2 = new KernelBuffer<int>(n);
        if (SortByCode(codes, items, codes2.Span, items2.Span, codeBits)) items2.Span.CopyTo(items);
    }
}

/// <summary>Per-query work counters (nodes answered from moments, nodes visited, keys summed directly, queries redone
/// with a narrower expansion or with the full band T) and the largest number of terms any one query accumulated.</summary>
internal sealed class QueryStats
{
    public long Queries, Expansions, NodesVisited, DirectKeys, Pruned, MaxSearchNodes, ThresholdSearches, Redone, Widened, MaxTicks, CollectTicks, AccumulateTicks, DirectRanges;
    public int MaxTerms;

    public void Merge(QueryStats o)
    {
        Queries += o.Queries; Expansions += o.Expansions; NodesVisited += o.NodesVisited; DirectKeys += o.DirectKeys; Pruned += o.Pruned; MaxSearchNodes += o.MaxSearchNodes; ThresholdSearches += o.ThresholdSearches;
        Redone += o.Redone; Widened += o.Widened; MaxTicks += o.MaxTicks; CollectTicks += o.CollectTicks; AccumulateTicks += o.AccumulateTicks; DirectRanges += o.DirectRanges;
        MaxTerms = Math.Max(MaxTerms, o.MaxTerms);
    }

    public double PerQuery(long x) => Queries == 0 ? 0 : (double)x / Queries;
}
