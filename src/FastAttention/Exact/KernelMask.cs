using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace FastAttention.Exact;

/// <summary>
/// One head's mask as the exact kernels (forward and backward) see it, shared by both: the structural key interval of
/// each query row (key count, causal alignment, window), pointers to the boolean mask and bias rows, a per-(tile, key
/// block) classification (<see cref="Classify"/>) and a per-element epilogue (<see cref="Apply"/>) that only partly
/// visible blocks — or a bias — pay for. Hidden pairs are set to −∞ without reading their bias.
/// </summary>
internal unsafe struct KernelMask
{
    /// <summary>Queries and keys that exist (the key length, when given).</summary>
    public int N, M;
    /// <summary>Causal offset o (query i's diagonal is key i + o) and window w (0: none).</summary>
    public int Offset, Window;
    /// <summary>Causal or windowed: rows see a bounded prefix.</summary>
    public bool Upper;
    /// <summary>Boolean mask (null: none): element (i, j) at Visible[i·VisibleRow + j·VisibleCol].</summary>
    public bool* Visible;
    public int VisibleRow, VisibleCol;
    /// <summary>Additive bias (null: none): element (i, j) at Bias[i·BiasRow + j·BiasCol].</summary>
    public double* Bias;
    public int BiasRow, BiasCol;

    public readonly bool HasBias => Bias != null;

    /// <summary>The structural interval [lo, hi) of keys query i may see (empty when lo = hi).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly (int Lo, int Hi) Range(int i)
    {
        long diag = (long)i + Offset;
        int hi = Upper ? (int)Math.Clamp(diag + 1, 0, M) : M;
        int lo = Window > 0 ? (int)Math.Clamp(diag - Window + 1, 0, M) : 0;
        return (Math.Min(lo, hi), hi);
    }

    /// <summary>The key blocks [first, last] (width <paramref name="bc"/>) any of rows [i0, i0 + rows) may see; last &lt; first when none.</summary>
    public readonly (int First, int Last) BlockSpan(int i0, int rows, int bc)
    {
        int lo = Range(i0).Lo, hi = Range(i0 + rows - 1).Hi; // both ends are non-decreasing in i
        return hi <= lo ? (0, -1) : (lo / bc, (hi - 1) / bc);
    }

    /// <summary>Classifies key block [j0, j0 + bc) for query rows [i0, i0 + rows): keys past M count as hidden pairs.</summary>
    public readonly BlockVisibility Classify(int i0, int rows, int j0, int bc)
    {
        var (loFirst, hiFirst) = Range(i0);
        var (loLast, hiLast) = Range(i0 + rows - 1);
        if (j0 >= hiLast || j0 + bc <= loFirst) return BlockVisibility.Hidden;
        bool full = loLast <= j0 && j0 + bc <= hiFirst;
        if (Visible == null) return full ? BlockVisibility.Full : BlockVisibility.Partial;
        // The boolean mask decides among the pairs the structure leaves: all false → hidden, all true → as the structure says.
        bool any = false, all = true;
        int rowCount = VisibleRow == 0 ? 1 : rows;
        for (int r = 0; r < rowCount; r++)
        {
            var (lo, hi) = Range(i0 + r);
            int a = Math.Max(lo, j0), b = Math.Min(hi, j0 + bc);
            if (VisibleRow == 0) { a = Math.Max(loFirst, j0); b = Math.Min(hiLast, j0 + bc); }
            bool* row = Visible + (long)(i0 + r) * VisibleRow;
            if (VisibleCol == 0) { if (a < b) { if (row[0]) any = true; else all = false; } continue; }
            for (int j = a; j < b; j++) { if (row[j]) any = true; else all = false; }
            if (any && !all) return BlockVisibility.Partial;
        }
        if (!any) return BlockVisibility.Hidden;
        return full && all ? BlockVisibility.Full : BlockVisibility.Partial;
    }

    /// <summary>
    /// The per-element epilogue on logits (log₂ units) of <paramref name="rows"/> rows from query <paramref name="i0"/> and
    /// keys [j0, j0 + bc), row stride <paramref name="stride"/>: hidden pairs → −∞ (their bias never read), visible
    /// pairs += bias·log₂e. Rows at or past N are left as they are (their output is never written).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Apply<T>(T* s, int stride, int i0, int rows, int j0, int bc) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int r = 0; r < rows; r++)
        {
            int i = i0 + r;
            if (i >= N) break;
            T* sr = s + (long)r * stride;
            var (lo, hi) = Range(i);
            int a = Math.Clamp(lo - j0, 0, bc), b = Math.Clamp(hi - j0, 0, bc);
            for (int jj = 0; jj < a; jj++) sr[jj] = T.NegativeInfinity;
            for (int jj = Math.Max(a, b); jj < bc; jj++) sr[jj] = T.NegativeInfinity;
            if (Visible == null && Bias == null) continue; // structure only: the interval is all there is
            bool* vis = Visible == null ? null : Visible + (long)i * VisibleRow + (long)j0 * VisibleCol;
            double* bias = Bias == null ? null : Bias + (long)i * BiasRow + (long)j0 * BiasCol;
            for (int jj = a; jj < b; jj++)
            {
                if (vis != null && !vis[jj * VisibleCol]) sr[jj] = T.NegativeInfinity;
                else if (bias != null) sr[jj] += T.CreateTruncating(bias[jj * BiasCol] * 1.4426950408889634);
            }
        }
    }

    /// <summary>
    /// The kernel view of <paramref name="head"/>'s mask; the pins keep the boolean mask and bias in place until disposed.
    /// </summary>
    public static KernelMask Create<TIn>(AttentionHead<TIn> head, out MemoryHandle visiblePin, out MemoryHandle biasPin)
        where TIn : unmanaged, IBinaryFloatingPointIeee754<TIn>
    {
        var mask = head.Mask;
        var km = new KernelMask
        {
            N = head.N, M = head.M, Offset = head.CausalOffset, Window = mask.Window ?? 0, Upper = head.HasUpperBound,
        };
        visiblePin = default; biasPin = default;
        if (mask.BooleanMask is { } bm)
        {
            visiblePin = bm.Data.Pin();
            km.Visible = (bool*)visiblePin.Pointer + bm.RowOffset(head.BatchIndex, head.LocalIndex, 0);
            km.VisibleRow = bm.Shape[2] == 1 ? 0 : bm.Shape[3];
            km.VisibleCol = bm.ColumnStride;
        }
        if (mask.Bias is { } bt)
        {
            biasPin = bt.Data.Pin();
            km.Bias = (double*)biasPin.Pointer + bt.RowOffset(head.BatchIndex, head.LocalIndex, 0);
            km.BiasRow = bt.Shape[2] == 1 ? 0 : bt.Shape[3];
            km.BiasCol = bt.ColumnStride;
        }
        return km;
    }
}
