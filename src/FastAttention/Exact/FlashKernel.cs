using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace FastAttention.Exact;

/// <summary>Which loop nest of the exact kernel runs (see <see cref="FlashKernel{T,TV,TS}"/>).</summary>
internal enum FlashPath
{
    /// <summary>Prefill: query tiles × key blocks, packed Kᵀ and V panels, 6-row register blocks for S = Q·Kᵀ and O += P·V.</summary>
    General,
    /// <summary>d ≤ 4, d_v ≤ 4: the exp-bound loop; lanes run over keys, one pass per row computes logit, exp, sum and P·V in registers.</summary>
    SmallD,
    /// <summary>Decode (n ≤ <see cref="FlashKernel{T,TV,TS}.DecodeRows"/>): K and V rows read in place (no packing), keys split across threads.</summary>
    Decode,
}

/// <summary>Tuning knobs, for tests and experiments; 0 / null = chosen by <see cref="FlashKernel{T,TV,TS}.Plan"/>.</summary>
internal readonly record struct FlashTuning(FlashPath? Path = null, int QueryTile = 0, int KeyBlock = 0, int KeySplits = 0, bool? WideBlocks = null, bool? VPanels = null);

/// <summary>What the kernel chose for one run: path, SIMD lanes (of T), register blocking, tile sizes, key splits.</summary>
internal readonly record struct FlashPlan(FlashPath Path, int Lanes, bool Wide, int QueryTile, int KeyBlock, int KeySplits, int Tiles, int ElementBytes)
{
    /// <summary>Prefill: V packed as column panels (else V rows read in place, or packed as padded rows).</summary>
    public bool VPanels { get; init; }

    /// <summary>The kernel's extra memory, bytes (packed panels, per-thread tiles, split states; never n×m).</summary>
    public long WorkingBytes { get; init; }

    /// <summary>The vector width that ran, in bits (Lanes × element size).</summary>
    public int VectorBits => Lanes * ElementBytes * 8;

}

/// <summary>Parameters of the exact kernel for one head: what its plan chose and ran.</summary>
/// <param name="Kernel">"flash".</param>
/// <param name="Lanes">SIMD lanes of the element type (1 = scalar).</param>
/// <param name="VectorBits">The vector width that ran, in bits (lanes × element size).</param>
/// <param name="Path">"General" (prefill), "SmallD" (d ≤ 4, exp-bound) or "Decode" (n ≤ 16, keys split across threads).</param>
/// <param name="RegisterBlock">Rows × vectors of the register blocks ("6x2" for 16 vector registers, "6x4" for 32).</param>
/// <param name="QueryTile">Query rows per tile.</param>
/// <param name="KeyBlock">Keys per block.</param>
/// <param name="KeySplits">Key splits per (head, tile), merged as partial states (1 = none).</param>
/// <param name="WorkingBytes">The kernel's extra memory in bytes: packed panels, per-thread tiles and split states.</param>
public sealed record FlashParameters(string Kernel, int Lanes, int VectorBits, string Path, string RegisterBlock, int QueryTile, int KeyBlock, int KeySplits,
    long WorkingBytes) : AlgorithmParameters
{
    internal static FlashParameters Of(FlashPlan plan) =>
        new("flash", plan.Lanes, plan.VectorBits, plan.Path.ToString(), plan.Wide ? "6x4" : "6x2", plan.QueryTile, plan.KeyBlock, plan.KeySplits, plan.WorkingBytes);
}

/// <summary>
/// The exact attention kernel (FlashAttention-2 forward; flash-decoding for few queries), written once against
/// <see cref="ISimd{T,TV}"/> and run at the width <see cref="SimdDispatch"/> picks. It reads <see cref="FlashParams{T}"/>
/// (strided Q, K, V, O; no transposing copy) and never forms an n×m matrix.
/// </summary>
/// <remarks>
/// <para>Work items are (batch·head, query tile, key split), run in parallel with fixed ownership, so results are bitwise
/// reproducible for a given thread count. Heads fewer than threads are split inside: more query tiles, and when even those
/// are too few (decode), the keys are split and the per-split partial states merged in split order by
/// <see cref="AttentionPartial{T}.MergeRow"/>.</para>
/// <para>Online softmax in log₂ units (s·log₂e folded into the query copy), with lazy rescaling: a row's reference max is
/// moved only when a block's max exceeds it by more than <see cref="RescaleThreshold"/> (so exp₂ values stay ≤ 2⁸), which takes
/// the per-block rescale of the output accumulator and its scalar exp off the critical path; the result is exact either way.</para>
/// <para>Tile sizes come from the cache sizes (<see cref="CpuCaches"/>): key blocks so the block's packed Kᵀ and V panels fill a
/// quarter of L2 (read as sequential streams), query tiles so the tile's Q and accumulator fit half of L2, cut smaller when
/// there would be fewer than 8 tiles per thread. Packing (Kᵀ panels and V column panels, once per head) runs in parallel
/// before the tiles.</para>
/// <para>Per key block the mask hook (<see cref="FlashParams{T}.Classify"/>) says hidden (skipped), partly visible
/// (<see cref="FlashParams{T}.ApplyMask"/> writes −∞) or fully visible (no mask work).</para>
/// </remarks>
internal static unsafe class FlashKernel<T, TV, TS>
    where T : unmanaged, IBinaryFloatingPointIeee754<T>
    where TV : unmanaged
    where TS : struct, ISimd<T, TV>
{
    /// <summary>Query rows per register block (6 rows × 2 vectors = 12 accumulators for 16 registers, × 4 vectors = 24 for 32).</summary>
    public const int MicroRows = 6;
    /// <summary>At most this many queries per head take the decode path.</summary>
    public const int DecodeRows = 16;
    /// <summary>Lazy rescaling: the reference max moves only when a block max exceeds it by more than this (log₂ units).</summary>
    public const int RescaleThreshold = 8;
    private const long PackBudgetBytes = 64L << 20;

    /// <summary>Chooses path, tiles and splits for this problem and thread count.</summary>
    public static FlashPlan Plan(in FlashParams<T> p, int threads, FlashTuning tuning)
    {
        int w = TS.Count, size = sizeof(T);
        bool wide = tuning.WideBlocks ?? SimdInfo.VectorRegisters >= 32;
        int panel = (wide ? 4 : 2) * w;
        int dvPad = RoundUp(p.Dv, w);
        int heads = p.Batch * p.Heads;
        threads = Math.Max(1, threads);
        var path = tuning.Path ?? (p.N <= DecodeRows ? FlashPath.Decode : p.D <= 4 && p.Dv <= 4 ? FlashPath.SmallD : FlashPath.General);
        if (path == FlashPath.Decode && p.N > DecodeRows) path = FlashPath.General;
        if (path == FlashPath.SmallD && (p.D > 4 || p.Dv > 4)) path = FlashPath.General;
        int bc, br;
        switch (path)
        {
            case FlashPath.General:
                // Key blocks whose Kᵀ and V panels fill a quarter of L2: both are read as sequential streams (prefetched), so
                // they need not fit L1, and longer blocks amortise the per-block softmax and accumulator updates (measured
                // on Zen 3, d = 32…128: 5–16 % faster than L1-sized blocks).
                bc = tuning.KeyBlock > 0 ? RoundUp(tuning.KeyBlock, panel)
                    : Math.Clamp((int)(CpuCaches.L2 / 4 / ((p.D + dvPad) * (long)size)) / panel * panel, panel, 512);
                br = (int)Math.Clamp(CpuCaches.L2 / 2 / ((p.D + dvPad) * (long)size), MicroRows, 384) / MicroRows * MicroRows;
                br = tuning.QueryTile > 0 ? RoundUp(tuning.QueryTile, MicroRows) : ForParallelism(br, p.N, heads, threads, MicroRows);
                // A sliding window: a tile of br rows sees br + w − 1 keys, so tiles of about w/4 keep the work near n·w.
                if (tuning.QueryTile <= 0 && p.Mask.Window > 0) br = Math.Min(br, RoundUp(Math.Max(p.Mask.Window / 4, 2 * MicroRows), MicroRows));
                break;
            case FlashPath.SmallD:
                bc = tuning.KeyBlock > 0 ? RoundUp(tuning.KeyBlock, w)
                    : Math.Clamp((int)(CpuCaches.L1Data / 2 / ((p.D + p.Dv) * (long)size)) / w * w, w, 1024);
                br = tuning.QueryTile > 0 ? tuning.QueryTile : ForParallelism(256, p.N, heads, threads, 1);
                break;
            default:
                bc = tuning.KeyBlock > 0 ? RoundUp(tuning.KeyBlock, w) : RoundUp(128, w);
                br = p.N;
                break;
        }
        int tiles = (p.N + br - 1) / br;
        long items = (long)heads * tiles;
        int blocks = (p.M + bc - 1) / bc;
        // Too few (head, tile) items for the threads: split the keys, 4 splits per thread so an unevenly loaded machine
        // still balances (each split costs one merge of its rows).
        int splits = tuning.KeySplits > 0 ? tuning.KeySplits
            : items >= threads ? 1 : (int)Math.Min(Math.Min(64, (4L * threads + items - 1) / items), Math.Max(1, blocks / 4));
        splits = Math.Clamp(splits, 1, blocks);
        bool vPanels = path == FlashPath.General && (tuning.VPanels ?? UsesVPanels(p, panel, dvPad));
        return new FlashPlan(path, w, wide, br, bc, splits, tiles, size)
        {
            VPanels = vPanels, WorkingBytes = WorkingBytes(p, path, w, wide, vPanels, br, bc, splits, tiles, threads),
        };
    }

    /// <summary>The kernel's extra memory for this plan, in bytes: packed panels of one head group, per-thread tiles and the
    /// key-split states (what <see cref="Work"/> and <see cref="Scratch"/> take from the pool).</summary>
    private static long WorkingBytes(in FlashParams<T> p, FlashPath path, int w, bool wide, bool vPanels, int br, int bc, int splits, int tiles, int threads)
    {
        int panel = (wide ? 4 : 2) * w, dvPad = RoundUp(p.Dv, w), heads = p.Batch * p.Heads, blocks = (p.M + bc - 1) / bc;
        long perHead = path switch
        {
            FlashPath.General => (long)RoundUp(p.M, panel) * p.D
                + (vPanels || p.Dv != dvPad || p.VRowStride != p.Dv ? (long)RoundUp(p.M, panel) * dvPad : 0),
            FlashPath.SmallD => (long)blocks * bc * (p.D + p.Dv),
            _ => 0,
        };
        long group = perHead == 0 ? heads : Math.Clamp(PackBudgetBytes / (perHead * sizeof(T)), 1, heads);
        int rowsPad = RoundUp(br, MicroRows);
        int accWidth = path == FlashPath.SmallD ? (1 + p.Dv) * w : dvPad;
        long scratch = rowsPad * (long)p.D + 2L * (Math.Max(MicroRows, path == FlashPath.Decode ? rowsPad : 1) * (long)bc + w)
            + rowsPad * (long)Math.Max(accWidth, dvPad) + 2L * rowsPad + 6 * 64;
        long workers = Math.Min(Math.Max(1, threads), group * tiles * splits);
        long splitStates = splits > 1 ? group * tiles * splits * br * (2L + dvPad) : 0;
        return sizeof(T) * (group * perHead + workers * scratch + splitStates);
    }

    /// <summary>True when the prefill path packs V as column panels: one head's packed Kᵀ and V within 3/4 of the packing budget.</summary>
    private static bool UsesVPanels(in FlashParams<T> p, int panel, int dvPad) =>
        (long)RoundUp(p.M, panel) * (p.D + dvPad) * sizeof(T) <= PackBudgetBytes / 4 * 3;

    /// <summary>Query tile rows: <paramref name="cacheRows"/>, cut so that there are at least 8 tiles per thread where n allows
    /// (a shared or unevenly loaded machine then still keeps every thread busy to the end).</summary>
    private static int ForParallelism(int cacheRows, int n, int heads, int threads, int multiple)
    {
        long wanted = 8L * threads;
        long perHead = (wanted + heads - 1) / heads;
        int rows = Math.Min(cacheRows, RoundUp((int)((n + perHead - 1) / perHead), multiple));
        return Math.Max(Math.Max(multiple, 2 * MicroRows / multiple * multiple), rows);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int RoundUp(int x, int to) => (x + to - 1) / to * to;

    /// <summary>Runs the kernel on <paramref name="p"/> with up to <paramref name="threads"/> threads; returns the plan it ran.</summary>
    public static FlashPlan Run(in FlashParams<T> p, int threads, FlashTuning tuning)
    {
        var plan = Plan(p, threads, tuning);
        using var work = new Work(p, plan);
        int heads = p.Batch * p.Heads;
        int group = work.HeadsPerGroup(heads);
        for (int g0 = 0; g0 < heads; g0 += group)
        {
            int g = Math.Min(group, heads - g0);
            work.BeginGroup(g0, g);
            For(work.PackItems, threads, () => (object?)null, (i, _) => work.Pack(i));
            For((long)g * plan.Tiles * plan.KeySplits, threads, () => new Scratch(work), (i, s) => work.Process(i, s));
            if (plan.KeySplits > 1) For((long)g * plan.Tiles, threads, () => (object?)null, (i, _) => work.MergeSplits(i));
        }
        return plan;
    }

    private static void For<TLocal>(long count, int threads, Func<TLocal> init, Action<long, TLocal> body)
    {
        if (count <= 0) return;
        if (threads <= 1 || count == 1)
        {
            var local = init();
            try { for (long i = 0; i < count; i++) body(i, local); }
            finally { (local as IDisposable)?.Dispose(); }
            return;
        }
        Parallel.For(0L, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, init,
            (i, _, local) => { body(i, local); return local; }, local => (local as IDisposable)?.Dispose());
    }

    /// <summary>Per-worker tiles: the scaled query tile, the logit and probability strips, the output accumulator and row
    /// statistics (pooled, cache-line aligned).</summary>
    private sealed class Scratch : IDisposable
    {
        public readonly T* Qs, S, P, Acc, Ref, Sum;
        private readonly KernelBuffer<T> _buffer;

        public Scratch(Work x)
        {
            int rows = x.RowsPad, w = TS.Count;
            long qs = RoundUp(rows * x.P.D, 64), s = RoundUp(Math.Max(MicroRows, x.Path == FlashPath.Decode ? rows : 1) * x.Bc + w, 64);
            int accWidth = x.Path == FlashPath.SmallD ? (1 + x.P.Dv) * w : x.DvPad;
            long acc = RoundUp(rows * Math.Max(accWidth, x.DvPad) + w, 64), row = RoundUp(rows, 64);
            _buffer = new KernelBuffer<T>(qs + 2 * s + acc + 2 * row, clear: true);
            T* b = _buffer.Pointer;
            Qs = b; S = Qs + qs; P = S + s; Acc = P + s; Ref = Acc + acc; Sum = Ref + row;
        }

        public void Dispose() => _buffer.Dispose();
    }

    private static long RoundUp(long x, int to) => (x + to - 1) / to * to;

    /// <summary>One run's shared state: parameters, plan, packed panels of the current head group, split partials.</summary>
    private sealed class Work : IDisposable
    {
        public readonly FlashParams<T> P;
        public readonly FlashPath Path;
        public readonly int Br, Bc, Splits, Tiles, Panel, DvPad, RowsPad, MPad, Blocks;
        public readonly bool Wide, PackV, VPanels;
        public readonly T QScale;
        private readonly long _ktHead, _vHead;
        private KernelBuffer<T>? _kt, _vp, _splits;
        private T* _ktPtr, _vpPtr, _smPtr, _ssPtr, _saPtr;
        private int _g0, _groupHeads;

        public Work(in FlashParams<T> p, FlashPlan plan)
        {
            P = p;
            Path = plan.Path; Br = plan.QueryTile; Bc = plan.KeyBlock; Splits = plan.KeySplits; Tiles = plan.Tiles; Wide = plan.Wide;
            int w = TS.Count;
            Panel = (Wide ? 4 : 2) * w;
            DvPad = RoundUp(p.Dv, w);
            RowsPad = RoundUp(Br, MicroRows);
            Blocks = (p.M + Bc - 1) / Bc;
            QScale = T.CreateTruncating(p.ScaleLog2);
            switch (Path)
            {
                case FlashPath.General:
                    MPad = RoundUp(p.M, Panel);
                    _ktHead = (long)MPad * p.D;
                    // V is packed as column panels (VPanel), once per head like Kᵀ: P·V then reads one contiguous stream
                    // per column block instead of V rows d_v apart (or h·d_v apart in an interleaved [b, n, h, d] layout).
                    // When one head's packed Kᵀ and V would pass 3/4 of the packing budget (float64, m ≳ 50 000 at d = 64),
                    // V rows are read in place instead, packed (padded rows) only when not contiguous whole vectors.
                    VPanels = plan.VPanels;
                    PackV = VPanels || p.Dv != DvPad || p.VRowStride != p.Dv;
                    _vHead = PackV ? (long)MPad * DvPad : 0;
                    break;
                case FlashPath.SmallD:
                    MPad = Blocks * Bc;
                    _ktHead = (long)MPad * p.D;
                    _vHead = (long)MPad * p.Dv;
                    break;
                default:
                    MPad = p.M;
                    break;
            }
        }

        /// <summary>Heads whose packed panels fit the packing budget together (at least one).</summary>
        public int HeadsPerGroup(int heads)
        {
            long perHead = (_ktHead + _vHead) * sizeof(T);
            if (perHead == 0) return heads;
            return (int)Math.Clamp(PackBudgetBytes / perHead, 1, heads);
        }

        public void Dispose()
        {
            _kt?.Dispose(); _vp?.Dispose(); _splits?.Dispose();
        }

        public long PackItems { get; private set; }
        private int PackChunk => Path == FlashPath.SmallD ? Bc : HeadsInterleaved ? Panel * 2 : Panel * 16;

        public void BeginGroup(int g0, int heads)
        {
            _g0 = g0; _groupHeads = heads;
            long ktLen = _ktHead * heads, vLen = _vHead * heads;
            if (ktLen > 0 && (_kt is null || _kt.Length < ktLen)) { _kt?.Dispose(); _kt = new KernelBuffer<T>(ktLen); _ktPtr = _kt.Pointer; }
            if (vLen > 0 && (_vp is null || _vp.Length < vLen)) { _vp?.Dispose(); _vp = new KernelBuffer<T>(vLen); _vpPtr = _vp.Pointer; }
            int chunks = (MPad + PackChunk - 1) / PackChunk;
            PackItems = _ktHead == 0 ? 0 : HeadsInterleaved ? chunks : (long)heads * chunks;
            if (Splits > 1)
            {
                long rows = (long)heads * Tiles * Splits * Br;
                if (_splits is null || _splits.Length < rows * (2 + DvPad))
                {
                    _splits?.Dispose();
                    _splits = new KernelBuffer<T>(rows * (2 + DvPad));
                    _smPtr = _splits.Pointer; _ssPtr = _smPtr + rows; _saPtr = _ssPtr + rows;
                }
            }
        }

        private (int B, int H) HeadOf(int groupIndex)
        {
            int bh = _g0 + groupIndex;
            return (bh / P.Heads, bh % P.Heads);
        }

        /// <summary>True when a key row's heads lie closer together than its rows ([b, n, h, d]): packing then walks rows
        /// with all heads inner, so memory is read in order (row by row across heads, not 2·h·d-byte strides per head,
        /// which defeat the hardware prefetcher).</summary>
        private bool HeadsInterleaved => P.Heads > 1 && P.KHeadStride < P.KRowStride;

        /// <summary>Packs one item: a chunk of keys of one head, or with interleaved heads a chunk of keys of every head.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Pack(long item)
        {
            int chunks = (MPad + PackChunk - 1) / PackChunk;
            if (HeadsInterleaved)
            {
                int j0 = (int)item * PackChunk, j1 = Math.Min(MPad, j0 + PackChunk);
                for (int j = j0; j < j1; j++)
                    for (int gh = 0; gh < _groupHeads; gh++) PackRow(gh, j);
            }
            else
            {
                int gh = (int)(item / chunks), j0 = (int)(item % chunks) * PackChunk, j1 = Math.Min(MPad, j0 + PackChunk);
                for (int j = j0; j < j1; j++) PackRow(gh, j);
            }
        }

        /// <summary>Packs key j of head <paramref name="gh"/>: its Kᵀ panel column (and V row when padded or strided;
        /// SmallD: Kᵀ and Vᵀ columns). Keys past m are zero.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private void PackRow(int gh, int j)
        {
            var (b, h) = HeadOf(gh);
            int d = P.D, dv = P.Dv;
            bool real = j < P.M;
            if (Path == FlashPath.General)
            {
                T* dst = _ktPtr + gh * _ktHead + (long)(j / Panel) * d * Panel + j % Panel;
                if (real) { T* src = P.KRow(b, h, j); for (int c = 0; c < d; c++) dst[c * Panel] = src[c]; }
                else for (int c = 0; c < d; c++) dst[c * Panel] = T.Zero;
                if (VPanels)
                {
                    // V as column panels (see VPanel): row j of the panel starting at column x0 lies at MPad·x0 + j·width.
                    T* vsrc = real ? P.VRow(b, h, j) : null, vhead = _vpPtr + gh * _vHead;
                    for (int x0 = 0; x0 < DvPad;)
                    {
                        int cw = VPanel(x0);
                        T* vdst = vhead + (long)MPad * x0 + (long)j * cw;
                        for (int c = 0; c < cw; c++) vdst[c] = real && x0 + c < dv ? vsrc[x0 + c] : T.Zero;
                        x0 += cw;
                    }
                }
                else if (PackV)
                {
                    T* vdst = _vpPtr + gh * _vHead + (long)j * DvPad;
                    if (real) { T* src = P.VRow(b, h, j); for (int c = 0; c < dv; c++) vdst[c] = src[c]; }
                    else for (int c = 0; c < dv; c++) vdst[c] = T.Zero;
                    for (int c = dv; c < DvPad; c++) vdst[c] = T.Zero;
                }
                return;
            }
            // SmallD: Kᵀ as d rows of MPad keys, Vᵀ as d_v rows of MPad keys (zero past m).
            T* kt = _ktPtr + gh * _ktHead, vt = _vpPtr + gh * _vHead;
            if (real)
            {
                T* k = P.KRow(b, h, j), v = P.VRow(b, h, j);
                for (int c = 0; c < d; c++) kt[(long)c * MPad + j] = k[c];
                for (int c = 0; c < dv; c++) vt[(long)c * MPad + j] = v[c];
            }
            else
            {
                for (int c = 0; c < d; c++) kt[(long)c * MPad + j] = T.Zero;
                for (int c = 0; c < dv; c++) vt[(long)c * MPad + j] = T.Zero;
            }
        }

        /// <summary>The width of V's column panel starting at column <paramref name="x0"/>: the column blocks of
        /// <see cref="RegisterBlocks{T,TV,TS}.Accumulate6"/> (4W while wide blocks fill, then 2W, then W), so the packed P·V
        /// runs the same register blocks in the same order as on V rows in place (bitwise the same result).</summary>
        private int VPanel(int x0)
        {
            int w = TS.Count, wideEnd = Wide ? DvPad / (4 * w) * 4 * w : 0;
            if (x0 < wideEnd) return 4 * w;
            return x0 < wideEnd + (DvPad - wideEnd) / (2 * w) * 2 * w ? 2 * w : w;
        }

        /// <summary>One work item: (head in group, query tile, key split). Causal tiles run last-first (they are the largest).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Process(long item, Scratch sc)
        {
            int split = (int)(item % Splits);
            long rest = item / Splits;
            int tile = (int)(rest % Tiles), gh = (int)(rest / Tiles);
            if (P.Causal) tile = Tiles - 1 - tile;
            var (b, h) = HeadOf(gh);
            int i0 = tile * Br, rows = Math.Min(Br, P.N - i0);
            // This split's share of the key blocks the tile can see.
            // A window hides the blocks before the first row's start: they are not even visited.
            int firstBlock = P.KeyStart(i0, i0 + rows) / Bc;
            int visibleBlocks = Math.Max(firstBlock, (P.KeyExtent(i0, i0 + rows) + Bc - 1) / Bc) - firstBlock;
            int blk0 = firstBlock + (int)((long)visibleBlocks * split / Splits), blk1 = firstBlock + (int)((long)visibleBlocks * (split + 1) / Splits);
            int rowsPad = Path == FlashPath.SmallD ? rows : RoundUp(rows, MicroRows);
            ScaleQueries(b, h, i0, rows, rowsPad, sc.Qs);
            for (int r = 0; r < rowsPad; r++) { sc.Ref[r] = T.NegativeInfinity; sc.Sum[r] = T.Zero; }
            int accWidth = Path == FlashPath.SmallD ? (1 + P.Dv) * TS.Count : DvPad;
            new Span<T>(sc.Acc, rowsPad * accWidth).Clear();
            switch (Path)
            {
                case FlashPath.General: General(gh, b, h, i0, rows, blk0, blk1, sc); break;
                case FlashPath.SmallD: SmallD(gh, b, h, i0, rows, blk0, blk1, sc); break;
                default: Decode(b, h, rows, blk0, blk1, sc); break;
            }
            if (Splits == 1) WriteRows(b, h, i0, rows, sc.Ref, sc.Sum, sc.Acc, log2Units: true);
            else
            {
                long slot = ((long)(gh * Tiles + tile) * Splits + split) * Br;
                T ln2 = T.CreateTruncating(0.6931471805599453);
                for (int r = 0; r < rows; r++)
                {
                    _smPtr[slot + r] = T.IsNegativeInfinity(sc.Ref[r]) ? T.NegativeInfinity : sc.Ref[r] * ln2;
                    _ssPtr[slot + r] = sc.Sum[r];
                    new ReadOnlySpan<T>(sc.Acc + r * DvPad, P.Dv).CopyTo(new Span<T>(_saPtr + (slot + r) * DvPad, P.Dv));
                }
            }
        }

        /// <summary>Merges the key splits of one (head, tile) in split order (bitwise reproducible) and writes the rows.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void MergeSplits(long item)
        {
            int gh = (int)(item / Tiles), tile = (int)(item % Tiles);
            var (b, h) = HeadOf(gh);
            int i0 = tile * Br, rows = Math.Min(Br, P.N - i0);
            long slot0 = (long)(gh * Tiles + tile) * Splits * Br;
            for (int r = 0; r < rows; r++)
            {
                long s0 = slot0 + r;
                ref T max = ref _smPtr[s0];
                ref T sum = ref _ssPtr[s0];
                var acc = new Span<T>(_saPtr + s0 * DvPad, P.Dv);
                for (int s = 1; s < Splits; s++)
                {
                    long si = slot0 + (long)s * Br + r;
                    AttentionPartial<T>.MergeRow(ref max, ref sum, acc, _smPtr[si], _ssPtr[si], new ReadOnlySpan<T>(_saPtr + si * DvPad, P.Dv));
                }
            }
            // Rows of split 0 now hold the merged state (natural units), at stride DvPad.
            WriteRows(b, h, i0, rows, _smPtr + slot0, _ssPtr + slot0, _saPtr + slot0 * DvPad, log2Units: false);
        }

        /// <summary>Writes finished rows: normalised O (and log-sum-exp), or the partial state in partial mode. A row that saw no
        /// key (max −∞) gets zeros and −∞; a row whose logits overflowed keeps its NaN for the float64 fallback.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void WriteRows(int b, int h, int i0, int rows, T* max, T* sum, T* acc, bool log2Units)
        {
            T ln2 = T.CreateTruncating(0.6931471805599453);
            for (int r = 0; r < rows; r++)
            {
                int i = i0 + r;
                T* o = P.ORow(b, h, i), a = acc + r * DvPad;
                T m = max[r], l = sum[r];
                bool empty = T.IsNegativeInfinity(m);
                T mNat = empty ? m : log2Units ? m * ln2 : m;
                if (P.WritesPartial)
                {
                    for (int c = 0; c < P.Dv; c++) o[c] = empty ? T.Zero : a[c];
                    long li = P.LseIndex(b, h, i);
                    P.Lse[li] = mNat;
                    P.PartialSum[li] = empty ? T.Zero : l;
                    continue;
                }
                if (empty)
                {
                    for (int c = 0; c < P.Dv; c++) o[c] = T.Zero;
                    if (P.Lse != null) P.Lse[P.LseIndex(b, h, i)] = T.NegativeInfinity;
                    continue;
                }
                T inv = T.One / l;
                for (int c = 0; c < P.Dv; c++) o[c] = a[c] * inv;
                if (P.Lse != null)
                {
                    double lse = log2Units
                        ? (double.CreateTruncating(m) + Math.Log2(double.CreateTruncating(l))) * 0.6931471805599453
                        : double.CreateTruncating(m) + Math.Log(double.CreateTruncating(l));
                    P.Lse[P.LseIndex(b, h, i)] = T.CreateTruncating(lse);
                }
            }
        }

        /// <summary>qs[r, c] = s·log₂e·Q[i₀ + r, c] (rows past n are zero).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void ScaleQueries(int b, int h, int i0, int rows, int rowsPad, T* qs)
        {
            int d = P.D;
            for (int r = 0; r < rowsPad; r++)
            {
                T* dst = qs + r * d;
                if (r < rows) { T* src = P.QRow(b, h, i0 + r); for (int c = 0; c < d; c++) dst[c] = src[c] * QScale; }
                else for (int c = 0; c < d; c++) dst[c] = T.Zero;
            }
        }

        /// <summary>Prefill: per key block, per 6-row micro-tile: S = Q̃·Kᵀ (register blocks over packed panels), mask hook,
        /// online softmax, O += P·V (register blocks over V rows in place or padded).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void General(int gh, int b, int h, int i0, int rows, int blk0, int blk1, Scratch sc)
        {
            int d = P.D, bc = Bc, micro = (rows + MicroRows - 1) / MicroRows;
            T* kt = _ktPtr + gh * _ktHead;
            T* vBase = PackV ? _vpPtr + gh * _vHead : P.VRow(b, h, 0);
            long vStride = PackV ? DvPad : P.VRowStride;
            T* s = sc.S, pb = sc.P;
            for (int blk = blk0; blk < blk1; blk++)
            {
                int j0 = blk * bc, keys = Math.Min(bc, P.M - j0);
                int panels = (keys + Panel - 1) / Panel, keysPad = panels * Panel;
                var vis = P.Classify(b, h, i0, i0 + rows, j0, j0 + keys);
                if (vis == BlockVisibility.Hidden) continue;
                if (keysPad != keys) vis = BlockVisibility.Partial; // zero panels past m must be masked
                T* ktb = kt + (long)j0 * d;
                for (int mt = 0; mt < micro; mt++)
                {
                    int r0 = mt * MicroRows;
                    T* q = sc.Qs + r0 * d;
                    RegisterBlocks<T, TV, TS>.Product6Panels(Wide, q, d, ktb, panels, d, s, bc);
                    if (vis == BlockVisibility.Partial)
                        for (int r = 0; r < MicroRows; r++) P.ApplyMask(b, h, i0 + r0 + r, j0, keysPad, s + r * bc);
                    SoftmaxStrip(s, pb, bc, keysPad, sc.Ref + r0, sc.Sum + r0, sc.Acc + r0 * DvPad, DvPad);
                    T* acc = sc.Acc + r0 * DvPad;
                    if (VPanels)
                    {
                        // Each V panel is contiguous over keys (j·width apart): one sequential stream per column block.
                        for (int x0 = 0; x0 < DvPad;)
                        {
                            int cw = VPanel(x0);
                            RegisterBlocks<T, TV, TS>.Accumulate6(Wide, pb, bc, 1, keys, vBase + (long)MPad * x0 + (long)j0 * cw, cw, acc + x0, DvPad, cw);
                            x0 += cw;
                        }
                    }
                    else RegisterBlocks<T, TV, TS>.Accumulate6(Wide, pb, bc, 1, keys, vBase + j0 * vStride, vStride, acc, DvPad, DvPad);
                }
            }
        }

        /// <summary>Decode: all n (≤ 16) rows against this split's keys, K and V rows read in place (no packing).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Decode(int b, int h, int rows, int blk0, int blk1, Scratch sc)
        {
            int d = P.D, bc = Bc, w = TS.Count, dvVec = P.Dv / w * w;
            int rowsPad = RoundUp(rows, MicroRows);
            T* s = sc.S, pb = sc.P;
            new Span<T>(pb + rows * bc, (rowsPad - rows) * bc).Clear(); // P = 0 in the padding rows of the 6-row blocks
            int extent = P.KeyExtent(0, rows);
            for (int blk = blk0; blk < blk1; blk++)
            {
                int j0 = blk * bc, keys = Math.Min(bc, extent - j0), keysPad = RoundUp(keys, w);
                var vis = P.Classify(b, h, 0, rows, j0, j0 + keys);
                if (vis == BlockVisibility.Hidden) continue;
                T* k = P.KRow(b, h, j0);
                for (int r = 0; r < rows; r++)
                {
                    T* sr = s + r * bc;
                    Dots(sc.Qs + r * d, d, k, P.KRowStride, keys, sr);
                    for (int jj = keys; jj < keysPad; jj++) sr[jj] = T.NegativeInfinity;
                    if (vis == BlockVisibility.Partial) P.ApplyMask(b, h, r, j0, keys, sr);
                }
                Softmax(s, pb, bc, rows, keysPad, sc.Ref, sc.Sum, sc.Acc, DvPad);
                T* v = P.VRow(b, h, j0);
                int r0 = 0;
                for (; r0 + MicroRows <= rowsPad && rows - r0 > 2; r0 += MicroRows)
                {
                    RegisterBlocks<T, TV, TS>.Accumulate6(Wide, pb + r0 * bc, bc, 1, keys, v, P.VRowStride, sc.Acc + r0 * DvPad, DvPad, dvVec);
                    RegisterBlocks<T, TV, TS>.AccumulateTail(pb + r0 * bc, bc, 1, MicroRows, keys, v, P.VRowStride, sc.Acc + r0 * DvPad, DvPad, dvVec, P.Dv);
                }
                for (; r0 < rows; r0++)
                {
                    RegisterBlocks<T, TV, TS>.Accumulate1(pb + r0 * bc, keys, v, P.VRowStride, sc.Acc + r0 * DvPad, dvVec);
                    RegisterBlocks<T, TV, TS>.AccumulateTail(pb + r0 * bc, bc, 1, 1, keys, v, P.VRowStride, sc.Acc + r0 * DvPad, DvPad, dvVec, P.Dv);
                }
            }
        }

        /// <summary>Small d (≤ 4) and d_v (≤ 4): lanes run over keys. A fully visible block of a row whose reference max is
        /// set runs <see cref="FusedRow{TD,TDV}"/> (logit, exp₂, sum and P·V in registers, one pass); the first block of a row,
        /// partly visible blocks, and the rare block whose max moves the reference go through <see cref="SlowRow"/>.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void SmallD(int gh, int b, int h, int i0, int rows, int blk0, int blk1, Scratch sc)
        {
            int d = P.D, dv = P.Dv, w = TS.Count, stateWidth = (1 + dv) * w;
            T* kt = _ktPtr + gh * _ktHead, vt = _vpPtr + gh * _vHead;
            for (int blk = blk0; blk < blk1; blk++)
            {
                int j0 = blk * Bc, keys = Math.Min(Bc, P.M - j0), keysPad = RoundUp(keys, w);
                var vis = P.Classify(b, h, i0, i0 + rows, j0, j0 + keys);
                if (vis == BlockVisibility.Hidden) continue;
                if (keysPad != keys) vis = BlockVisibility.Partial;
                for (int r = 0; r < rows; r++)
                {
                    T* q = sc.Qs + r * d, state = sc.Acc + r * stateWidth;
                    ref T rowRef = ref sc.Ref[r];
                    bool done = false;
                    if (vis == BlockVisibility.Full)
                    {
                        // A row's first block: its max (a cheap logits-only pass) becomes the reference.
                        if (T.IsNegativeInfinity(rowRef)) rowRef = MaxLogit(d, q, kt + j0, MPad, keysPad);
                        done = Fused(d, dv, q, kt + j0, vt + j0, MPad, keysPad, rowRef, state);
                    }
                    if (!done) SlowRow(b, h, i0 + r, q, kt + j0, vt + j0, j0, keys, keysPad, vis, ref rowRef, state, sc.S);
                }
            }
            // Reduce the lane-wise sums: Sum[r] = Σ lanes of ℓ, Acc[r, c] = Σ lanes of Õ_c (Acc is rewritten at stride DvPad).
            var tmp = stackalloc T[1 + 4];
            for (int r = 0; r < rows; r++)
            {
                T* state = sc.Acc + r * stateWidth;
                sc.Sum[r] = TS.SumAcross(TS.Load(ref state[0]));
                for (int c = 0; c < dv; c++) tmp[1 + c] = TS.SumAcross(TS.Load(ref state[(1 + c) * w]));
                // Row r's reduced values land below its own state (r·DvPad + dv ≤ r·stateWidth): earlier rows' states only.
                for (int c = 0; c < dv; c++) sc.Acc[r * DvPad + c] = tmp[1 + c];
            }
        }

        private static T MaxLogit(int d, T* q, T* kt, int mPad, int count) => d switch
        {
            1 => MaxRow<C1>(q, kt, mPad, count),
            2 => MaxRow<C2>(q, kt, mPad, count),
            3 => MaxRow<C3>(q, kt, mPad, count),
            _ => MaxRow<C4>(q, kt, mPad, count),
        };

        private static bool Fused(int d, int dv, T* q, T* kt, T* vt, int mPad, int count, T rowRef, T* state) => (d, dv) switch
        {
            (1, 1) => FusedRow<C1, C1>(q, kt, vt, mPad, count, rowRef, state),
            (1, 2) => FusedRow<C1, C2>(q, kt, vt, mPad, count, rowRef, state),
            (1, 3) => FusedRow<C1, C3>(q, kt, vt, mPad, count, rowRef, state),
            (1, 4) => FusedRow<C1, C4>(q, kt, vt, mPad, count, rowRef, state),
            (2, 1) => FusedRow<C2, C1>(q, kt, vt, mPad, count, rowRef, state),
            (2, 2) => FusedRow<C2, C2>(q, kt, vt, mPad, count, rowRef, state),
            (2, 3) => FusedRow<C2, C3>(q, kt, vt, mPad, count, rowRef, state),
            (2, 4) => FusedRow<C2, C4>(q, kt, vt, mPad, count, rowRef, state),
            (3, 1) => FusedRow<C3, C1>(q, kt, vt, mPad, count, rowRef, state),
            (3, 2) => FusedRow<C3, C2>(q, kt, vt, mPad, count, rowRef, state),
            (3, 3) => FusedRow<C3, C3>(q, kt, vt, mPad, count, rowRef, state),
            (3, 4) => FusedRow<C3, C4>(q, kt, vt, mPad, count, rowRef, state),
            (4, 1) => FusedRow<C4, C1>(q, kt, vt, mPad, count, rowRef, state),
            (4, 2) => FusedRow<C4, C2>(q, kt, vt, mPad, count, rowRef, state),
            (4, 3) => FusedRow<C4, C3>(q, kt, vt, mPad, count, rowRef, state),
            _ => FusedRow<C4, C4>(q, kt, vt, mPad, count, rowRef, state),
        };

        /// <summary>The general row step of the small-d path: logits into a strip, mask hook, block max, lazy rescale of the
        /// row state, then exp₂, sum and P·V from the strip.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void SlowRow(int b, int h, int i, T* q, T* kt, T* vt, int j0, int keys, int keysPad, BlockVisibility vis, ref T rowRef, T* state, T* strip)
        {
            int d = P.D, dv = P.Dv, w = TS.Count;
            for (int j = 0; j < keysPad; j += w)
            {
                TV x = TS.Zero;
                for (int c = 0; c < d; c++) x = TS.Fma(TS.Broadcast(q[c]), TS.Load(ref kt[(long)c * MPad + j]), x);
                TS.Store(x, ref strip[j]);
            }
            if (vis == BlockVisibility.Partial) P.ApplyMask(b, h, i, j0, keysPad, strip);
            TV mx = TS.Load(ref strip[0]);
            for (int j = w; j < keysPad; j += w) mx = TS.Max(mx, TS.Load(ref strip[j]));
            T bm = TS.MaxAcross(mx);
            if (!UpdateReference(ref rowRef, bm, state, (1 + dv) * w)) return; // nothing visible yet
            // The block's sums from zero in registers, added to the row state once (as in FusedRow): the roundings a
            // key meets are the block's plus one per later block, the count the rounding bound uses.
            TV rv = TS.Broadcast(rowRef), l = TS.Zero, a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero;
            T* v0 = vt, v1 = vt + MPad, v2 = vt + 2 * (long)MPad, v3 = vt + 3 * (long)MPad;
            for (int j = 0; j < keysPad; j += w)
            {
                TV e = TS.Exp2(TS.Sub(TS.Load(ref strip[j]), rv));
                l = TS.Add(l, e);
                a0 = TS.Fma(e, TS.Load(ref v0[j]), a0);
                if (dv > 1) a1 = TS.Fma(e, TS.Load(ref v1[j]), a1);
                if (dv > 2) a2 = TS.Fma(e, TS.Load(ref v2[j]), a2);
                if (dv > 3) a3 = TS.Fma(e, TS.Load(ref v3[j]), a3);
            }
            TS.Store(TS.Add(TS.Load(ref state[0]), l), ref state[0]);
            TS.Store(TS.Add(TS.Load(ref state[w]), a0), ref state[w]);
            if (dv > 1) TS.Store(TS.Add(TS.Load(ref state[2 * w]), a1), ref state[2 * w]);
            if (dv > 2) TS.Store(TS.Add(TS.Load(ref state[3 * w]), a2), ref state[3 * w]);
            if (dv > 3) TS.Store(TS.Add(TS.Load(ref state[4 * w]), a3), ref state[4 * w]);
        }
    }

    /// <summary>Lazy online-softmax reference update for one row: when the block max <paramref name="blockMax"/> exceeds the
    /// reference by more than <see cref="RescaleThreshold"/>, move the reference to it and rescale the row's state
    /// (<paramref name="width"/> elements: sum and accumulator, contiguous) by 2^(old − new). Returns false when the row has
    /// seen no visible key yet (reference still −∞): its weights are all 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool UpdateReference(ref T rowRef, T blockMax, T* state, int width)
    {
        T old = rowRef;
        if (blockMax > old + T.CreateTruncating(RescaleThreshold))
        {
            rowRef = blockMax;
            if (!T.IsNegativeInfinity(old)) ScaleRow(state, width, T.Exp2(old - blockMax));
        }
        return !T.IsNegativeInfinity(rowRef);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaleRow(T* row, int width, T alpha)
    {
        int w = TS.Count, c = 0;
        TV av = TS.Broadcast(alpha);
        for (; c + w <= width; c += w) TS.Store(TS.Mul(TS.Load(ref row[c]), av), ref row[c]);
        for (; c < width; c++) row[c] *= alpha;
    }

    /// <summary>Online softmax for <paramref name="rows"/> logit rows of S (stride <paramref name="stride"/>, <paramref name="count"/>
    /// a multiple of W) into P (same stride). A row whose reference is set takes one pass with it (P = 2^(S − ref), the row
    /// sum and the block max together); only when the block max exceeds the reference by more than
    /// <see cref="RescaleThreshold"/> (or on the row's first block) is the reference moved — rescaling the row's sum and
    /// accumulator — and the row redone from S.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Softmax(T* s, T* p, int stride, int rows, int count, T* refs, T* sums, T* acc, int accStride)
    {
        T threshold = T.CreateTruncating(RescaleThreshold);
        for (int r = 0; r < rows; r++)
        {
            T* sr = s + r * stride, pr = p + r * stride;
            T old = refs[r], bm;
            if (!T.IsNegativeInfinity(old))
            {
                T sum = ExpRow(sr, pr, count, old, out bm);
                if (!(bm > old + threshold)) { sums[r] += sum; continue; }
            }
            else bm = MaxRow(sr, count);
            if (bm > old + threshold)
            {
                refs[r] = bm;
                if (!T.IsNegativeInfinity(old))
                {
                    T alpha = T.Exp2(old - bm);
                    sums[r] *= alpha;
                    ScaleRow(acc + r * accStride, accStride, alpha);
                }
            }
            T rf = refs[r];
            if (T.IsNegativeInfinity(rf)) { new Span<T>(pr, count).Clear(); continue; } // nothing visible yet: weights 0
            sums[r] += ExpRow(sr, pr, count, rf, out _);
        }
    }

    /// <summary>
    /// <see cref="Softmax"/> for one 6-row strip of the prefill path, columns outermost: each step takes one vector of
    /// all six rows (six independent exp₂ chains, so the exponential's latency overlaps), against the rows' current
    /// references, tracking one max of S − ref over the strip. When a row has no reference yet (its first block) or the
    /// strip's max moves past <see cref="RescaleThreshold"/>, the strip is redone row by row by <see cref="Softmax"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxStrip(T* s, T* p, int stride, int count, T* refs, T* sums, T* acc, int accStride)
    {
        bool ready = true;
        for (int r = 0; r < MicroRows; r++) ready &= !T.IsNegativeInfinity(refs[r]);
        if (ready)
        {
            int w = TS.Count;
            T* s0 = s, s1 = s + stride, s2 = s + 2 * stride, s3 = s + 3 * stride, s4 = s + 4 * stride, s5 = s + 5 * stride;
            T* p0 = p, p1 = p + stride, p2 = p + 2 * stride, p3 = p + 3 * stride, p4 = p + 4 * stride, p5 = p + 5 * stride;
            TV a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero, a4 = TS.Zero, a5 = TS.Zero;
            TV mx = TS.Broadcast(T.NegativeInfinity);
            for (int c = 0; c < count; c += w)
            {
                TV x = TS.Sub(TS.Load(ref s0[c]), TS.Broadcast(refs[0])); mx = TS.Max(mx, x); TV e = TS.Exp2(x); TS.Store(e, ref p0[c]); a0 = TS.Add(a0, e);
                x = TS.Sub(TS.Load(ref s1[c]), TS.Broadcast(refs[1])); mx = TS.Max(mx, x); e = TS.Exp2(x); TS.Store(e, ref p1[c]); a1 = TS.Add(a1, e);
                x = TS.Sub(TS.Load(ref s2[c]), TS.Broadcast(refs[2])); mx = TS.Max(mx, x); e = TS.Exp2(x); TS.Store(e, ref p2[c]); a2 = TS.Add(a2, e);
                x = TS.Sub(TS.Load(ref s3[c]), TS.Broadcast(refs[3])); mx = TS.Max(mx, x); e = TS.Exp2(x); TS.Store(e, ref p3[c]); a3 = TS.Add(a3, e);
                x = TS.Sub(TS.Load(ref s4[c]), TS.Broadcast(refs[4])); mx = TS.Max(mx, x); e = TS.Exp2(x); TS.Store(e, ref p4[c]); a4 = TS.Add(a4, e);
                x = TS.Sub(TS.Load(ref s5[c]), TS.Broadcast(refs[5])); mx = TS.Max(mx, x); e = TS.Exp2(x); TS.Store(e, ref p5[c]); a5 = TS.Add(a5, e);
            }
            if (!(TS.MaxAcross(mx) > T.CreateTruncating(RescaleThreshold)))
            {
                sums[0] += TS.SumAcross(a0); sums[1] += TS.SumAcross(a1); sums[2] += TS.SumAcross(a2);
                sums[3] += TS.SumAcross(a3); sums[4] += TS.SumAcross(a4); sums[5] += TS.SumAcross(a5);
                return;
            }
            // Some row moved past its reference: only that row is redone. The others' P rows and sums (against their
            // unchanged references) stand — redoing the whole strip row by row had every new record, which large logits
            // make frequent (about half the blocks at d = 8, B = 100), cost six extra exp₂ passes instead of one.
            T threshold = T.CreateTruncating(RescaleThreshold);
            Span<TV> rowSums = [a0, a1, a2, a3, a4, a5];
            for (int r = 0; r < MicroRows; r++)
            {
                T* sr = s + r * stride, pr = p + r * stride;
                T old = refs[r], bm = MaxRow(sr, count);
                if (!(bm > old + threshold)) { sums[r] += TS.SumAcross(rowSums[r]); continue; }
                refs[r] = bm;
                T alpha = T.Exp2(old - bm);
                sums[r] *= alpha;
                ScaleRow(acc + r * accStride, accStride, alpha);
                sums[r] += ExpRow(sr, pr, count, bm, out _);
            }
            return;
        }
        Softmax(s, p, stride, MicroRows, count, refs, sums, acc, accStride);
    }

    /// <summary>p[c] = 2^(s[c] − ref) for c &lt; count; returns Σ p and the max of s (two vectors per step, so the exp₂
    /// constants load once per pair).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static T ExpRow(T* s, T* p, int count, T reference, out T max)
    {
        int w = TS.Count, c = 0;
        TV rv = TS.Broadcast(reference), s0 = TS.Zero, s1 = TS.Zero;
        TV m0 = TS.Broadcast(T.NegativeInfinity), m1 = m0;
        for (; c + 2 * w <= count; c += 2 * w)
        {
            TV x0 = TS.Load(ref s[c]), x1 = TS.Load(ref s[c + w]);
            m0 = TS.Max(m0, x0); m1 = TS.Max(m1, x1);
            TV e0 = TS.Exp2(TS.Sub(x0, rv)), e1 = TS.Exp2(TS.Sub(x1, rv));
            TS.Store(e0, ref p[c]); TS.Store(e1, ref p[c + w]);
            s0 = TS.Add(s0, e0); s1 = TS.Add(s1, e1);
        }
        if (c < count)
        {
            TV x0 = TS.Load(ref s[c]);
            m0 = TS.Max(m0, x0);
            TV e0 = TS.Exp2(TS.Sub(x0, rv));
            TS.Store(e0, ref p[c]);
            s0 = TS.Add(s0, e0);
        }
        max = TS.MaxAcross(TS.Max(m0, m1));
        return TS.SumAcross(TS.Add(s0, s1));
    }

    /// <summary>max of s[0..count) (count a multiple of W).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static T MaxRow(T* s, int count)
    {
        int w = TS.Count;
        TV mx = TS.Load(ref s[0]);
        for (int c = w; c < count; c += w) mx = TS.Max(mx, TS.Load(ref s[c]));
        return TS.MaxAcross(mx);
    }

    /// <summary>Keys ahead of the current one whose K rows decode prefetches.</summary>
    internal const int DecodePrefetchKeys = 32;

    /// <summary>s[j] = ⟨q, K[j]⟩ for <paramref name="keys"/> key rows at <paramref name="kStride"/>, 4 keys at a time
    /// (vectors along d, then a scalar tail of d mod W): the decode path's logits, K read in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Dots(T* q, int d, T* k, long kStride, int keys, T* s)
    {
        int w = TS.Count, dVec = d / w * w, j = 0;
        // Decode streams K from memory once: the rows DecodePrefetchKeys ahead are prefetched (a prefetch never faults,
        // so running past the block or the array is harmless).
        long rowBytes = d * sizeof(T), pfStep = 4 * kStride * sizeof(T);
        bool prefetch = System.Runtime.Intrinsics.X86.Sse.IsSupported && kStride == d;
        if (typeof(TV) == typeof(Vector256<float>) && Avx.IsSupported && dVec == d)
            j = Dots8((float*)q, d, (float*)k, kStride, keys, (float*)s, prefetch);
        for (; j + 4 <= keys; j += 4)
        {
            T* k0 = k + j * kStride, k1 = k0 + kStride, k2 = k1 + kStride, k3 = k2 + kStride;
            if (prefetch)
            {
                byte* pf = (byte*)(k0 + DecodePrefetchKeys * kStride);
                for (long l = 0; l < pfStep; l += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(pf + l);
            }
            TV a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero;
            for (int c = 0; c < dVec; c += w)
            {
                TV x = TS.Load(ref q[c]);
                a0 = TS.Fma(x, TS.Load(ref k0[c]), a0); a1 = TS.Fma(x, TS.Load(ref k1[c]), a1);
                a2 = TS.Fma(x, TS.Load(ref k2[c]), a2); a3 = TS.Fma(x, TS.Load(ref k3[c]), a3);
            }
            T s0 = TS.SumAcross(a0), s1 = TS.SumAcross(a1), s2 = TS.SumAcross(a2), s3 = TS.SumAcross(a3);
            for (int c = dVec; c < d; c++)
            {
                s0 = T.FusedMultiplyAdd(q[c], k0[c], s0); s1 = T.FusedMultiplyAdd(q[c], k1[c], s1);
                s2 = T.FusedMultiplyAdd(q[c], k2[c], s2); s3 = T.FusedMultiplyAdd(q[c], k3[c], s3);
            }
            s[j] = s0; s[j + 1] = s1; s[j + 2] = s2; s[j + 3] = s3;
        }
        for (; j < keys; j++)
        {
            T* kj = k + j * kStride;
            TV a = TS.Zero;
            for (int c = 0; c < dVec; c += w) a = TS.Fma(TS.Load(ref q[c]), TS.Load(ref kj[c]), a);
            T sj = TS.SumAcross(a);
            for (int c = dVec; c < d; c++) sj = T.FusedMultiplyAdd(q[c], kj[c], sj);
            s[j] = sj;
        }
    }

    /// <summary><see cref="Dots"/>'s float32 AVX form for d a multiple of 8: 8 keys at a time (8 independent FMA chains, where 4
    /// left the FMA latency exposed), the 8 sums reduced together by a horizontal-add tree into one vector and stored at once
    /// (4 separate reductions cost more instructions than the dot products at d = 64). Each sum is formed in the same order
    /// as <see cref="ISimd{T,TV}.SumAcross"/>'s ((l₀ + l₁) + (l₂ + l₃)) + ((l₄ + l₅) + (l₆ + l₇)), so the logits are the
    /// same bits. Returns the keys done (a multiple of 8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Dots8(float* q, int d, float* k, long kStride, int keys, float* s, bool prefetch)
    {
        long pfStep = 8 * kStride * sizeof(float);
        int j = 0;
        for (; j + 8 <= keys; j += 8)
        {
            float* k0 = k + j * kStride;
            if (prefetch)
            {
                byte* pf = (byte*)(k0 + DecodePrefetchKeys * kStride);
                for (long l = 0; l < pfStep; l += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(pf + l);
            }
            var a0 = Vector256<float>.Zero; var a1 = a0; var a2 = a0; var a3 = a0; var a4 = a0; var a5 = a0; var a6 = a0; var a7 = a0;
            for (int c = 0; c < d; c += 8)
            {
                var x = Vector256.Load(q + c);
                float* kc = k0 + c;
                a0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc), a0);
                a1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc + kStride), a1);
                a2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc + 2 * kStride), a2);
                a3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc + 3 * kStride), a3);
                a4 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc + 4 * kStride), a4);
                a5 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc + 5 * kStride), a5);
                a6 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc + 6 * kStride), a6);
                a7 = Vector256.FusedMultiplyAdd(x, Vector256.Load(kc + 7 * kStride), a7);
            }
            // hadd(a, b) = [a₀+a₁, a₂+a₃, b₀+b₁, b₂+b₃ | a₄+a₅, a₆+a₇, b₄+b₅, b₆+b₇]; twice gives each half-sum, the halves added last.
            var t0 = Avx.HorizontalAdd(a0, a1); var t1 = Avx.HorizontalAdd(a2, a3);
            var t2 = Avx.HorizontalAdd(a4, a5); var t3 = Avx.HorizontalAdd(a6, a7);
            var u0 = Avx.HorizontalAdd(t0, t1); var u1 = Avx.HorizontalAdd(t2, t3);
            var sums = Avx.Permute2x128(u0, u1, 0x20) + Avx.Permute2x128(u0, u1, 0x31);
            sums.Store(s + j);
        }
        return j;
    }

    /// <summary>max_j Σ_c q̃_c·Kᵀ[c, j] over <paramref name="count"/> keys (a multiple of W): the reference for a row's first block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static T MaxRow<TD>(T* q, T* kt, int mPad, int count) where TD : struct, IConstant
    {
        int w = TS.Count;
        TV q0 = TS.Broadcast(q[0]), q1 = TD.Value > 1 ? TS.Broadcast(q[1]) : TS.Zero;
        TV q2 = TD.Value > 2 ? TS.Broadcast(q[2]) : TS.Zero, q3 = TD.Value > 3 ? TS.Broadcast(q[3]) : TS.Zero;
        TV mx0 = TS.Broadcast(T.NegativeInfinity), mx1 = mx0;
        T* k0 = kt, k1 = kt + mPad, k2 = kt + 2 * mPad, k3 = kt + 3 * mPad;
        int j = 0;
        for (; j + 2 * w <= count; j += 2 * w)
        {
            TV x = TS.Mul(q0, TS.Load(ref k0[j])), y = TS.Mul(q0, TS.Load(ref k0[j + w]));
            if (TD.Value > 1) { x = TS.Fma(q1, TS.Load(ref k1[j]), x); y = TS.Fma(q1, TS.Load(ref k1[j + w]), y); }
            if (TD.Value > 2) { x = TS.Fma(q2, TS.Load(ref k2[j]), x); y = TS.Fma(q2, TS.Load(ref k2[j + w]), y); }
            if (TD.Value > 3) { x = TS.Fma(q3, TS.Load(ref k3[j]), x); y = TS.Fma(q3, TS.Load(ref k3[j + w]), y); }
            mx0 = TS.Max(mx0, x); mx1 = TS.Max(mx1, y);
        }
        for (; j < count; j += w)
        {
            TV x = TS.Mul(q0, TS.Load(ref k0[j]));
            if (TD.Value > 1) x = TS.Fma(q1, TS.Load(ref k1[j]), x);
            if (TD.Value > 2) x = TS.Fma(q2, TS.Load(ref k2[j]), x);
            if (TD.Value > 3) x = TS.Fma(q3, TS.Load(ref k3[j]), x);
            mx0 = TS.Max(mx0, x);
        }
        return TS.MaxAcross(TS.Max(mx0, mx1));
    }

    /// <summary>The clamped exp₂'s floors in <see cref="FusedRow{TD,TDV}"/> (f64, f32): a key far below the reference weighs
    /// 2^floor instead of its true weight (an overestimate ≤ 2^floor per key, ExactRoundingBound's flush term) — 64 and 32
    /// binades above the smallest normals, so that p·v stays normal for |v| ≥ 2⁻⁶⁴ (2⁻³²). At the smallest normal itself
    /// every far key's p·v was subnormal, and the block sums start from zero: on an Intel Xeon (Sapphire/Emerald Rapids
    /// class, where subnormal arithmetic takes a microcode assist) d = 2, n = 8192, B = 100 ran 6.8 ns per pair against
    /// 0.63 at B = 1; AMD Zen 4 handles subnormals at full speed and never showed it.</summary>
    internal const int FusedFloor64 = -958, FusedFloor32 = -94;

    /// <summary>
    /// One row of the small-d path over a fully visible block, in registers: for each W keys, x = Σ_c q̃_c·Kᵀ[c] (TD FMAs),
    /// p = 2^(max(x − ref, floor)) (<see cref="FusedFloor64"/>), ℓ += p, Õ_c += p·Vᵀ[c] (TDV FMAs), and the running max of
    /// x. Returns false, leaving the state untouched, when the block's max exceeds the reference by more than
    /// <see cref="RescaleThreshold"/> (the caller redoes it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool FusedRow<TD, TDV>(T* q, T* kt, T* vt, int mPad, int count, T rowRef, T* state)
        where TD : struct, IConstant where TDV : struct, IConstant
    {
        int w = TS.Count;
        TV q0 = TS.Broadcast(q[0]), q1 = TD.Value > 1 ? TS.Broadcast(q[1]) : TS.Zero;
        TV q2 = TD.Value > 2 ? TS.Broadcast(q[2]) : TS.Zero, q3 = TD.Value > 3 ? TS.Broadcast(q[3]) : TS.Zero;
        // The block's sums start from zero and are added to the row state at the end (a key meets at most the block's
        // roundings plus one per later block: the count the rounding bound, ExactRoundingBound, uses).
        TV l = TS.Zero, a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero;
        TV negRef = TS.Broadcast(-rowRef), mx = TS.Broadcast(T.NegativeInfinity), floor = TS.Broadcast(T.CreateTruncating(typeof(T) == typeof(double) ? FusedFloor64 : FusedFloor32));
        T* k0 = kt, k1 = kt + mPad, k2 = kt + 2 * mPad, k3 = kt + 3 * mPad;
        T* v0 = vt, v1 = vt + mPad, v2 = vt + 2 * mPad, v3 = vt + 3 * mPad;
        for (int j = 0; j < count; j += w)
        {
            // x = q̃·k − ref, the reference folded into the first FMA; visible logits only, so the clamped exp₂.
            TV x = TS.Fma(q0, TS.Load(ref k0[j]), negRef);
            if (TD.Value > 1) x = TS.Fma(q1, TS.Load(ref k1[j]), x);
            if (TD.Value > 2) x = TS.Fma(q2, TS.Load(ref k2[j]), x);
            if (TD.Value > 3) x = TS.Fma(q3, TS.Load(ref k3[j]), x);
            mx = TS.Max(mx, x);
            TV e = TS.Exp2Clamped(TS.Max(x, floor));
            l = TS.Add(l, e);
            a0 = TS.Fma(e, TS.Load(ref v0[j]), a0);
            if (TDV.Value > 1) a1 = TS.Fma(e, TS.Load(ref v1[j]), a1);
            if (TDV.Value > 2) a2 = TS.Fma(e, TS.Load(ref v2[j]), a2);
            if (TDV.Value > 3) a3 = TS.Fma(e, TS.Load(ref v3[j]), a3);
        }
        if (TS.MaxAcross(mx) > T.CreateTruncating(RescaleThreshold)) return false;
        TS.Store(TS.Add(TS.Load(ref state[0]), l), ref state[0]); TS.Store(TS.Add(TS.Load(ref state[w]), a0), ref state[w]);
        if (TDV.Value > 1) TS.Store(TS.Add(TS.Load(ref state[2 * w]), a1), ref state[2 * w]);
        if (TDV.Value > 2) TS.Store(TS.Add(TS.Load(ref state[3 * w]), a2), ref state[3 * w]);
        if (TDV.Value > 3) TS.Store(TS.Add(TS.Load(ref state[4 * w]), a3), ref state[4 * w]);
        return true;
    }
}

/// <summary>A compile-time integer for generic specialisation (the JIT folds <see cref="Value"/> and drops dead branches).</summary>
internal interface IConstant { static abstract int Value { get; } }
internal readonly struct C1 : IConstant { public static int Value => 1; }
internal readonly struct C2 : IConstant { public static int Value => 2; }
internal readonly struct C3 : IConstant { public static int Value => 3; }
internal readonly struct C4 : IConstant { public static int Value => 4; }

/// <summary>The exact kernel behind the one SIMD dispatch: runs <see cref="FlashKernel{T,TV,TS}"/> at the chosen width.</summary>
internal static class FlashKernels
{
    /// <summary>Runs the kernel on <paramref name="p"/>; <paramref name="forcedFloat32Lanes"/> forces a width (throws when the CPU lacks it).</summary>
    public static FlashPlan Run<T>(in FlashParams<T> p, int threads, FlashTuning tuning = default, int forcedFloat32Lanes = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var runner = new Runner<T> { Params = p, Threads = threads, Tuning = tuning };
        return SimdDispatch.Run<T, Runner<T>, FlashPlan>(ref runner, forcedFloat32Lanes);
    }

    /// <summary>What <see cref="Run{T}"/> would do on <paramref name="p"/> (pointers unused), without running it.</summary>
    public static FlashPlan Plan<T>(in FlashParams<T> p, int threads, FlashTuning tuning = default, int forcedFloat32Lanes = 0)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var runner = new Runner<T> { Params = p, Threads = threads, Tuning = tuning, PlanOnly = true };
        return SimdDispatch.Run<T, Runner<T>, FlashPlan>(ref runner, forcedFloat32Lanes);
    }

    private struct Runner<TP> : ISimdKernel<FlashPlan> where TP : unmanaged, IBinaryFloatingPointIeee754<TP>
    {
        public FlashParams<TP> Params;
        public int Threads;
        public FlashTuning Tuning;
        public bool PlanOnly;

        public FlashPlan Run<T, TV, TS>() where T : unmanaged, IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
        {
            ref var p = ref Unsafe.As<FlashParams<TP>, FlashParams<T>>(ref Params);
            return PlanOnly ? FlashKernel<T, TV, TS>.Plan(p, Threads, Tuning) : FlashKernel<T, TV, TS>.Run(p, Threads, Tuning);
        }
    }
}
