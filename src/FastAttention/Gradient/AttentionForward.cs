using System.Numerics;
using FastAttention.Exact;

namespace FastAttention.Gradient;

/// <summary>What the forward pass keeps for the backward pass (FlashAttention-2, Dao 2023, Alg. 1): the output O
/// ([heads, n, dv]) and the per-row log-sum-exp Lᵢ = log Σ_j exp(s·qᵢ·k_j) ([heads, n]); never the n×m matrix.</summary>
public sealed record AttentionForwardResult<T>(ReadOnlyMemory<T> Output, ReadOnlyMemory<T> LogSumExp) where T : unmanaged;

/// <summary>
/// The forward pass of the gradient module: the exact kernel (<see cref="FlashAttention"/>) with the per-row
/// log-sum-exp saved — one softmax kernel serves inference and training.
/// </summary>
public static class AttentionForward
{
    /// <summary>Runs the exact kernel on every head and keeps O and the per-row log-sum-exp for
    /// <see cref="AttentionBackward"/>. Exact up to floating-point rounding, as <see cref="FlashAttention"/>.</summary>
    /// <param name="problem">Q [heads, n, d], K [heads, m, d], V [heads, m, dv]; causal and scale as given.</param>
    /// <param name="threads">Threads to use; 0 means all processors.</param>
    /// <returns>O ([heads, n, dv]) and L ([heads, n]), row-major, in the element type of the problem.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="problem"/> is null.</exception>
    public static AttentionForwardResult<T> Compute<T>(AttentionProblem<T> problem, int threads = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        ArgumentNullException.ThrowIfNull(problem);
        var (output, lse) = new FlashAttention().ComputeWithLogSumExp(problem, threads);
        return new AttentionForwardResult<T>(output, lse);
    }
}
