namespace FastAttention;

/// <summary>Why an algorithm cannot serve a problem at the requested ε. Tools branch on this code, never on text.</summary>
public enum RefusalReason
{
    /// <summary>The head dimension is outside what the algorithm supports (e.g. d ≠ 1 for Algorithm 2, d &gt; 4 for range search).</summary>
    HeadDimension,
    /// <summary>The polynomial rank C(g + d, d) (or the numerical rank of Q, K) exceeds what pays off or fits.</summary>
    RankBudget,
    /// <summary>ε is below what float64 arithmetic can certify on this input.</summary>
    Float64Reach,
    /// <summary>ε is below the rounding of the output type (float32/float16 output).</summary>
    OutputPrecision,
    /// <summary>The entries (B or the logit range) are too large for the method at this ε.</summary>
    EntryRange,
    /// <summary>A causal mask (or this causal alignment) is not supported by the algorithm.</summary>
    CausalUnsupported,
    /// <summary>A boolean mask, additive bias or sliding window is not supported by the algorithm.</summary>
    MaskUnsupported,
    /// <summary>No ε was given to an approximate algorithm (there is no silent default).</summary>
    EpsilonMissing,
    /// <summary>ε is not a positive finite number, or not in the algorithm's admissible range.</summary>
    EpsilonInvalid,
    /// <summary>A numerical routine failed (e.g. an SVD did not converge) or produced a non-finite intermediate.</summary>
    NumericalFailure,
    /// <summary>The values (or intermediate sums) would overflow the floating-point range.</summary>
    Overflow,
    /// <summary>The predicted cost is no better than exact attention (e.g. the structure would do Θ(n·m) work).</summary>
    NotCheaperThanExact,
    /// <summary>The planner did not pursue it: even an optimistic count of its work is slower than a certified alternative.</summary>
    SlowerThanAlternative,
    /// <summary>Rounding measured during the run pushed the bound above ε (refused after execution).</summary>
    MeasuredRounding,
    /// <summary>The algorithm's input semantics do not match this problem (e.g. grouped K/V heads).</summary>
    Unsupported,
}

/// <summary>A typed refusal: which algorithm, why (a code), the full explanation, and what could serve instead.</summary>
/// <param name="Algorithm">The refusing algorithm's name.</param>
/// <param name="Reason">The reason code.</param>
/// <param name="Detail">The explanation in full, with the numbers that decided.</param>
/// <param name="Alternatives">Names of algorithms that could serve this problem instead (may be empty).</param>
/// <param name="Head">The head that was refused, or -1 when the refusal concerns the whole problem.</param>
public sealed record Refusal(string Algorithm, RefusalReason Reason, string Detail, IReadOnlyList<string> Alternatives, int Head = -1)
{
    /// <summary>One line: "algorithm: detail" (with the head when it is one head's refusal).</summary>
    public override string ToString() => Head >= 0 ? $"{Algorithm} (head {Head}): {Detail}" : $"{Algorithm}: {Detail}";
}
