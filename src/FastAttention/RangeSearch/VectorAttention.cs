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
public sealed class VectorAttention : RangeSearchFamily, ISupportsCausalAlignment
{
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
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context) => PlanWithEngine(head, context, base.PlanHead(head, context));

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context) =>
        ExecuteWithEngine(plan, head, output, context);
}
