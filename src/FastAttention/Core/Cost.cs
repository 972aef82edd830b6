namespace FastAttention;

/// <summary>
/// Counted work of one head's plan — what the planner multiplies by <see cref="MachineRates"/> to predict seconds.
/// Every algorithm counts the work it will do before doing it; data-dependent work (nodes and keys a range structure
/// visits per query) is counted on a deterministic sample of queries and scaled to all of them, so a plan is a
/// deterministic function of the problem and the rates.
/// </summary>
/// <param name="Flops">Flops of the vectorised exact kernel (a multiply-add counts 2; float64 counts twice, half the lanes).</param>
/// <param name="ExpEvaluations">Exponentials evaluated by the exact kernel.</param>
/// <param name="Bytes">Bytes streamed from memory (inputs read once, outputs written once, structures built).</param>
/// <param name="TreeNodes">Tree nodes visited over all queries (range structures).</param>
/// <param name="LeafKeys">Keys summed one by one over all queries (each an exp and d + dv multiply-adds).</param>
/// <param name="ScalarFlops">Float64 flops of the approximate algorithms' own kernels (monomials, moments, expansions).</param>
public sealed record CostEstimate(double Flops, double ExpEvaluations, double Bytes, double TreeNodes = 0, double LeafKeys = 0, double ScalarFlops = 0)
{
    /// <summary>No work.</summary>
    public static CostEstimate Zero { get; } = new(0, 0, 0);

    /// <summary>True when the data-dependent counts were measured on a sample of queries (not a model).</summary>
    public bool Sampled { get; init; }

    /// <summary>Predicted seconds on <paramref name="threads"/> threads: the arithmetic (kernel flops, exponentials,
    /// scalar flops, tree nodes and leaf keys, each over its per-thread rate) or the memory streaming, whichever is slower.</summary>
    public double Seconds(MachineRates rates, int threads)
    {
        ArgumentNullException.ThrowIfNull(rates);
        double t = Math.Max(1, threads);
        double compute = (Flops / rates.FlopsPerSecond + ExpEvaluations / rates.ExpsPerSecond + ScalarFlops / rates.ScalarFlopsPerSecond
            + TreeNodes * rates.SecondsPerTreeNode + LeafKeys * rates.SecondsPerLeafKey) / t;
        double memory = Bytes / rates.BytesPerSecond;
        return Math.Max(compute, memory);
    }

    /// <summary>The sum of two estimates (e.g. a reduction's projection plus the range search it feeds).</summary>
    public static CostEstimate operator +(CostEstimate a, CostEstimate b) =>
        new(a.Flops + b.Flops, a.ExpEvaluations + b.ExpEvaluations, a.Bytes + b.Bytes, a.TreeNodes + b.TreeNodes, a.LeafKeys + b.LeafKeys, a.ScalarFlops + b.ScalarFlops);
}

/// <summary>
/// Per-thread machine rates: what one core sustains on the kernels' work. Measured by <c>fastattn calibrate</c>
/// (cached per machine), or the built-in defaults (a 2020s x86-64 core with AVX2).
/// </summary>
/// <param name="FlopsPerSecond">Flops per second per thread of the exact kernel's matrix products (float32).</param>
/// <param name="ExpsPerSecond">Exponentials per second per thread inside the exact kernel.</param>
/// <param name="ScalarFlopsPerSecond">Float64 flops per second per thread of the approximate algorithms' kernels.</param>
/// <param name="BytesPerSecond">Memory bandwidth of the whole machine (bytes/s).</param>
/// <param name="SecondsPerTreeNode">Time per range-structure node visited (one thread).</param>
/// <param name="SecondsPerLeafKey">Time per key summed directly (one thread).</param>
public sealed record MachineRates(double FlopsPerSecond, double ExpsPerSecond, double ScalarFlopsPerSecond, double BytesPerSecond,
    double SecondsPerTreeNode, double SecondsPerLeafKey)
{
    /// <summary>Defaults used when no calibration is available (measured once on an AVX2 Zen 3 core).</summary>
    public static MachineRates Default { get; } = new(FlopsPerSecond: 40e9, ExpsPerSecond: 0.6e9, ScalarFlopsPerSecond: 8e9, BytesPerSecond: 10e9,
        SecondsPerTreeNode: 60e-9, SecondsPerLeafKey: 10e-9);

    /// <summary>Where the rates came from (e.g. "built-in defaults", "calibrated 2026-12-01 on AMD EPYC").</summary>
    public string Source { get; init; } = "built-in defaults";
}
