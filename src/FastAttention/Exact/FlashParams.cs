using System.Numerics;
using System.Runtime.CompilerServices;

namespace FastAttention.Exact;

/// <summary>How a key block looks to a tile of query rows (the per-block mask hook of the exact kernel).</summary>
internal enum BlockVisibility
{
    /// <summary>No row of the tile sees any key of the block: the block is skipped, not computed.</summary>
    Hidden,
    /// <summary>Some (row, key) pairs are hidden: the block is computed and <see cref="FlashParams{T}.ApplyMask"/> sets them to −∞.</summary>
    Partial,
    /// <summary>Every row of the tile sees every key of the block: no mask work at all.</summary>
    Full,
}

/// <summary>
/// Everything the exact kernel reads, in the style of flash-attention's <c>Flash_fwd_params</c> (csrc/flash_attn/src/flash.h):
/// pointers, batch / head / row strides (in elements) for Q, K, V, O and the log-sum-exp, the dimensions, and the scale in
/// log₂ units. The kernel reads strided inputs in place: [b, h, n, d] (row stride d, head stride n·d) and [b, n, h, d]
/// (row stride h·d, head stride d) run without a transposing copy. Columns within a row are contiguous.
/// </summary>
/// <remarks>
/// Masks go through two hooks: <see cref="Classify"/> (a key block is hidden, partly or fully visible to a tile of rows; hidden
/// blocks are skipped) and <see cref="ApplyMask"/> (−∞ for the hidden logits of a partly visible block). Today's masks are the
/// keys that exist (j &lt; m) and the PyTorch <c>is_causal</c> mask (top-left: query i sees keys j ≤ i).
/// Output modes: normalised (O = softmax·V, optional Lse = log Σ exp) or, when <see cref="PartialSum"/> is set, the mergeable
/// partial state of <see cref="AttentionPartial{T}"/> (O = the unnormalised Σ exp(x − max)·v, Lse = the max, PartialSum = Σ exp(x − max)).
/// </remarks>
internal unsafe struct FlashParams<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public T* Q, K, V, O;
    /// <summary>Optional [b, h, n] (row stride 1): log Σⱼ exp(s·qᵢ·kⱼ) over visible keys, or the running max in partial mode.</summary>
    public T* Lse;
    /// <summary>Partial mode when non-null: receives Σⱼ exp(xᵢⱼ − maxᵢ) at the strides of <see cref="Lse"/>.</summary>
    public T* PartialSum;
    public long QBatchStride, QHeadStride, QRowStride;
    public long KBatchStride, KHeadStride, KRowStride;
    public long VBatchStride, VHeadStride, VRowStride;
    public long OBatchStride, OHeadStride, ORowStride;
    public long LseBatchStride, LseHeadStride;
    public int Batch, Heads, N, M, D, Dv;
    /// <summary>The logit scale s (A = exp(s·QKᵀ)).</summary>
    public double Scale;
    /// <summary>PyTorch <c>is_causal</c>, top-left aligned: query i sees keys j ≤ i.</summary>
    public bool Causal;

    /// <summary>s·log₂e: the kernel works in log₂ units, exp(s·x) = 2^(s·log₂e·x).</summary>
    public readonly double ScaleLog2 => Scale * 1.4426950408889634;

    /// <summary>True in partial mode (see <see cref="PartialSum"/>).</summary>
    public readonly bool WritesPartial => PartialSum != null;

    /// <summary>Contiguous [heads, n, d] / [heads, m, d] / [heads, m, dv] / [heads, n, dv] buffers (one batch).</summary>
    public static FlashParams<T> Contiguous(T* q, T* k, T* v, T* o, T* lse, int heads, int n, int m, int d, int dv, double scale, bool causal) => new()
    {
        Q = q, K = k, V = v, O = o, Lse = lse,
        Batch = 1, Heads = heads, N = n, M = m, D = d, Dv = dv, Scale = scale, Causal = causal,
        QRowStride = d, QHeadStride = (long)n * d, QBatchStride = (long)heads * n * d,
        KRowStride = d, KHeadStride = (long)m * d, KBatchStride = (long)heads * m * d,
        VRowStride = dv, VHeadStride = (long)m * dv, VBatchStride = (long)heads * m * dv,
        ORowStride = dv, OHeadStride = (long)n * dv, OBatchStride = (long)heads * n * dv,
        LseHeadStride = n, LseBatchStride = (long)heads * n,
    };

    /// <summary>The key/value head that query head <paramref name="h"/> reads (grouped-query attention maps several query heads to one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly int KeyHead(int h) => h;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* QRow(int b, int h, int i) => Q + b * QBatchStride + h * QHeadStride + i * QRowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* KRow(int b, int h, int j) => K + b * KBatchStride + KeyHead(h) * KHeadStride + j * KRowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* VRow(int b, int h, int j) => V + b * VBatchStride + KeyHead(h) * VHeadStride + j * VRowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* ORow(int b, int h, int i) => O + b * OBatchStride + h * OHeadStride + i * ORowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly long LseIndex(int b, int h, int i) => b * LseBatchStride + h * LseHeadStride + i;

    /// <summary>One past the last key query row <paramref name="i"/> may see (keys j &lt; this are visible).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly int VisibleEnd(int i) => Causal ? Math.Min(i + 1, M) : M;

    /// <summary>One past the last key any of the rows [i0, i1) sees: the key range a tile needs at all.</summary>
    public readonly int KeyExtent(int i0, int i1) => VisibleEnd(i1 - 1);

    /// <summary>The mask hook, block level: how keys [j0, j1) look to query rows [i0, i1) of batch b, head h.</summary>
    public readonly BlockVisibility Classify(int b, int h, int i0, int i1, int j0, int j1)
    {
        if (j0 >= KeyExtent(i0, i1)) return BlockVisibility.Hidden;
        return j1 <= VisibleEnd(i0) ? BlockVisibility.Full : BlockVisibility.Partial;
    }

    /// <summary>The mask hook, logit level: sets to −∞ the logits of row i that it must not see among keys
    /// [j0, j0 + count), stored at <paramref name="logits"/>[0..count).</summary>
    public readonly void ApplyMask(int b, int h, int i, int j0, int count, T* logits)
    {
        for (int jj = Math.Max(0, VisibleEnd(i) - j0); jj < count; jj++) logits[jj] = T.NegativeInfinity;
    }
}
