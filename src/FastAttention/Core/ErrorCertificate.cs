namespace FastAttention;

/// <summary>
/// What an algorithm promises about its output: ‖T − Att(Q,K,V)‖∞ ≤ <see cref="ErrorBound"/> (absolute, entrywise,
/// over all heads), recomputed from what was measured during the run, plus how it got there: the named budget terms
/// of the worst head, per-head parameters and bounds, the alternatives the planner considered, predicted and actual
/// time. For exact algorithms the bound is their floating-point rounding bound.
/// </summary>
public sealed record ErrorCertificate
{
    /// <summary>The algorithm that was asked for ("auto" when the planner chose per head).</summary>
    public required string Algorithm { get; init; }
    /// <summary>The requested ε, or null when none was given (exact algorithms).</summary>
    public double? Epsilon { get; init; }
    /// <summary>The guaranteed bound on ‖T − Att‖∞ over all heads; ≤ <see cref="Epsilon"/> for approximate algorithms.</summary>
    public double ErrorBound { get; init; }
    /// <summary>The named terms of the worst head's bound (they add up to <see cref="ErrorBound"/>).</summary>
    public IReadOnlyList<ErrorTerm> Budget { get; init; } = [];
    /// <summary>Wall-clock time of the execution (planning excluded).</summary>
    public TimeSpan Elapsed { get; init; }
    /// <summary>Wall-clock time of planning (statistics, parameter choice, sampled cost measurements).</summary>
    public TimeSpan PlanningTime { get; init; }
    /// <summary>Predicted execution seconds (Σ over heads of the chosen plans' predictions, divided over the parallel heads).</summary>
    public double PredictedSeconds { get; init; }
    /// <summary>Threads used.</summary>
    public int Threads { get; init; }
    /// <summary>One entry per head: its algorithm, parameters, bound and the alternatives considered.</summary>
    public IReadOnlyList<HeadCertificate> Heads { get; init; } = [];
    /// <summary>What was done beyond the request (threads clamped, V rescaled, a head that fell back to exact, …).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    /// <summary>Head 0's parameters (the common case of a single head).</summary>
    public AlgorithmParameters? Parameters => Heads.Count > 0 ? Heads[0].Parameters : null;

    /// <summary>Head <paramref name="head"/>'s parameters as <typeparamref name="TParameters"/>; throws when that head
    /// ran another algorithm.</summary>
    public TParameters ParametersOf<TParameters>(int head = 0) where TParameters : AlgorithmParameters =>
        Heads[head].Parameters as TParameters ?? throw new InvalidOperationException(
            $"head {head} ran '{Heads[head].Algorithm}' with {Heads[head].Parameters.GetType().Name}, not {typeof(TParameters).Name}.");
}

/// <summary>The certificate of one head.</summary>
/// <param name="Head">The head index (batch × heads flattened).</param>
/// <param name="Algorithm">The algorithm that computed it.</param>
/// <param name="Parameters">Its typed parameters, including work counters measured during the run.</param>
/// <param name="Budget">Named error terms, recomputed after the run; they add up to <paramref name="ErrorBound"/>.</param>
/// <param name="ErrorBound">‖T_h − Att_h‖∞ bound.</param>
/// <param name="PredictedSeconds">The plan's prediction for this head.</param>
/// <param name="Candidates">The alternatives the planner considered for this head (empty for a named algorithm).</param>
public sealed record HeadCertificate(int Head, string Algorithm, AlgorithmParameters Parameters, IReadOnlyList<ErrorTerm> Budget,
    double ErrorBound, double PredictedSeconds, IReadOnlyList<PlanCandidate> Candidates);

/// <summary>One alternative the planner weighed for a head.</summary>
/// <param name="Algorithm">Its name.</param>
/// <param name="Refusal">Why it cannot certify ε here, or null when it can.</param>
/// <param name="PredictedSeconds">Its predicted time (NaN when refused before a cost could be counted).</param>
/// <param name="ErrorBound">Its planned bound (NaN when refused).</param>
public sealed record PlanCandidate(string Algorithm, Refusal? Refusal, double PredictedSeconds, double ErrorBound)
{
    /// <summary>True when the algorithm can certify ε on this head.</summary>
    public bool Certifiable => Refusal is null;
}

/// <summary>An algorithm's output (row-major [heads, n, dv]) and its certificate.</summary>
public sealed record AttentionResult<T>(T[] Output, ErrorCertificate Certificate) where T : unmanaged;
