using System.Numerics;

namespace FastAttention.Planning;

/// <summary>
/// The planner ("auto"): for each head, plans every registered algorithm, executes the cheapest plan that certifies
/// ε, and falls back to exact — the FIGTree idea (estimate each method's cost from the data and ε, run the cheapest)
/// for attention. Without ε it runs exact. Costs are counted work × <see cref="MachineRates"/>; where work depends on
/// the data (how many nodes and keys a range structure opens per query) the candidate builds its structure and counts
/// the work of a deterministic sample of queries, so no Θ(n·m) structure is chosen unseen, and the structure built
/// while planning is the one executed. Every head's certificate lists the alternatives with their refusal or
/// predicted seconds.
/// </summary>
public sealed class AutoAttention : AttentionAlgorithm
{
    /// <summary>The algorithms considered, in the order they are listed in certificates.</summary>
    public static IReadOnlyList<string> CandidateNames { get; } = ["exact", "polynomial", "vector", "rounding", "range", "lowrank"];

    private static readonly HashSet<string> DataDependent = ["vector", "rounding", "range", "lowrank"];

    /// <summary><c>"auto"</c>: per head, the fastest plan that certifies ε (exact when none does, or without ε).</summary>
    public override string Name => "auto";
    /// <summary>False: with ε a head may be computed approximately, within ε in ‖·‖∞; the certificate says which algorithm ran.</summary>
    public override bool IsExact => false;
    /// <summary>False: without ε every head runs exact.</summary>
    public override bool RequiresEpsilon => false;

    /// <inheritdoc/>
    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
    {
        var exact = AttentionAlgorithms.Create("exact");
        if (double.IsNaN(context.Epsilon))
        {
            var e = exact.PlanHeadFor(head, context);
            return Wrap(e, [new PlanCandidate("exact", null, e.PredictedSeconds, e.ErrorBound)]);
        }
        var plans = new Dictionary<string, HeadPlan>();
        var refusals = new Dictionary<string, Refusal>();
        foreach (string name in CandidateNames)
        {
            context.ThrowIfCancelled();
            try { plans[name] = AttentionAlgorithms.Create(name).PlanHeadFor(head, context with { MeasureCost = false }); }
            catch (AttentionRefusedException r) { refusals[name] = r.Refusal; }
        }
        if (plans.TryGetValue("exact", out var ex) && !(ex.ErrorBound <= context.Epsilon))
        {
            refusals["exact"] = new Refusal("exact", RefusalReason.OutputPrecision,
                $"the exact kernel's floating-point rounding bound {ex.ErrorBound:G3} exceeds ε = {context.Epsilon:G3}.", ["reference"]);
            plans.Remove("exact");
        }
        // Data-independent costs (exact, polynomial) are known from counts alone. A data-dependent candidate is measured
        // on a sample (building its structure) only when its optimistic count could beat the best known one; lowrank
        // is skipped where range already covers the full-rank head (d ≤ 4).
        double bestKnown = plans.Where(p => !DataDependent.Contains(p.Key)).Select(p => p.Value.PredictedSeconds).DefaultIfEmpty(double.PositiveInfinity).Min();
        foreach (string name in CandidateNames.Where(DataDependent.Contains).Where(plans.ContainsKey).OrderBy(n => plans[n].PredictedSeconds).ToList())
        {
            if (name == "lowrank" && head.D <= RangeSearch.RangeSearchFamily.MaxRangeDimension && plans.ContainsKey("range"))
            {
                refusals[name] = new Refusal(name, RefusalReason.SlowerThanAlternative,
                    $"not measured: with d = {head.D} ≤ {RangeSearch.RangeSearchFamily.MaxRangeDimension} 'range' serves the head directly and a rank-r projection adds only its own cost.", ["range"]);
                plans.Remove(name);
                continue;
            }
            // The unsampled count is only a guess (at d = 4, B = 100 it predicted 422 s for a 0.6 s run): a candidate is
            // skipped unmeasured only when even that guess's optimistic form loses AND measuring would not be cheap.
            if (Optimistic(plans[name], head, context) >= bestKnown && !CheapToMeasure(head, context, bestKnown)) continue;
            try
            {
                var measured = AttentionAlgorithms.Create(name).PlanHeadFor(head, context with { MeasureCost = true });
                plans[name] = measured;
                bestKnown = Math.Min(bestKnown, measured.PredictedSeconds);
            }
            catch (AttentionRefusedException r) { refusals[name] = r.Refusal; plans.Remove(name); }
        }
        var candidates = new List<PlanCandidate>();
        HeadPlan? best = null;
        foreach (string name in CandidateNames)
        {
            if (refusals.TryGetValue(name, out var r)) { candidates.Add(new PlanCandidate(name, r, double.NaN, double.NaN)); continue; }
            var p = plans[name];
            bool measured = !DataDependent.Contains(name) || p.Cost.Sampled;
            if (!measured)
            {
                candidates.Add(new PlanCandidate(name, new Refusal(name, RefusalReason.SlowerThanAlternative,
                    $"not measured: even its optimistic count ({Optimistic(p, head, context):G3} s) is no faster than {bestKnown:G3} s.", []), p.PredictedSeconds, p.ErrorBound));
                continue;
            }
            candidates.Add(new PlanCandidate(name, null, p.PredictedSeconds, p.ErrorBound));
            if (best is null || p.PredictedSeconds < best.PredictedSeconds) best = p;
        }
        if (best is null)
            ThrowHelper.Refused(Name, RefusalReason.OutputPrecision,
                $"no algorithm can certify ε = {context.Epsilon:G3} on this head: {string.Join("; ", refusals.Values.Select(r => r.ToString()))}.", "reference");
        return Wrap(best, candidates);
    }

    /// <inheritdoc/>
    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var chosen = (HeadPlan)plan.State!;
        try
        {
            var run = chosen.Owner.ExecuteHeadFor(chosen, head, output, context);
            return run with { Algorithm = run.Algorithm ?? chosen.Algorithm };
        }
        catch (AttentionRefusedException r) when (r.Reason == RefusalReason.MeasuredRounding && chosen.Algorithm != "exact")
        {
            // Rounding measured during the run left the chosen algorithm's bound above ε: recompute this head exactly.
            var exact = AttentionAlgorithms.Create("exact");
            var ep = exact.PlanHeadFor(head, new PlanningContext(context.Settings, context.Epsilon, context.Threads));
            var run = exact.ExecuteHeadFor(ep, head, output, context);
            return run with { Algorithm = "exact", Note = $"'{chosen.Algorithm}' refused after its run ({r.Refusal.Detail}); recomputed with 'exact'." };
        }
    }

    /// <summary>Whether building a range structure over the keys and sampling it (about m·(log₂ m + d) node steps;
    /// the sampled traversal itself stops at the exact kernel's cost) costs under a tenth of the best known plan.</summary>
    private static bool CheapToMeasure<T>(AttentionHead<T> head, PlanningContext context, double bestKnown) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double m = head.M;
        var build = new CostEstimate(0, 0, 8.0 * m * (head.D + head.Dv), TreeNodes: m * (Math.Log2(m + 1) + head.D));
        return 10 * build.Seconds(context.Settings.EffectiveRates, context.Threads) < bestKnown;
    }

    /// <summary>The unsampled count with no leaf work at all: a lower estimate of what the structure can cost.</summary>
    private static double Optimistic<T>(HeadPlan plan, AttentionHead<T> head, PlanningContext context) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        (plan.Cost with { LeafKeys = 0, TreeNodes = plan.Cost.TreeNodes / 4 }).Seconds(context.Settings.EffectiveRates, context.Threads);
}
