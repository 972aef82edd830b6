using System.Diagnostics.CodeAnalysis;

namespace FastAttention;

/// <summary>Throw sites kept out of hot paths (the System.Numerics.Tensors pattern): callers stay small and inlinable.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    public static void Argument(string paramName, string message) => throw new ArgumentException(message, paramName);

    [DoesNotReturn]
    public static void ArgumentOutOfRange(string paramName, string message) => throw new ArgumentOutOfRangeException(paramName, message);

    [DoesNotReturn]
    public static void Refused(string algorithm, RefusalReason reason, string message, params string[] alternatives) =>
        throw new AttentionRefusedException(new Refusal(algorithm, reason, message, alternatives));

    [DoesNotReturn]
    public static void InvalidOperation(string message) => throw new InvalidOperationException(message);
}

/// <summary>
/// Thrown when an approximate algorithm cannot certify the requested error on this input
/// (budget exceeded, beyond float64's reach, ...). The message says why and what to use instead.
/// </summary>
public sealed class AttentionRefusedException(Refusal refusal) : Exception(refusal.ToString())
{
    /// <summary>Creates a refusal exception from its parts.</summary>
    public AttentionRefusedException(string algorithm, RefusalReason reason, string message)
        : this(new Refusal(algorithm, reason, message, [])) { }

    /// <summary>The typed refusal (algorithm, reason code, detail, alternatives).</summary>
    public Refusal Refusal { get; } = refusal;

    /// <summary>The algorithm that refused.</summary>
    public string Algorithm => Refusal.Algorithm;

    /// <summary>The reason code.</summary>
    public RefusalReason Reason => Refusal.Reason;
}
