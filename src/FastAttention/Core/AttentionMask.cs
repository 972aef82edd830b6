using System.Runtime.CompilerServices;

namespace FastAttention;

/// <summary>Where the causal diagonal sits when the number of queries n differs from the number of keys m.</summary>
public enum CausalAlignment
{
    /// <summary>Query i sees keys j ≤ i: PyTorch's <c>is_causal</c> (the diagonal starts at the top-left corner).</summary>
    TopLeft,
    /// <summary>Query i sees keys j ≤ i + m − n: the KV-cache convention of flash-attention ≥ 2.1 (the last query sees every key).</summary>
    BottomRight,
}

/// <summary>
/// An array broadcastable to [b, h, n, m] by NumPy's rules: its shape (rank 1 to 4) is right-aligned against
/// [b, h, n, m] and each of its dimensions is 1 (broadcast) or the full size. Row-major, immutable, never copied.
/// </summary>
public sealed class BroadcastTensor<TE> where TE : unmanaged
{
    private readonly int[] _shape;

    /// <summary>Wraps <paramref name="data"/> (row-major) with <paramref name="shape"/> (rank 1–4, entries ≥ 1).</summary>
    public BroadcastTensor(ReadOnlyMemory<TE> data, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Length is < 1 or > 4)
            ThrowHelper.Argument(nameof(shape), $"a broadcast shape has rank 1 to 4 (got rank {shape.Length}).");
        long count = 1;
        foreach (int s in shape)
        {
            if (s < 1) ThrowHelper.Argument(nameof(shape), $"broadcast shape ({string.Join(", ", shape)}) has an entry below 1.");
            count *= s;
        }
        if (count != data.Length)
            ThrowHelper.Argument(nameof(data), $"shape ({string.Join(", ", shape)}) has {count} elements but the data has {data.Length}.");
        _shape = new int[4];
        for (int i = 0; i < 4; i++) _shape[i] = i < 4 - shape.Length ? 1 : shape[i - (4 - shape.Length)];
        Data = data;
    }

    /// <summary>The elements, row-major over <see cref="Shape"/>.</summary>
    public ReadOnlyMemory<TE> Data { get; }

    /// <summary>The shape as 4-D [b or 1, h or 1, n or 1, m or 1] (leading 1s added to a lower-rank shape).</summary>
    public IReadOnlyList<int> Shape => _shape;

    /// <summary>"(b, h, n, m)" for messages.</summary>
    public string ShapeText => "(" + string.Join(", ", _shape) + ")";

    /// <summary>Flat index of element (b, h, i, 0) with broadcast dimensions read at 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int RowOffset(int b, int h, int i)
    {
        int bb = _shape[0] == 1 ? 0 : b, hh = _shape[1] == 1 ? 0 : h, ii = _shape[2] == 1 ? 0 : i;
        return ((bb * _shape[1] + hh) * _shape[2] + ii) * _shape[3];
    }

    /// <summary>Step between consecutive keys: 1, or 0 when the key dimension is broadcast.</summary>
    internal int ColumnStride => _shape[3] == 1 ? 0 : 1;

    /// <summary>True when the key dimension is broadcast (one value for every key).</summary>
    internal bool BroadcastsKeys => _shape[3] == 1;

    /// <summary>Throws naming both shapes unless this broadcasts to [b, h, n, m].</summary>
    internal void CheckBroadcastsTo(string name, int b, int h, int n, int m)
    {
        ReadOnlySpan<int> full = [b, h, n, m];
        for (int i = 0; i < 4; i++)
            if (_shape[i] != 1 && _shape[i] != full[i])
                ThrowHelper.Argument(name, $"{name} has shape {ShapeText}, which does not broadcast to [b, h, n, m] = ({b}, {h}, {n}, {m}).");
    }
}

/// <summary>
/// Which (query, key) pairs take part in attention and with what additive logit bias, as transformer models feed it
/// (PyTorch <c>scaled_dot_product_attention</c>, ONNX <c>Attention</c>, flash-attention). Immutable.
/// </summary>
/// <remarks>
/// Semantics, per batch element b and query head h, query i, key j:
/// <list type="bullet">
/// <item><see cref="KeyLengths"/> (padding): keys j ≥ len[b] do not exist — they are never read (their K, V rows may
/// hold anything, NaN included) and every alignment below is relative to m_b = len[b].</item>
/// <item>Causal (the problem's flag): query i sees keys j ≤ i + o, o = 0 (<see cref="CausalAlignment.TopLeft"/>) or
/// o = m_b − n (<see cref="CausalAlignment.BottomRight"/>).</item>
/// <item><see cref="Window"/> w (a sliding window, which implies the causal bound): i + o − w &lt; j ≤ i + o.</item>
/// <item><see cref="BooleanMask"/>: a pair takes part only where the mask is true (PyTorch and ONNX convention).</item>
/// <item><see cref="Bias"/>: added to the scaled logit, s·qᵢ·kⱼ + bias (ALiBi and relative-position biases); −∞ hides the
/// pair. Read only at pairs no other part of the mask hides, so NaN or ±∞ there never leak.</item>
/// </list>
/// A query row that sees no key gets an output row of zeros and a log-sum-exp of −∞ (PyTorch's convention), never NaN.
/// </remarks>
public sealed record AttentionMask
{
    /// <summary>No mask beyond the problem's causal flag.</summary>
    public static AttentionMask None { get; } = new();

    /// <summary>Per-batch key lengths len[b] (padding), [b]; empty = every key exists.</summary>
    public ReadOnlyMemory<int> KeyLengths { get; init; }

    /// <summary>Boolean mask broadcastable to [b, h, n, m]: true = the pair takes part; null = none.</summary>
    public BroadcastTensor<bool>? BooleanMask { get; init; }

    /// <summary>Additive logit bias broadcastable to [b, h, n, m]; null = none.</summary>
    public BroadcastTensor<double>? Bias { get; init; }

    /// <summary>Sliding window w ≥ 1: query i sees keys i + o − w &lt; j ≤ i + o; null = none.</summary>
    public int? Window { get; init; }

    /// <summary>Where the causal diagonal (and the window) sits when n ≠ m.</summary>
    public CausalAlignment CausalAlignment { get; init; }

    /// <summary>True when per-batch key lengths are given.</summary>
    public bool HasKeyLengths => !KeyLengths.IsEmpty;

    /// <summary>True when pairs are hidden or re-weighted individually (boolean mask, bias or window) — beyond which keys exist.</summary>
    public bool HasElementMask => BooleanMask is not null || Bias is not null || Window is not null;
}

/// <summary>
/// The visibility of one query row i of one head: the structural interval [Lo, Hi) of keys (key lengths, causal
/// alignment, window) and, inside it, the boolean mask and bias rows (stride 0 where the key dimension is broadcast).
/// </summary>
internal readonly ref struct RowMask
{
    public RowMask(int lo, int hi, ReadOnlySpan<bool> visible, int visibleStride, ReadOnlySpan<double> bias, int biasStride)
    {
        Lo = lo; Hi = hi; Visible = visible; VisibleStride = visibleStride; Bias = bias; BiasStride = biasStride;
    }

    /// <summary>First key of the structural interval.</summary>
    public int Lo { get; }
    /// <summary>One past the last key of the structural interval.</summary>
    public int Hi { get; }
    /// <summary>The boolean mask row (empty: none).</summary>
    public ReadOnlySpan<bool> Visible { get; }
    public int VisibleStride { get; }
    /// <summary>The bias row (empty: none).</summary>
    public ReadOnlySpan<double> Bias { get; }
    public int BiasStride { get; }

    /// <summary>Every key in [0, keys) visible, no bias.</summary>
    public static RowMask All(int keys) => new(0, keys, default, 0, default, 0);

    /// <summary>Whether key j takes part (j inside [Lo, Hi) and the boolean mask true there).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsVisible(int j) => j >= Lo && j < Hi && (Visible.IsEmpty || Visible[j * VisibleStride]);

    /// <summary>The bias at key j (0 without a bias); read only for visible keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public double BiasAt(int j) => Bias.IsEmpty ? 0 : Bias[j * BiasStride];
}
