namespace FastAttention;

/// <summary>What the caller asks of an algorithm: the error budget and the threads it may use.</summary>
public sealed record AttentionSettings
{
    /// <summary>
    /// Target additive error ε: the output T must satisfy ‖T − Att(Q,K,V)‖∞ ≤ ε (entrywise, absolute).
    /// Ignored by exact algorithms. Must be positive for approximate ones.
    /// </summary>
    public double Epsilon { get; init; } = 1e-3;

    /// <summary>Threads to use; 0 means all processors.</summary>
    public int Threads { get; init; }

    /// <summary>Optional progress sink (fraction in [0, 1]); algorithms call it from any thread.</summary>
    public IProgress<double>? Progress { get; init; }

    /// <summary>Cancels a run (e.g. Ctrl-C in the CLI): algorithms stop with <see cref="OperationCanceledException"/>.</summary>
    public CancellationToken Cancellation { get; init; }

    /// <summary>The effective thread count.</summary>
    public int EffectiveThreads => Threads > 0 ? Threads : Environment.ProcessorCount;

    internal void Validate(bool needsEpsilon, string algorithm)
    {
        if (Threads < 0) ThrowHelper.ArgumentOutOfRange(nameof(Threads), $"threads must be 0 (all) or positive (got {Threads}).");
        if (needsEpsilon && !(Epsilon > 0 && double.IsFinite(Epsilon)))
            ThrowHelper.ArgumentOutOfRange(nameof(Epsilon), $"{algorithm} needs a positive finite epsilon (got {Epsilon}).");
    }
}
