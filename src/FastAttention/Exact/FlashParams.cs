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
/// blocks are skipped) and <see cref="ApplyMask"/> (−∞ for the hidden logits of a partly visible block, plus the bias). Both
/// delegate to the head's <see cref="KernelMask"/> (<see cref="MaskOf"/>), built from <see cref="Mask"/>: the keys that exist
/// (j &lt; m, m the call's key length), the causal diagonal in either alignment, the sliding window, the boolean mask and the
/// additive bias (a bias makes every visible block partly visible: the epilogue adds it). Grouped-query heads read their
/// K/V head through <see cref="KeyHead"/>.
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
    /// <summary>Causal: query i sees keys j ≤ i + o (o = 0 top-left, m − n bottom-right, see <see cref="MaskParams.BottomRight"/>).</summary>
    public bool Causal;
    /// <summary>The problem's mask and head mapping beyond <see cref="Causal"/> (default: none, one K/V head per query head).</summary>
    public MaskParams Mask;

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
    public readonly int KeyHead(int h) => Mask.Group <= 1 ? h : (Mask.HeadBase + h) / Mask.Group - Mask.HeadBase / Mask.Group;

    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* QRow(int b, int h, int i) => Q + b * QBatchStride + h * QHeadStride + i * QRowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* KRow(int b, int h, int j) => K + b * KBatchStride + KeyHead(h) * KHeadStride + j * KRowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* VRow(int b, int h, int j) => V + b * VBatchStride + KeyHead(h) * VHeadStride + j * VRowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly T* ORow(int b, int h, int i) => O + b * OBatchStride + h * OHeadStride + i * ORowStride;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public readonly long LseIndex(int b, int h, int i) => b * LseBatchStride + h * LseHeadStride + i;

    /// <summary>The structural mask (keys that exist, causal diagonal, window), the same for every head of the call.</summary>
    private readonly KernelMask Structure => new()
    {
        N = N, M = M, Offset = Mask.BottomRight ? M - N : 0, Window = Mask.Window, Upper = Causal || Mask.Window > 0,
    };

    /// <summary>Query head h of batch b's mask: the structure plus its boolean-mask and bias rows (broadcast strides 0).</summary>
    public readonly KernelMask MaskOf(int b, int h)
    {
        var km = Structure;
        if (Mask.Visible == null && Mask.Bias == null) return km;
        int flat = Mask.HeadBase + b * Heads + h, hpb = Math.Max(1, Mask.HeadsPerBatch);
        int bb = flat / hpb, hh = flat % hpb;
        if (Mask.Visible != null)
        {
            km.Visible = Mask.Visible + bb * Mask.VisibleBatch + hh * Mask.VisibleHead;
            km.VisibleRow = (int)Mask.VisibleRow; km.VisibleCol = (int)Mask.VisibleCol;
        }
        if (Mask.Bias != null)
        {
            km.Bias = Mask.Bias + bb * Mask.BiasBatch + hh * Mask.BiasHead;
            km.BiasRow = (int)Mask.BiasRow; km.BiasCol = (int)Mask.BiasCol;
        }
        return km;
    }

    /// <summary>First key any of the rows [i0, i1) sees (the window's start for the first row).</summary>
    public readonly int KeyStart(int i0, int i1) => Structure.Range(i0).Lo;

    /// <summary>One past the last key any of the rows [i0, i1) sees: the key range a tile needs at all.</summary>
    public readonly int KeyExtent(int i0, int i1) => Structure.Range(i1 - 1).Hi;

    /// <summary>The mask hook, block level: how keys [j0, j1) look to query rows [i0, i1) of batch b, head h. Under a bias
    /// every block that is not hidden is partly visible (the epilogue adds the bias).</summary>
    public readonly BlockVisibility Classify(int b, int h, int i0, int i1, int j0, int j1)
    {
        var vis = MaskOf(b, h).Classify(i0, i1 - i0, j0, j1 - j0);
        return vis == BlockVisibility.Full && Mask.Bias != null ? BlockVisibility.Partial : vis;
    }

    /// <summary>The mask hook, logit level (log₂ units): sets to −∞ the logits of row i that it must not see among keys
    /// [j0, j0 + count), stored at <paramref name="logits"/>[0..count), and adds the bias·log₂e to the others (reading the
    /// bias only there).</summary>
    public readonly void ApplyMask(int b, int h, int i, int j0, int count, T* logits) => MaskOf(b, h).Apply(logits, 0, i, 1, j0, count);
}

/// <summary>
/// What the kernel needs of an <see cref="AttentionMask"/> and of grouped-query heads, as raw pointers and strides (in
/// elements; 0 where a dimension broadcasts). Built by <see cref="Create{TIn}"/> for a call that runs query heads
/// [HeadBase, HeadBase + heads) of a problem; the boolean mask and bias must stay pinned while the kernel runs.
/// </summary>
internal unsafe struct MaskParams
{
    /// <summary>The problem's flat index of the call's head 0 (heads are batch × query heads flattened).</summary>
    public int HeadBase;
    /// <summary>Query heads per batch element (the h of [b, h, n, m]).</summary>
    public int HeadsPerBatch;
    /// <summary>Query heads per K/V head (0 or 1: multi-head attention).</summary>
    public int Group;
    /// <summary>Sliding window w (0: none).</summary>
    public int Window;
    /// <summary>The causal diagonal (and window) at the bottom-right corner: query i's diagonal is key i + m − n.</summary>
    public bool BottomRight;
    public bool* Visible;
    public long VisibleBatch, VisibleHead, VisibleRow, VisibleCol;
    public double* Bias;
    public long BiasBatch, BiasHead, BiasRow, BiasCol;

    /// <summary>The mask parameters of <paramref name="problem"/> for a call starting at query head <paramref name="headBase"/>,
    /// with the boolean mask and bias pinned (dispose the handles after the run).</summary>
    public static MaskParams Create<TIn>(AttentionProblem<TIn> problem, int headBase, out System.Buffers.MemoryHandle visiblePin, out System.Buffers.MemoryHandle biasPin)
        where TIn : unmanaged, IBinaryFloatingPointIeee754<TIn>
    {
        var mask = problem.Mask;
        var mp = new MaskParams
        {
            HeadBase = headBase, HeadsPerBatch = problem.HeadsPerBatch, Group = problem.GroupSize,
            Window = mask.Window ?? 0, BottomRight = mask.CausalAlignment == CausalAlignment.BottomRight,
        };
        visiblePin = default; biasPin = default;
        if (mask.BooleanMask is { } bm)
        {
            visiblePin = bm.Data.Pin();
            mp.Visible = (bool*)visiblePin.Pointer;
            (mp.VisibleBatch, mp.VisibleHead, mp.VisibleRow, mp.VisibleCol) = Strides(bm.Shape);
        }
        if (mask.Bias is { } bt)
        {
            biasPin = bt.Data.Pin();
            mp.Bias = (double*)biasPin.Pointer;
            (mp.BiasBatch, mp.BiasHead, mp.BiasRow, mp.BiasCol) = Strides(bt.Shape);
        }
        return mp;
    }

    /// <summary>Row-major strides of a 4-D broadcast shape, 0 where a dimension is 1.</summary>
    private static (long, long, long, long) Strides(IReadOnlyList<int> s) =>
        (s[0] == 1 ? 0 : (long)s[1] * s[2] * s[3], s[1] == 1 ? 0 : (long)s[2] * s[3], s[2] == 1 ? 0 : s[3], s[3] == 1 ? 0 : 1);
}
