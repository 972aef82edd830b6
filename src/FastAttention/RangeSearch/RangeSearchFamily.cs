using System.Numerics;

namespace FastAttention.RangeSearch;

/// <summary>
/// Common checks of the Gupta et al. family (vector, rounding, range, lowrank): approximate, ε given, the per-query
/// statistics every certificate reports, and the planner's work estimate.
/// </summary>
public abstract class RangeSearchFamily : AttentionAlgorithm
{
    /// <summary>The largest head dimension 'range' accepts: the C(g + d, d) moments per node outgrow the keys beyond it.</summary>
    public const int MaxRangeDimension = 4;

    public override bool IsExact => false;

    /// <summary>Tests only: the expansion half-width H to use (0: no moments) instead of choosing it by counting
    /// (this also keeps the range-search plan: the exact kernel is never chosen).</summary>
    internal double? ForcedHalfWidth { get; set; }

    /// <summary>Tests only: false keeps the range-search plan even where the exact kernel is predicted faster.</summary>
    internal bool AllowExactPlan { get; set; } = true;

    protected override void Validate<T>(AttentionProblem<T> problem, AttentionSettings settings)
    {
        if (!(settings.Epsilon > 0 && double.IsFinite(settings.Epsilon)))
            ThrowHelper.Refused(Name, RefusalReason.EpsilonInvalid, $"ε must be a positive finite number (got {settings.Epsilon}).");
    }

    /// <summary>
    /// The data-dependent work this algorithm would do on <paramref name="problem"/>, without doing it: the key structure's
    /// geometry is built (no moments) and the traversal is run on <paramref name="sampleQueries"/> queries per head; the
    /// counts (nodes visited, keys summed directly, expansions evaluated) are returned per query and extrapolated to all
    /// queries, with a predicted time and the exact kernel's pair count. Refuses exactly as <c>Compute</c> would before
    /// any work (head dimension, rank, ε).
    /// </summary>
    public RangeWorkEstimate EstimateWork<T>(AttentionProblem<T> problem, AttentionSettings settings, int sampleQueries = RangeEngine.DefaultSample)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        ArgumentNullException.ThrowIfNull(settings);
        if (sampleQueries < 1) ThrowHelper.ArgumentOutOfRange(nameof(sampleQueries), $"sampleQueries must be at least 1 (got {sampleQueries}).");
        settings.Validate(true, Name);
        Validate(problem, settings);
        var heads = new List<RangeWorkEstimate>();
        for (int h = 0; h < problem.Heads; h++) heads.Add(EstimateHead(problem.Head(h), settings, sampleQueries));
        return RangeWorkEstimate.Sum(heads);
    }

    /// <summary>One head's work estimate (see <see cref="EstimateWork"/>).</summary>
    internal abstract RangeWorkEstimate EstimateHead<T>(AttentionHead<T> head, AttentionSettings settings, int sampleQueries)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>;

    /// <summary>Writes a row-major n×dv output from float64 values.</summary>
    internal static void Store<T>(Span<T> output, int index, double value) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        output[index] = T.CreateTruncating(value);

    /// <summary>Runs <paramref name="body"/>(from, to, stats) over query blocks, in parallel when threads &gt; 1, and merges the statistics.</summary>
    internal static QueryStats ForQueries(int n, int threads, Func<QueryStats> init, Action<int, int, QueryStats> body)
    {
        const int Block = 256;
        int blocks = (n + Block - 1) / Block;
        var total = new QueryStats();
        if (threads <= 1 || blocks == 1)
        {
            var s = init();
            body(0, n, s);
            total.Merge(s);
            return total;
        }
        var gate = new object();
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = threads }, init,
            (b, _, s) => { body(b * Block, Math.Min(n, (b + 1) * Block), s); return s; },
            s => { lock (gate) total.Merge(s); });
        return total;
    }
}

/// <summary>Query orders that keep consecutive queries on nearby tree paths (cache locality only; results do not depend on it).</summary>
internal static class QueryOrder
{
    /// <summary>d = 1: queries sorted by qᵢ.</summary>
    public static int[] Sorted(double[] q)
    {
        var order = new int[q.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        Array.Sort((double[])q.Clone(), order);
        return order;
    }

    /// <summary>d ≥ 2: queries sorted by a Morton (Z-order) code of their direction qᵢ/‖qᵢ‖∞ quantised to 10 bits per coordinate.</summary>
    public static int[] ByDirection(double[] q, int n, int d)
    {
        var codes = new long[n];
        var order = new int[n];
        int bits = Math.Min(10, 60 / d);
        for (int i = 0; i < n; i++)
        {
            order[i] = i;
            double mx = 0;
            for (int c = 0; c < d; c++) mx = Math.Max(mx, Math.Abs(q[i * d + c]));
            long code = 0;
            for (int b = bits - 1; b >= 0; b--)
                for (int c = 0; c < d; c++)
                {
                    double x = mx > 0 ? q[i * d + c] / mx : 0;
                    long cell = Math.Clamp((long)((x + 1) * 0.5 * (1 << bits)), 0, (1 << bits) - 1);
                    code = (code << 1) | ((cell >> b) & 1);
                }
            codes[i] = code;
        }
        Array.Sort(codes, order);
        return order;
    }
}

/// <summary>Per-query work counters (nodes answered from moments, nodes visited, keys summed directly, queries redone
/// with a narrower expansion) and the largest number of terms any one query accumulated.</summary>
internal sealed class QueryStats
{
    public long Queries, Expansions, NodesVisited, DirectKeys, Pruned, MaxSearchNodes, Redone, MaxTicks, CollectTicks, AccumulateTicks, DirectRanges;
    public int MaxTerms;

    public void Merge(QueryStats o)
    {
        Queries += o.Queries; Expansions += o.Expansions; NodesVisited += o.NodesVisited; DirectKeys += o.DirectKeys; Pruned += o.Pruned; MaxSearchNodes += o.MaxSearchNodes;
        Redone += o.Redone; MaxTicks += o.MaxTicks; CollectTicks += o.CollectTicks; AccumulateTicks += o.AccumulateTicks; DirectRanges += o.DirectRanges;
        MaxTerms = Math.Max(MaxTerms, o.MaxTerms);
    }

    public double PerQuery(long x) => Queries == 0 ? 0 : (double)x / Queries;
}
