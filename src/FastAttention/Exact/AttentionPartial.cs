using System.Numerics;

namespace FastAttention.Exact;

/// <summary>
/// The mergeable state of softmax attention over a subset of the keys, per query row i: the running maximum logit
/// mᵢ = max_j xᵢⱼ (xᵢⱼ = s·qᵢ·kⱼ, natural units), the sum ℓᵢ = Σⱼ exp(xᵢⱼ − mᵢ) and the unnormalised output
/// Õᵢ = Σⱼ exp(xᵢⱼ − mᵢ)·vⱼ, all over the keys seen so far.
/// </summary>
/// <remarks>
/// Two partials over disjoint key sets combine exactly as one online-softmax step does (FlashAttention-2; flash-decoding's
/// log-sum-exp merge): m = max(m₁, m₂), ℓ = e^(m₁−m)·ℓ₁ + e^(m₂−m)·ℓ₂, Õ = e^(m₁−m)·Õ₁ + e^(m₂−m)·Õ₂; attention over all
/// the keys is then Õ/ℓ with log-sum-exp m + log ℓ. The empty partial (m = −∞, ℓ = 0, Õ = 0) is the identity of the
/// merge, and merging it never produces NaN. The state is equally expressible as the log-sum-exp and the normalised output
/// (m = lse, ℓ = 1, Õ = O; see <see cref="FromNormalized"/>). Split-key decoding, ring attention across machines and a
/// KV cache appended block by block are partials plus merges. The exact kernel's split-key path merges with
/// <see cref="MergeRow"/>, the same arithmetic.
/// </remarks>
/// <typeparam name="T">float or double.</typeparam>
public sealed class AttentionPartial<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    private readonly T[] _max, _sum, _output;

    /// <summary>An empty partial of <paramref name="rows"/> rows and value width <paramref name="dv"/> (no keys seen:
    /// max −∞, sum 0, output 0).</summary>
    public AttentionPartial(int rows, int dv)
    {
        if (rows < 0) ThrowHelper.ArgumentOutOfRange(nameof(rows), $"rows must be non-negative (got {rows}).");
        if (dv < 1) ThrowHelper.ArgumentOutOfRange(nameof(dv), $"the value dimension dv must be at least 1 (got {dv}).");
        Rows = rows;
        Dv = dv;
        _max = new T[rows];
        Array.Fill(_max, T.NegativeInfinity);
        _sum = new T[rows];
        _output = new T[(long)rows * dv];
    }

    /// <summary>Query rows (for a whole problem: heads·n, row h·n + i).</summary>
    public int Rows { get; }

    /// <summary>Value dimension d_v.</summary>
    public int Dv { get; }

    /// <summary>Per row, the maximum logit mᵢ over the keys seen (natural units); −∞ when none.</summary>
    public Span<T> Max => _max;

    /// <summary>Per row, ℓᵢ = Σⱼ exp(xᵢⱼ − mᵢ) over the keys seen; 0 when none.</summary>
    public Span<T> Sum => _sum;

    /// <summary>Rows × d_v, row-major: Õᵢ = Σⱼ exp(xᵢⱼ − mᵢ)·vⱼ over the keys seen; 0 when none.</summary>
    public Span<T> Output => _output;

    /// <summary>True when row <paramref name="row"/> has seen no key (its max is −∞).</summary>
    public bool IsEmpty(int row) => T.IsNegativeInfinity(_max[row]);

    /// <summary>Folds <paramref name="other"/> (same rows and d_v, a disjoint key set) into this partial:
    /// this ← this ⊕ other, row by row as <see cref="MergeRow"/>.</summary>
    public void MergeFrom(AttentionPartial<T> other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (other.Rows != Rows || other.Dv != Dv)
            ThrowHelper.Argument(nameof(other), $"the partials have different shapes: {Rows}×{Dv} and {other.Rows}×{other.Dv}.");
        for (int r = 0; r < Rows; r++)
            MergeRow(ref _max[r], ref _sum[r], _output.AsSpan(r * Dv, Dv), other._max[r], other._sum[r], other._output.AsSpan(r * Dv, Dv));
    }

    /// <summary>a ⊕ b as a new partial (neither input changes). The merge is commutative and associative up to rounding.</summary>
    public static AttentionPartial<T> Merge(AttentionPartial<T> a, AttentionPartial<T> b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var result = a.Clone();
        result.MergeFrom(b);
        return result;
    }

    /// <summary>A copy of this partial.</summary>
    public AttentionPartial<T> Clone()
    {
        var c = new AttentionPartial<T>(Rows, Dv);
        _max.CopyTo(c._max, 0);
        _sum.CopyTo(c._sum, 0);
        _output.CopyTo(c._output, 0);
        return c;
    }

    /// <summary>
    /// The attention output Oᵢ = Õᵢ/ℓᵢ (rows × d_v) and, when <paramref name="logSumExp"/> is not empty, log Σⱼ exp(xᵢⱼ) = mᵢ + log ℓᵢ.
    /// A row that has seen no key gets an output row of zeros and a log-sum-exp of −∞ (PyTorch's convention), never NaN.
    /// </summary>
    public void Normalize(Span<T> output, Span<T> logSumExp = default)
    {
        if (output.Length != (long)Rows * Dv)
            ThrowHelper.Argument(nameof(output), $"output has {output.Length} elements; rows×dv = {Rows}×{Dv} needs {(long)Rows * Dv}.");
        if (!logSumExp.IsEmpty && logSumExp.Length != Rows)
            ThrowHelper.Argument(nameof(logSumExp), $"logSumExp has {logSumExp.Length} elements; there are {Rows} rows.");
        for (int r = 0; r < Rows; r++)
        {
            var o = output.Slice(r * Dv, Dv);
            var src = _output.AsSpan(r * Dv, Dv);
            if (IsEmpty(r) || _sum[r] == T.Zero)
            {
                o.Clear();
                if (!logSumExp.IsEmpty) logSumExp[r] = T.NegativeInfinity;
                continue;
            }
            T inv = T.One / _sum[r];
            for (int c = 0; c < Dv; c++) o[c] = src[c] * inv;
            if (!logSumExp.IsEmpty) logSumExp[r] = _max[r] + T.Log(_sum[r]);
        }
    }

    /// <summary>The partial of a finished result: m = log-sum-exp, ℓ = 1, Õ = the normalised output (a row with
    /// log-sum-exp −∞ is empty). Merging such partials combines attention results over disjoint key sets.</summary>
    public static AttentionPartial<T> FromNormalized(ReadOnlySpan<T> output, ReadOnlySpan<T> logSumExp, int dv)
    {
        if (dv < 1) ThrowHelper.ArgumentOutOfRange(nameof(dv), $"the value dimension dv must be at least 1 (got {dv}).");
        if (output.Length != (long)logSumExp.Length * dv)
            ThrowHelper.Argument(nameof(output), $"output has {output.Length} elements; {logSumExp.Length} rows × dv = {dv} need {(long)logSumExp.Length * dv}.");
        var p = new AttentionPartial<T>(logSumExp.Length, dv);
        for (int r = 0; r < logSumExp.Length; r++)
        {
            if (T.IsNaN(logSumExp[r]) || T.IsPositiveInfinity(logSumExp[r]))
                ThrowHelper.Argument(nameof(logSumExp), $"logSumExp[{r}] = {logSumExp[r]} is not a log-sum-exp (finite or −∞).");
            if (T.IsNegativeInfinity(logSumExp[r])) continue;
            p._max[r] = logSumExp[r];
            p._sum[r] = T.One;
            output.Slice(r * dv, dv).CopyTo(p._output.AsSpan(r * dv, dv));
        }
        return p;
    }

    /// <summary>
    /// One row of the merge (the online-softmax step): (m₁, ℓ₁, Õ₁) ← (m₁, ℓ₁, Õ₁) ⊕ (m₂, ℓ₂, Õ₂) with
    /// m = max(m₁, m₂), ℓ = e^(m₁−m)ℓ₁ + e^(m₂−m)ℓ₂, Õ = e^(m₁−m)Õ₁ + e^(m₂−m)Õ₂. An empty side (m = −∞) contributes
    /// nothing and is never subtracted (−∞ − −∞ would be NaN).
    /// </summary>
    public static void MergeRow(ref T max1, ref T sum1, Span<T> output1, T max2, T sum2, ReadOnlySpan<T> output2)
    {
        if (output1.Length != output2.Length)
            ThrowHelper.Argument(nameof(output2), $"the rows have different widths: {output1.Length} and {output2.Length}.");
        if (T.IsNegativeInfinity(max2)) return;             // other side empty: nothing to add
        if (T.IsNegativeInfinity(max1))                      // this side empty: take the other
        {
            max1 = max2; sum1 = sum2;
            output2.CopyTo(output1);
            return;
        }
        T m = T.Max(max1, max2);
        T a1 = T.Exp(max1 - m), a2 = T.Exp(max2 - m);
        sum1 = a1 * sum1 + a2 * sum2;
        for (int c = 0; c < output1.Length; c++) output1[c] = a1 * output1[c] + a2 * output2[c];
        max1 = m;
    }
}
