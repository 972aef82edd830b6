namespace FastAttention;

/// <summary>
/// Counted work of one head's plan — what the planner multiplies by <see cref="MachineRates"/> to predict seconds.
/// Every algorithm reports the work it will do before doing it; data-dependent work (keys a tree opens per query) is
/// measured on a sample of queries and extrapolated, and then <see cref="SampledSeconds"/> carries the measured time.
/// </summary>
/// <param name="Flops">Floating-point multiply-adds counted as 2 flops each (dot products, P·V, monomials).</param>
/// <param name="ExpEvaluations">Exponentials evaluated.</param>
/// <param name="Bytes">Bytes streamed from memory (inputs read once, outputs written once, structures built).</param>
/// <param name="TreeNodes">Tree nodes visited over all queries (range structures).</param>
/// <param name="LeafKeys">Keys summed one by one over all queries (range structures' leaves, direct sums).</param>
/// <param name="SampledSeconds">Seconds measured on a sample and extrapolated to the whole head (0 when not sampled);
/// when positive it replaces the rate-based prediction of the tree work.</param>
public sealed record CostEstimate(double Flops, double ExpEvaluations, double Bytes, double TreeNodes = 0, double LeafKeys = 0, double SampledSeconds = 0)
{
    /// <summary>No work.</summary>
    public static CostEstimate Zero { get; } = new(0, 0, 0);

    /// <summary>Predicted seconds on <paramref name="threads"/> threads: each resource's work over its rate, the
    /// arithmetic and exponentials overlapping (max), memory streaming added, tree work from the sample when measured.</summary>
    public double Seconds(MachineRates rates, int threads)
    {
        ArgumentNullException.ThrowIfNull(rates);
        double t = Math.Max(1, threads);
        double compute = Flops / (rates.FlopsPerSecond * t) + ExpEvaluations / (rates.ExpsPerSecond * t);
        double memory = Bytes / rates.BytesPerSecond;
        double tree = SampledSeconds > 0 ? SampledSeconds : (TreeNodes * rates.SecondsPerTreeNode + LeafKeys * rates.SecondsPerLeafKey) / t;
        return Math.Max(compute, memory) + tree;
    }

    /// <summary>The sum of two estimates (e.g. a reduction's projection plus the range search it feeds).</summary>
    public static CostEstimate operator +(CostEstimate a, CostEstimate b) =>
        new(a.Flops + b.Flops, a.ExpEvaluations + b.ExpEvaluations, a.Bytes + b.Bytes, a.TreeNodes + b.TreeNodes, a.LeafKeys + b.LeafKeys, a.SampledSeconds + b.SampledSeconds);
}

/// <summary>
/// Per-thread machine rates: what one core sustains on the kernels' work. Measured by <c>fastattn calibrate</c>
/// (cached per machine), or the built-in defaults (a 2020s x86-64 core with AVX2).
/// </summary>
/// <param name="FlopsPerSecond">float64/float32-mixed FMA work the kernels sustain per thread (flops/s).</param>
/// <param name="ExpsPerSecond">Vectorised exponentials per second per thread.</param>
/// <param name="BytesPerSecond">Memory bandwidth of the whole machine (bytes/s).</param>
/// <param name="SecondsPerTreeNode">Time per range-tree node visited (one thread).</param>
/// <param name="SecondsPerLeafKey">Time per key summed directly at a leaf (one thread).</param>
public sealed record MachineRates(double FlopsPerSecond, double ExpsPerSecond, double BytesPerSecond, double SecondsPerTreeNode, double SecondsPerLeafKey)
{
    /// <summary>Defaults used when no calibration is available.</summary>
    public static MachineRates Default { get; } = new(FlopsPerSecond: 40e9, ExpsPerSecond: 2e9, BytesPerSecond: 10e9, SecondsPerTreeNode: 60e-9, SecondsPerLeafKey: 8e-9);

    /// <summary>Where the rates came from (e.g. "built-in defaults", "calibrated 2026-12-01 on AMD EPYC").</summary>
    public string Source { get; init; } = "built-in defaults";
}
