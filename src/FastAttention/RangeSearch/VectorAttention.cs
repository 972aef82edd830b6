using System.Numerics;

namespace FastAttention.RangeSearch;

/// <summary>
/// VectorAttention (Gupta et al. Algorithm 2, Lemmas A.1–A.3): d = 1 attention in Õ(m·log m + n·polylog(B/ε)).
/// The keys are sorted once — the one <see cref="MomentTree"/> in one dimension, whose median splits are the sorted
/// order — and the relevant keys (Definition 3.2) of a query with a = s·qᵢ are a suffix of the sorted keys when a &gt; 0
/// and a prefix when a &lt; 0 (the paper's sign split; a = 0 attends uniformly). Instead of the paper's prefix sums of
/// raw monomials kℓ (Lemma A.2, which cancel catastrophically for large entries) the tree's blocks store centred,
/// scaled moments Σ uℓ·(1, v), u = (k − κ)/w ∈ [−1, 1]; the relevant range decomposes into O(log m) blocks answered
/// from their moments (Lemma A.3) when |a|·w ≤ H. Causal masks: power-of-two blocks of positions
/// (<see cref="RangeEngine"/>).
/// </summary>
public sealed class VectorAttention : RangeSearchFamily
{
    public override string Name => "vector";

    protected override void Validate<T>(AttentionProblem<T> problem, AttentionSettings settings)
    {
        if (problem.D != 1)
            ThrowHelper.Refused(Name, RefusalReason.HeadDimension, $"VectorAttention (Algorithm 2) needs head dimension d = 1 (got d = {problem.D}); use 'range' for d ≤ {MaxRangeDimension} or 'lowrank' for low-rank Q, K.");
        base.Validate(problem, settings);
    }

    protected override HeadReport ComputeHead<T>(AttentionHead<T> head, Span<T> output, AttentionSettings settings)
    {
        var (q, k, v) = head.ToDouble();
        var r = RangeEngine.Run(Name, q, k, v, head.N, head.M, 1, head.Dv, head.Scale, settings.Epsilon,
            typeof(T) == typeof(float), settings.EffectiveThreads, head.Causal, ForcedHalfWidth, AllowExactPlan);
        for (int i = 0; i < r.Output.Length; i++) Store(output, i, r.Output[i]);
        return new HeadReport(r.Bound, r.Parameters);
    }

    internal override RangeWorkEstimate EstimateHead<T>(AttentionHead<T> head, AttentionSettings settings, int sampleQueries)
    {
        var (q, k, v) = head.ToDouble();
        return RangeEngine.Estimate(Name, q, k, v, head.N, head.M, 1, head.Dv, head.Scale, settings.Epsilon,
            typeof(T) == typeof(float), settings.EffectiveThreads, head.Causal, sampleQueries, ForcedHalfWidth, AllowExactPlan);
    }
}
