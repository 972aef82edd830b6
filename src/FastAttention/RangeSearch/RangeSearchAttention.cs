using System.Numerics;

namespace FastAttention.RangeSearch;

/// <summary>
/// ApproxAttention (Gupta et al. Algorithm 1, Lemmas 3.4–3.6, A.4) for constant head dimension d ≤
/// <see cref="RangeSearchFamily.MaxRangeDimension"/>: per query the maximum logit within a tolerance (Lemma A.4's
/// s_max), the relevant halfspace {k : s·q·k ≥ M − T} (Definition 3.2), and Σ_relevant P(·)·(1, V) from the moments of
/// the <see cref="MomentTree"/> (Lemma 3.5); causal masks by the logarithmic method over power-of-two key blocks.
/// The engine, its choice of H by counting and its certificate: <see cref="RangeEngine"/>.
/// </summary>
public sealed class RangeSearchAttention : RangeSearchFamily, ISupportsCausalAlignment
{
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
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context) => PlanWithEngine(head, context, base.PlanHead(head, context));

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context) =>
        ExecuteWithEngine(plan, head, output, context);
}
