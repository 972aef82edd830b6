using System.Numerics;

namespace FastAttention.RangeSearch;

/// <summary>
/// ApproxAttention (Gupta et al. Algorithm 1, Lemmas 3.4–3.6, A.4) for constant head dimension d ≤
/// <see cref="RangeSearchFamily.MaxRangeDimension"/>: per query the maximum logit within a tolerance (Lemma A.4's
/// s_max), the relevant halfspace {k : s·q·k ≥ M − T} (Definition 3.2), and Σ_relevant P(·)·(1, V) from the moments of
/// the <see cref="MomentTree"/> (Lemma 3.5); causal masks by the logarithmic method over power-of-two key blocks.
/// The engine and its certificate: <see cref="RangeEngine"/>.
/// </summary>
public sealed class RangeSearchAttention : RangeSearchFamily
{
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
        var r = RangeEngine.Run(Name, q, k, v, head.N, head.M, head.D, head.Dv, head.Scale, settings.Epsilon,
            typeof(T) == typeof(float), settings.EffectiveThreads, head.Causal, ForcedHalfWidth, AllowExactPlan);
        for (int i = 0; i < r.Output.Length; i++) Store(output, i, r.Output[i]);
        return new HeadReport(r.Bound, r.Parameters);
    }

    internal override RangeWorkEstimate EstimateHead<T>(AttentionHead<T> head, AttentionSettings settings, int sampleQueries)
    {
        var (q, k, v) = head.ToDouble();
        return RangeEngine.Estimate(Name, q, k, v, head.N, head.M, head.D, head.Dv, head.Scale, settings.Epsilon,
            typeof(T) == typeof(float), settings.EffectiveThreads, head.Causal, sampleQueries, ForcedHalfWidth, AllowExactPlan);
    }
}
