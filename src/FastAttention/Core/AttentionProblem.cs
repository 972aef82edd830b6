using System.Numerics;

namespace FastAttention;

/// <summary>
/// One attention problem (Alman–Song Def. 1.1/1.2, Gupta et al. Def. 1.1): Att(Q,K,V) = D⁻¹·exp(s·QKᵀ)·V with
/// D = diag(exp(s·QKᵀ)·1). Q is [heads, n, d], K is [heads, m, d], V is [heads, m, dv], all row-major contiguous;
/// heads = batch × heads of a [b, h, n, d] tensor. Immutable; shapes are validated at construction.
/// </summary>
/// <typeparam name="T">float or double.</typeparam>
public sealed class AttentionProblem<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    private double _qMax = double.NaN, _kMax = double.NaN, _vMax = double.NaN;

    /// <summary>
    /// Wraps Q, K, V (not copied: the memory must not change while the problem is in use) and validates them.
    /// </summary>
    /// <param name="q">Queries, [heads, n, d] row-major: element (h, i, c) at (h·n + i)·d + c.</param>
    /// <param name="k">Keys, [heads, m, d] row-major.</param>
    /// <param name="v">Values, [heads, m, dv] row-major.</param>
    /// <param name="n">Queries per head (rows of Q), ≥ 1.</param>
    /// <param name="m">Keys per head (rows of K and V), ≥ 1; n ≠ m is allowed.</param>
    /// <param name="d">Head dimension of Q and K, ≥ 1.</param>
    /// <param name="dv">Value dimension (columns of V and of the output), ≥ 1; dv ≠ d is allowed.</param>
    /// <param name="heads">Independent heads (batch × heads of a [b, h, n, d] tensor), ≥ 1.</param>
    /// <param name="scale">The logit scale s in exp(s·QKᵀ); null means 1/√d (PyTorch). Must be finite.</param>
    /// <param name="causal">PyTorch <c>is_causal</c>: query i attends to keys j ≤ i only.</param>
    /// <exception cref="ArgumentException">T is neither float nor double; a length does not match its shape; the scale
    /// is not finite; Q, K or V holds a NaN or an infinity (the message names the array and the flat index).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A dimension or <paramref name="heads"/> is below 1.</exception>
    public AttentionProblem(ReadOnlyMemory<T> q, ReadOnlyMemory<T> k, ReadOnlyMemory<T> v,
        int n, int m, int d, int dv, int heads = 1, double? scale = null, bool causal = false)
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            ThrowHelper.Argument(nameof(T), $"element type {typeof(T).Name} is not supported; use float or double.");
        if (heads < 1) ThrowHelper.ArgumentOutOfRange(nameof(heads), $"heads must be at least 1 (got {heads}).");
        if (n < 1) ThrowHelper.ArgumentOutOfRange(nameof(n), $"the number of queries n must be at least 1 (got {n}).");
        if (m < 1) ThrowHelper.ArgumentOutOfRange(nameof(m), $"the number of keys m must be at least 1 (got {m}).");
        if (d < 1) ThrowHelper.ArgumentOutOfRange(nameof(d), $"the head dimension d must be at least 1 (got {d}).");
        if (dv < 1) ThrowHelper.ArgumentOutOfRange(nameof(dv), $"the value dimension dv must be at least 1 (got {dv}).");
        CheckLength(nameof(q), q.Length, (long)heads * n * d, $"heads×n×d = {heads}×{n}×{d}");
        CheckLength(nameof(k), k.Length, (long)heads * m * d, $"heads×m×d = {heads}×{m}×{d}");
        CheckLength(nameof(v), v.Length, (long)heads * m * dv, $"heads×m×dv = {heads}×{m}×{dv}");
        double s = scale ?? 1.0 / Math.Sqrt(d);
        if (!double.IsFinite(s)) ThrowHelper.Argument(nameof(scale), $"the scale must be a finite number (got {s}).");
        CheckFinite(nameof(q), q.Span);
        CheckFinite(nameof(k), k.Span);
        CheckFinite(nameof(v), v.Span);
        Q = q; K = k; V = v; N = n; M = m; D = d; Dv = dv; Heads = heads; Scale = s; Causal = causal;
    }

    /// <summary>Queries, [heads, n, d].</summary>
    public ReadOnlyMemory<T> Q { get; }
    /// <summary>Keys, [heads, m, d].</summary>
    public ReadOnlyMemory<T> K { get; }
    /// <summary>Values, [heads, m, dv].</summary>
    public ReadOnlyMemory<T> V { get; }
    /// <summary>n: queries per head (rows of Q and of the output).</summary>
    public int N { get; }
    /// <summary>m: keys per head (rows of K and V).</summary>
    public int M { get; }
    /// <summary>d: the head dimension of queries and keys.</summary>
    public int D { get; }
    /// <summary>dv: the value dimension (columns of V and of the output).</summary>
    public int Dv { get; }
    /// <summary>Independent heads (batch × heads flattened); each is its own n×m attention.</summary>
    public int Heads { get; }
    /// <summary>The logit scale s: A = exp(s·QKᵀ). PyTorch's default is 1/√d, Alman–Song use 1/d, Gupta et al. 1.</summary>
    public double Scale { get; }
    /// <summary>PyTorch <c>is_causal</c>: query i attends to keys j ≤ i (top-left aligned).</summary>
    public bool Causal { get; }

    /// <summary>‖Q‖∞ = max |Q_ij| (measured, all heads).</summary>
    public double QMax => double.IsNaN(_qMax) ? _qMax = MaxAbs(Q.Span) : _qMax;
    /// <summary>‖K‖∞.</summary>
    public double KMax => double.IsNaN(_kMax) ? _kMax = MaxAbs(K.Span) : _kMax;
    /// <summary>‖V‖∞.</summary>
    public double VMax => double.IsNaN(_vMax) ? _vMax = MaxAbs(V.Span) : _vMax;
    /// <summary>The papers' entry bound B = max(‖Q‖∞, ‖K‖∞, ‖V‖∞), measured.</summary>
    public double EntryBound => Math.Max(QMax, Math.Max(KMax, VMax));

    /// <summary>Number of output elements, heads·n·dv.</summary>
    public long OutputLength => (long)Heads * N * Dv;

    /// <summary>A view of head h.</summary>
    public AttentionHead<T> Head(int h)
    {
        if ((uint)h >= (uint)Heads) ThrowHelper.ArgumentOutOfRange(nameof(h), $"head {h} is outside [0, {Heads}).");
        return new AttentionHead<T>(this, h);
    }

    /// <summary>The same problem with another scale or causal flag (the data is shared, not copied).</summary>
    public AttentionProblem<T> With(double? scale = null, bool? causal = null) =>
        new(Q, K, V, N, M, D, Dv, Heads, scale ?? Scale, causal ?? Causal);

    /// <summary>The same problem with other values (same shape); used for the exact power-of-two rescaling of V.</summary>
    internal AttentionProblem<T> WithValues(ReadOnlyMemory<T> v) => new(Q, K, v, N, M, D, Dv, Heads, Scale, Causal);

    private static void CheckLength(string name, int actual, long expected, string shape)
    {
        if (actual != expected)
            ThrowHelper.Argument(name, $"{name} has {actual} elements but the shape {shape} needs {expected}.");
    }

    private static void CheckFinite(string name, ReadOnlySpan<T> data)
    {
        for (int i = 0; i < data.Length; i++)
            if (!T.IsFinite(data[i]))
                ThrowHelper.Argument(name, $"{name} contains a non-finite value ({data[i]}) at flat index {i}.");
    }

    private static double MaxAbs(ReadOnlySpan<T> data) => Numerics.FloatingPoint.MaxAbs(data);
}

/// <summary>A view of one head of an <see cref="AttentionProblem{T}"/>: spans of Q (n×d), K (m×d), V (m×dv).</summary>
public readonly struct AttentionHead<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    internal AttentionHead(AttentionProblem<T> p, int h)
    {
        Problem = p; Index = h;
    }

    /// <summary>The problem this head belongs to.</summary>
    public AttentionProblem<T> Problem { get; }
    /// <summary>The head index h in [0, heads).</summary>
    public int Index { get; }
    /// <summary>n: queries.</summary>
    public int N => Problem.N;
    /// <summary>m: keys.</summary>
    public int M => Problem.M;
    /// <summary>d: head dimension.</summary>
    public int D => Problem.D;
    /// <summary>dv: value dimension.</summary>
    public int Dv => Problem.Dv;
    /// <summary>The logit scale s.</summary>
    public double Scale => Problem.Scale;
    /// <summary>True when query i sees keys j ≤ i only.</summary>
    public bool Causal => Problem.Causal;
    /// <summary>This head's queries, n×d row-major.</summary>
    public ReadOnlySpan<T> Q => Problem.Q.Span.Slice(Index * N * D, N * D);
    /// <summary>This head's keys, m×d row-major.</summary>
    public ReadOnlySpan<T> K => Problem.K.Span.Slice(Index * M * D, M * D);
    /// <summary>This head's values, m×dv row-major.</summary>
    public ReadOnlySpan<T> V => Problem.V.Span.Slice(Index * M * Dv, M * Dv);
    /// <summary><see cref="Q"/> as memory (for work that outlives a stack frame).</summary>
    public ReadOnlyMemory<T> QMemory => Problem.Q.Slice(Index * N * D, N * D);
    /// <summary><see cref="K"/> as memory.</summary>
    public ReadOnlyMemory<T> KMemory => Problem.K.Slice(Index * M * D, M * D);
    /// <summary><see cref="V"/> as memory.</summary>
    public ReadOnlyMemory<T> VMemory => Problem.V.Slice(Index * M * Dv, M * Dv);

    /// <summary>Number of keys query i may attend to: m, or min(i + 1, m) when causal.</summary>
    public int VisibleKeys(int i) => Causal ? Math.Min(i + 1, M) : M;

    /// <summary>Copies this head's Q, K, V to float64 arrays (approximate algorithms work in float64).</summary>
    public (double[] Q, double[] K, double[] V) ToDouble() => (Convert(Q), Convert(K), Convert(V));

    private static double[] Convert(ReadOnlySpan<T> s)
    {
        var r = new double[s.Length];
        for (int i = 0; i < s.Length; i++) r[i] = double.CreateTruncating(s[i]);
        return r;
    }
}
