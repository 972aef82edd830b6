namespace FastAttention;

/// <summary>
/// What an algorithm promises about its output: ‖T − Att(Q,K,V)‖∞ ≤ <see cref="ErrorBound"/> (absolute, entrywise),
/// under float64 arithmetic, plus how it got there. Exact algorithms report 0 (exact up to rounding).
/// </summary>
public sealed record ErrorCertificate
{
    public required string Algorithm { get; init; }
    /// <summary>The requested ε (0 for exact algorithms).</summary>
    public double Epsilon { get; init; }
    /// <summary>The guaranteed bound on ‖T − Att‖∞; always ≤ Epsilon for approximate algorithms.</summary>
    public double ErrorBound { get; init; }
    public TimeSpan Elapsed { get; init; }
    public int Threads { get; init; }
    /// <summary>Parameters the algorithm chose (degree, rank, tile sizes, theory values ...), in a stable order.</summary>
    public IReadOnlyList<KeyValuePair<string, object>> Parameters { get; init; } = [];

    /// <summary>Looks up a parameter by name.</summary>
    public object? Parameter(string name)
    {
        foreach (var kv in Parameters) if (kv.Key == name) return kv.Value;
        return null;
    }
}

/// <summary>An algorithm's output (row-major [heads, n, dv]) and its certificate.</summary>
public sealed record AttentionResult<T>(T[] Output, ErrorCertificate Certificate) where T : unmanaged;

/// <summary>What one head's computation reports back to <see cref="AttentionAlgorithm"/>.</summary>
/// <param name="ErrorBound">The guaranteed ‖·‖∞ error of this head.</param>
/// <param name="Parameters">Parameters chosen for this head.</param>
public sealed record HeadReport(double ErrorBound, IReadOnlyList<KeyValuePair<string, object>> Parameters)
{
    public static HeadReport Exact { get; } = new(0, []);
}
