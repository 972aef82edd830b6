using System.Numerics;

namespace FastAttention;

/// <summary>
/// One head's plan: the algorithm, its typed parameters, the planned error budget (named terms adding up to
/// <see cref="ErrorBound"/>), the counted work and the predicted seconds. Immutable; made by
/// <see cref="AttentionAlgorithm.TryPlan{T}"/>, executed by <see cref="AttentionPlan{T}.Execute(Span{T})"/>.
/// </summary>
public sealed class HeadPlan
{
    internal HeadPlan(int head, AttentionAlgorithm owner, string algorithm, AlgorithmParameters parameters, IReadOnlyList<ErrorTerm> budget,
        CostEstimate cost, double predictedSeconds, object? state, IReadOnlyList<PlanCandidate> candidates)
    {
        Head = head; Owner = owner; Algorithm = algorithm; Parameters = parameters; Budget = budget; Cost = cost;
        PredictedSeconds = predictedSeconds; State = state; Candidates = candidates;
        ErrorBound = ErrorTerms.Sum(budget);
    }

    /// <summary>The head index (batch × heads flattened).</summary>
    public int Head { get; }
    /// <summary>The algorithm that will compute this head (for <c>auto</c>: the one it chose).</summary>
    public string Algorithm { get; }
    /// <summary>The parameters chosen for this head.</summary>
    public AlgorithmParameters Parameters { get; }
    /// <summary>The planned error terms (the run recomputes them from what it measures).</summary>
    public IReadOnlyList<ErrorTerm> Budget { get; }
    /// <summary>The planned bound, Σ <see cref="Budget"/>.</summary>
    public double ErrorBound { get; }
    /// <summary>Counted work.</summary>
    public CostEstimate Cost { get; }
    /// <summary>Predicted seconds for this head on the threads it will get.</summary>
    public double PredictedSeconds { get; }
    /// <summary>The alternatives considered (filled by the planner; empty for a named algorithm).</summary>
    public IReadOnlyList<PlanCandidate> Candidates { get; }

    /// <summary>The algorithm object that executes the plan.</summary>
    internal AttentionAlgorithm Owner { get; }
    /// <summary>Whatever the algorithm prepared while planning (its parameter object, a built structure), reused by execution.</summary>
    internal object? State { get; }

    /// <summary>Returns what <see cref="State"/> holds in pooled memory (through the planner's wrapper to the chosen head's).</summary>
    internal void Release()
    {
        if (State is IDisposable d) d.Dispose();
        else if (State is HeadPlan chosen) chosen.Release();
    }
}

/// <summary>What executing one head reports back: the bound's terms recomputed from the run and the parameters
/// (with measured work counters).</summary>
/// <param name="Budget">Named error terms of the computed head.</param>
/// <param name="Parameters">Parameters, updated with what was measured.</param>
/// <param name="Algorithm">The algorithm that actually ran, when it differs from the plan's (a fallback).</param>
/// <param name="Note">A note for the certificate (e.g. why a fallback happened).</param>
public sealed record HeadExecution(IReadOnlyList<ErrorTerm> Budget, AlgorithmParameters Parameters, string? Algorithm = null, string? Note = null);

/// <summary>Planning inputs of one head.</summary>
/// <param name="Settings">The caller's settings.</param>
/// <param name="Epsilon">ε for this (possibly V-rescaled) problem; NaN for exact algorithms when none was given.</param>
/// <param name="Threads">Threads this head will run on.</param>
/// <param name="MeasureCost">When true, algorithms whose work depends on the data (range structures) build their
/// structure while planning (execution reuses it) and count the work of a sample of queries; the planner asks for this.</param>
public readonly record struct PlanningContext(AttentionSettings Settings, double Epsilon, int Threads, bool MeasureCost = false)
{
    /// <summary>Throws <see cref="OperationCanceledException"/> when the caller cancelled.</summary>
    public void ThrowIfCancelled() => Settings.Cancellation.ThrowIfCancellationRequested();
}

/// <summary>Execution inputs of one head.</summary>
/// <param name="Settings">The caller's settings.</param>
/// <param name="Epsilon">ε for this (possibly V-rescaled) problem; NaN when none was given.</param>
/// <param name="Threads">Threads this head may use.</param>
/// <param name="Progress">This head's progress sink (fraction of the head), or null.</param>
public readonly record struct ExecutionContext(AttentionSettings Settings, double Epsilon, int Threads, IProgress<double>? Progress)
{
    /// <summary>The cancellation token.</summary>
    public CancellationToken Cancellation => Settings.Cancellation;
    /// <summary>Throws <see cref="OperationCanceledException"/> when the caller cancelled.</summary>
    public void ThrowIfCancelled() => Settings.Cancellation.ThrowIfCancellationRequested();
    /// <summary>Reports this head's progress (fraction in [0, 1]).</summary>
    public void Report(double fraction) => Progress?.Report(Math.Clamp(fraction, 0, 1));
}

/// <summary>
/// An immutable plan for a whole problem: one <see cref="HeadPlan"/> per head (heads are planned independently, so a
/// model's heads may get different parameters — or, under <c>auto</c>, different algorithms). Execute it into a
/// caller's buffer to get the output and its <see cref="ErrorCertificate"/>. A plan may be executed more than once.
/// Dispose it when done: the structures its heads prepared (the range family's moments) live in pooled memory, which
/// <see cref="Dispose"/> hands to the next plan instead of leaving it to the garbage collector (a fresh array of that
/// size costs a page fault per 4 KiB page); an undisposed plan is collected as usual. <see cref="AttentionAlgorithm.Compute{T}(AttentionProblem{T}, AttentionSettings?)"/>
/// disposes the plan it makes.
/// </summary>
public sealed class AttentionPlan<T> : IDisposable where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    private int _disposed;

    internal AttentionPlan(AttentionAlgorithm algorithm, AttentionProblem<T> problem, AttentionProblem<T> planned, int valueExponent,
        AttentionSettings settings, IReadOnlyList<HeadPlan> heads, TimeSpan planningTime, IReadOnlyList<string> notes)
    {
        Algorithm = algorithm; Problem = problem; Planned = planned; ValueExponent = valueExponent; Settings = settings;
        Heads = heads; PlanningTime = planningTime; Notes = notes;
    }

    /// <summary>The algorithm that made the plan.</summary>
    public AttentionAlgorithm Algorithm { get; }
    /// <summary>The problem as given.</summary>
    public AttentionProblem<T> Problem { get; }
    /// <summary>The settings it was planned with.</summary>
    public AttentionSettings Settings { get; }
    /// <summary>One plan per head.</summary>
    public IReadOnlyList<HeadPlan> Heads { get; }
    /// <summary>Time spent planning.</summary>
    public TimeSpan PlanningTime { get; }
    /// <summary>Notes on what planning did beyond the request (threads clamped, V rescaled).</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>The problem the heads were planned on: <see cref="Problem"/>, or a copy with V scaled by 2^−<see cref="ValueExponent"/>.</summary>
    internal AttentionProblem<T> Planned { get; }
    /// <summary>V was divided by 2^ValueExponent (exactly) before planning; the output and bound are multiplied back.</summary>
    internal int ValueExponent { get; }

    /// <summary>The planned bound over all heads (in the units of the given V).</summary>
    public double ErrorBound => Heads.Count == 0 ? 0 : Heads.Max(h => h.ErrorBound) * Math.ScaleB(1, ValueExponent);

    /// <summary>Predicted execution seconds (heads run in parallel when there are at least as many heads as threads).</summary>
    public double PredictedSeconds
    {
        get
        {
            double sum = Heads.Sum(h => h.PredictedSeconds);
            int threads = Settings.EffectiveThreads;
            return Heads.Count >= threads && threads > 1 ? sum / threads : sum;
        }
    }

    /// <summary>Runs the plan into <paramref name="destination"/> ([heads, n, dv], row-major) and returns the certificate.</summary>
    /// <exception cref="ObjectDisposedException">The plan was disposed.</exception>
    public ErrorCertificate Execute(Span<T> destination)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return Algorithm.ExecutePlan(this, destination);
    }

    /// <summary>Returns the pooled memory of the heads' prepared structures. An execution in progress keeps what it
    /// reads until it ends; executing afterwards throws <see cref="ObjectDisposedException"/>. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var head in Heads) head.Release();
    }

    /// <summary>Runs the plan into a new array.</summary>
    public AttentionResult<T> Execute()
    {
        var output = new T[Problem.OutputLength];
        var certificate = Execute(output);
        return new AttentionResult<T>(output, certificate);
    }
}

/// <summary>The outcome of <see cref="AttentionAlgorithm.TryPlan{T}"/>: a plan, or a typed refusal.</summary>
public readonly struct PlanOutcome<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    internal PlanOutcome(AttentionPlan<T>? plan, Refusal? refusal) { Plan = plan; Refusal = refusal; }

    /// <summary>The plan, when one could be made.</summary>
    public AttentionPlan<T>? Plan { get; }
    /// <summary>Why no plan could be made (the first refused head's reason), when none could.</summary>
    public Refusal? Refusal { get; }
    /// <summary>True when <see cref="Plan"/> is set.</summary>
    public bool Succeeded => Plan is not null;

    /// <summary>The plan, or throws <see cref="AttentionRefusedException"/> with the refusal.</summary>
    public AttentionPlan<T> PlanOrThrow() => Plan ?? throw new AttentionRefusedException(Refusal!);
}
