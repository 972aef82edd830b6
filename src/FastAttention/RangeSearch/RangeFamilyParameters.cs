namespace FastAttention.RangeSearch;

/// <summary>
/// Parameters of the Gupta et al. family (vector, rounding, range, lowrank) for one head: what was chosen (degree,
/// half-width H, threshold T, …) and what the run measured (work counters per query, tree sizes, rounding ρ, times).
/// Fields that do not apply to an algorithm are null.
/// </summary>
public sealed record RangeFamilyParameters : AlgorithmParameters
{
    /// <summary>vector, range, lowrank: "range search", or "exact kernel" when no range plan was predicted faster.</summary>
    public string? Plan { get; init; }
    /// <summary>d′ &lt; d: the coordinates the search ran in — those zero in every query or in every key add exactly 0 to
    /// every logit and are dropped. Null when all d are used.</summary>
    public int? SearchDimension { get; init; }
    /// <summary>Degree g of the per-node expansion of exp (vector, range, lowrank).</summary>
    public int? Degree { get; init; }
    /// <summary>Monomials C(g + d, d) stored per node.</summary>
    public int? Monomials { get; init; }
    /// <summary>Half-width H of the logit interval one node expansion covers.</summary>
    public double? HalfWidthH { get; init; }
    /// <summary>T: keys more than T below the row maximum are dropped (Definition 3.2, relevant keys).</summary>
    public double ThresholdT { get; init; }
    /// <summary>T′ ≤ T: the narrower band a query is first answered with (chosen by counting on the sample); the mass of
    /// the keys it drops is bounded from the pruned nodes per query, and a query whose bound exceeds the dropped-keys
    /// share is recomputed with T (null when T′ = T).</summary>
    public double? WorkingThreshold { get; init; }
    /// <summary>Queries recomputed with T because their pruned mass at <see cref="WorkingThreshold"/> was above the share.</summary>
    public long? WidenedQueries { get; init; }
    /// <summary>Proven uniform bound |P(t) − e^{Ht}| on [−1, 1] of the expansion's polynomial.</summary>
    public double? PolynomialAbsoluteError { get; init; }
    /// <summary>Nodes with at least this many keys store moments (chosen by counting with H).</summary>
    public int? MomentMinimum { get; init; }
    /// <summary>The width a query is recomputed with when its measured error share is exceeded (a priori safe).</summary>
    public double? SafeHalfWidth { get; init; }
    /// <summary>Queries recomputed with <see cref="SafeHalfWidth"/>.</summary>
    public long? RedoneQueries { get; init; }
    /// <summary>Tree nodes visited per query (measured).</summary>
    public double? NodesVisitedPerQuery { get; init; }
    /// <summary>Nodes answered from their moments per query (measured).</summary>
    public double? ExpansionsPerQuery { get; init; }
    /// <summary>Keys summed directly per query (measured).</summary>
    public double? DirectKeysPerQuery { get; init; }
    /// <summary>Nodes pruned (entirely below the threshold) per query (measured).</summary>
    public double? PrunedPerQuery { get; init; }
    /// <summary>Nodes visited per query by the maximum search (measured).</summary>
    public double? MaxSearchNodesPerQuery { get; init; }
    /// <summary>Maximum searches whose branch and bound ran out of its node budget and finished by Lemma A.4's binary
    /// search over thresholds (measured).</summary>
    public long? ThresholdSearches { get; init; }
    /// <summary>Keys summed directly, as a fraction of the pairs the exact kernel computes (≈ 1: a Θ(n·m) run).</summary>
    public double? DirectKeysFraction { get; init; }
    /// <summary>The sampled prediction of keys summed directly per query (the planner's estimate).</summary>
    public double? PredictedDirectKeysPerQuery { get; init; }
    /// <summary>The sampled prediction of nodes answered from moments per query.</summary>
    public double? PredictedExpansionsPerQuery { get; init; }
    /// <summary>Trees (1, or the power-of-two position blocks of a causal mask).</summary>
    public int? Trees { get; init; }
    /// <summary>Nodes of the tree(s).</summary>
    public int? TreeNodes { get; init; }
    /// <summary>Nodes that store moments.</summary>
    public int? MomentNodes { get; init; }
    /// <summary>Nodes with a principal-axis frame (thin nodes).</summary>
    public int? OrientedNodes { get; init; }
    /// <summary>Bytes of the tree.</summary>
    public long? TreeBytes { get; init; }
    /// <summary>The output error from dropping irrelevant keys.</summary>
    public double DiscardBound { get; init; }
    /// <summary>ρ: relative float64 rounding measured during the run.</summary>
    public double RoundingRho { get; init; }
    /// <summary>True when direct keys' logits used plain dot products (their rounding is negligible at these entries).</summary>
    public bool? PlainLogits { get; init; }
    /// <summary>The candidate widths and their predicted seconds (the choice by counting).</summary>
    public string? Candidates { get; init; }
    /// <summary>Seconds spent building the structure (geometry and moments).</summary>
    public double? BuildSeconds { get; init; }
    /// <summary>Seconds of the geometry (kd-tree, frames) alone.</summary>
    public double? GeometrySeconds { get; init; }
    /// <summary>Seconds spent choosing the plan (the sampled traversals).</summary>
    public double? PlanSeconds { get; init; }
    /// <summary>Seconds spent answering queries.</summary>
    public double? QuerySeconds { get; init; }
    /// <summary>Thread-seconds in the maximum search, the traversal and the accumulation (diagnostics, estimated from every
    /// 64th query in execution order: its time × 64).</summary>
    public double? MaxSearchSeconds { get; init; }
    /// <inheritdoc cref="MaxSearchSeconds"/>
    public double? CollectSeconds { get; init; }
    /// <inheritdoc cref="MaxSearchSeconds"/>
    public double? AccumulateSeconds { get; init; }
    /// <summary>rounding: the bucket width log(1 + ε′).</summary>
    public double? BucketWidth { get; init; }
    /// <summary>rounding: ε′, the relative error of a rounded weight.</summary>
    public double? EpsilonPrime { get; init; }
    /// <summary>rounding: buckets visited per query.</summary>
    public double? BucketsPerQuery { get; init; }
    /// <summary>rounding: relevant keys per query.</summary>
    public double? RelevantKeysPerQuery { get; init; }
    /// <summary>rounding: the most buckets any query visited.</summary>
    public int? MaxBuckets { get; init; }
    /// <summary>lowrank: the rank r used (Theorem 1.2).</summary>
    public int? Rank { get; init; }
    /// <summary>lowrank: numerical rank of Q at this ε.</summary>
    public int? RankQ { get; init; }
    /// <summary>lowrank: numerical rank of K at this ε.</summary>
    public int? RankK { get; init; }
    /// <summary>lowrank: which of Q, K was projected ("Q" or "K").</summary>
    public string? Projected { get; init; }
    /// <summary>lowrank: the largest logit shift Δ from the truncation.</summary>
    public double? TruncationLogitShift { get; init; }
    /// <summary>lowrank: the output error (e^{2Δ} − 1)‖V‖∞ from the truncation.</summary>
    public double? TruncationError { get; init; }
}
