namespace FastAttention;

/// <summary>
/// What the caller asks of an algorithm: the error ε, the threads it may use, cancellation, progress, and the machine
/// rates the planner turns counted work into predicted seconds with. Immutable.
/// </summary>
public sealed record AttentionSettings
{
    /// <summary>
    /// Target additive error ε: the output T must satisfy ‖T − Att(Q,K,V)‖∞ ≤ ε (entrywise, absolute). There is no
    /// default: approximate algorithms refuse (<see cref="RefusalReason.EpsilonMissing"/>) when it is null; exact
    /// algorithms ignore it.
    /// </summary>
    public double? Epsilon { get; init; }

    /// <summary>Threads to use; 0 means all processors. Values above the processor count are clamped (and the
    /// certificate says so).</summary>
    public int Threads { get; init; }

    /// <summary>Optional progress sink (fraction in [0, 1]); algorithms call it from any thread.</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>Cancels planning and execution; a cancelled call throws <see cref="OperationCanceledException"/> and
    /// leaves the destination's contents unspecified (the CLI writes nothing).</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>Machine rates for predicted seconds (see <see cref="MachineRates"/>); null = the built-in defaults.</summary>
    public MachineRates? Rates { get; init; }

    /// <summary>The effective thread count: <see cref="Threads"/> clamped to [1, processors], 0 = all processors.</summary>
    public int EffectiveThreads => Threads > 0 ? Math.Min(Threads, Environment.ProcessorCount) : Environment.ProcessorCount;

    /// <summary>True when <see cref="Threads"/> asked for more threads than the machine has.</summary>
    public bool ThreadsClamped => Threads > Environment.ProcessorCount;

    /// <summary>The rates in force: <see cref="Rates"/> or <see cref="MachineRates.Default"/>.</summary>
    public MachineRates EffectiveRates => Rates ?? MachineRates.Default;

    /// <summary>ε when it is a positive finite number; otherwise null.</summary>
    internal double? ValidEpsilon => Epsilon is double e && e > 0 && double.IsFinite(e) ? e : null;

    /// <summary>ε for an approximate algorithm that has already passed the base class's ε check.</summary>
    internal double RequiredEpsilon => ValidEpsilon ?? throw new InvalidOperationException("ε was not validated before planning; this is a bug.");

    internal void Validate()
    {
        if (Threads < 0) ThrowHelper.ArgumentOutOfRange(nameof(Threads), $"threads must be 0 (all) or positive (got {Threads}).");
    }
}
