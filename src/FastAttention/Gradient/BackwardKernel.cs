using System.Numerics;
using System.Runtime.CompilerServices;
using FastAttention.Exact;

namespace FastAttention.Gradient;

/// <summary>One query head of a group that shares a K/V head, as <see cref="BackwardKernel{T,TV,TS}.Run"/> takes it: pinned
/// Q (n×d), O and dO (n×dv), log-sum-exp (n), dQ output (n×d, zero on entry), all of the kernel's element type, and its mask.</summary>
internal struct BackwardHeadInput
{
    public nint Q, O, DO, Lse, DQ;
    public KernelMask Mask;
}

/// <summary>
/// The FlashAttention-2 backward pass of one K/V head and the query heads that read it, built from the same register blocks as the exact forward kernel
/// (<see cref="RegisterBlocks{T,TV,TS}"/>: 6 rows × 2 vectors on 16-register CPUs, 6 × 4 on 32), the scale·log₂e folded
/// into the packed Kᵀ, and the vectorised <see cref="ISimd{T,TV}.Exp2"/>.
/// </summary>
/// <remarks>
/// Workers own whole key blocks of <see cref="KeyBlock"/> keys (round-robin, so dK, dV need no synchronisation) and a
/// private dQ accumulator, summed in worker order at the end, so results do not depend on scheduling. Per key block the
/// worker packs s·log₂e·Kᵀ and Vᵀ into panels and s·K row-major; then for every tile of <see cref="QueryTile"/> query
/// rows, each 6-row micro-tile computes S = Q·(s·log₂e·K)ᵀ and P = 2^(S − L·log₂e), dP = dO·Vᵀ and dS = P∘(dP − D), and
/// dQ += dS·(s·K); then the tile adds dV += Pᵀ·dO and dK += dSᵀ·Q (6 keys at a time, the transposed coefficients read
/// in place; dK scaled by s when written). Every query head of the K/V group is visited per key block, so dK and dV sum
/// over the group with no copy of K or V. Each (tile, key block) and each micro-tile is classified by the head's mask
/// (<see cref="KernelMask.Classify"/>): hidden ones are skipped; partly visible ones (and every one under a bias) get the
/// per-element epilogue (<see cref="KernelMask.Apply{T}"/>: −∞, bias) between the logits and the exp. Q and dO are read from zero-padded copies (rows to a multiple of 6, columns
/// to a multiple of W). Working memory: O(n) row terms, per-worker dQ (n·d) and per-worker panels and tiles — never n×m.
/// </remarks>
internal static unsafe class BackwardKernel<T, TV, TS>
    where T : unmanaged, IBinaryFloatingPointIeee754<T>
    where TV : unmanaged
    where TS : struct, ISimd<T, TV>
{
    public const int MicroRows = RegisterBlocks<T, TV, TS>.Rows;
    /// <summary>Query rows per tile (a multiple of the 6-row micro-tile).</summary>
    public const int QueryTile = 96;

    /// <summary>Keys per block: 4 vectors (one 4-vector panel with wide blocks, two 2-vector panels otherwise), so the
    /// block's packed panels and the P and dS tiles stay near L1.</summary>
    public static int KeyBlock => 4 * TS.Count;

    /// <summary>6 × 4-vector blocks (24 accumulators) need the 32 vector registers of AVX-512 or ARM64; with 16 (AVX2) the
    /// kernel uses 6 × 2.</summary>
    public static bool WideBlocksByDefault => SimdInfo.VectorRegisters >= 32;

    /// <summary>
    /// One K/V head and the group of query heads that read it (one head for multi-head attention): dQ of each query head,
    /// and dK (m×d), dV (m×dv) summed over the group, of ⟨dO, softmax(s·QKᵀ + bias)·V⟩ from the forward pass's outputs
    /// and log-sum-exps. The outputs must be zero on entry; m is the number of keys that exist (the key length).
    /// <paramref name="wideBlocks"/>: 6 × 4-vector register blocks, else 6 × 2; see <see cref="WideBlocksByDefault"/>.
    /// </summary>
    public static void Run(BackwardHeadInput[] heads, T* k, T* v, T* dk, T* dvOut,
        int n, int m, int d, int dv, double scale, int workers, bool wideBlocks)
    {
        int w = TS.Count, bc = KeyBlock, group = heads.Length;
        int blocks = (m + bc - 1) / bc;
        int dPad = (d + w - 1) / w * w, dvPad = (dv + w - 1) / w * w;
        int nPad = (n + MicroRows - 1) / MicroRows * MicroRows;
        workers = Math.Max(1, Math.Min(workers, blocks));
        // 6-row micro-tiles read whole vectors of 6 rows: zero-padded copies (rows past n, columns past d / dv), per head.
        var copies = new T[3 * group][];
        var prepared = new Prepared[group];
        for (int g = 0; g < group; g++)
        {
            var h = heads[g];
            var qCopy = copies[3 * g] = GC.AllocateArray<T>(nPad * dPad, pinned: true);
            var doCopy = copies[3 * g + 1] = GC.AllocateArray<T>(nPad * dvPad, pinned: true);
            var rows = copies[3 * g + 2] = GC.AllocateArray<T>(2 * nPad, pinned: true); // L·log₂e, then D = rowsum(dO∘O); zero past n
            T* pqc = Pin(qCopy), pdc = Pin(doCopy), prow = Pin(rows);
            PadRows((T*)h.Q, n, d, pqc, dPad);
            PadRows((T*)h.DO, n, dv, pdc, dvPad);
            RowTerms((T*)h.Lse, (T*)h.O, (T*)h.DO, n, dv, prow, prow + nPad);
            prepared[g] = new Prepared { Q = pqc, DO = pdc, L2 = prow, D = prow + nPad, Mask = h.Mask };
        }
        var partials = new T[workers][][];
        nint nk = (nint)k, nv = (nint)v, ndk = (nint)dk, ndv = (nint)dvOut;
        T kScale = T.CreateTruncating(scale * 1.4426950408889634); // s·log₂e folded into Kᵀ: exp(s·x − L) = 2^(s·log₂e·x − L·log₂e)
        T sT = T.CreateTruncating(scale);
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, worker =>
        {
            var part = new T[group][];
            var dqs = new nint[group];
            for (int g = 0; g < group; g++) { part[g] = GC.AllocateArray<T>(nPad * dPad, pinned: true); dqs[g] = (nint)Pin(part[g]); }
            var scratch = new Scratch(bc, d, dv, dPad, dvPad, RegisterBlocks<T, TV, TS>.PanelWidth(wideBlocks));
            fixed (T* pp = scratch.P) fixed (T* pds = scratch.DS) fixed (T* pdk = scratch.DK) fixed (T* pdv = scratch.DV)
            fixed (T* pkt = scratch.Kt) fixed (T* pkr = scratch.Kr) fixed (T* pvt = scratch.Vt) fixed (T* pkrt = scratch.KrT)
            {
                var x = new Context
                {
                    Heads = prepared, DQs = dqs, K = (T*)nk, V = (T*)nv, DK = (T*)ndk, DV = (T*)ndv,
                    P = pp, DS = pds, DKAcc = pdk, DVAcc = pdv, Kt = pkt, Kr = pkr, Vt = pvt, KrT = pkrt,
                    N = n, M = m, Dk = d, Dv = dv, DPad = dPad, DvPad = dvPad, Bc = bc, Panel = RegisterBlocks<T, TV, TS>.PanelWidth(wideBlocks),
                    Wide = wideBlocks, Narrow = IsNarrow(d, dv), KScale = kScale, Scale = sT,
                };
                for (int b = worker; b < blocks; b += workers) ProcessBlock(ref x, b);
            }
            partials[worker] = part;
        });
        // dQ = Σ_workers partial, in a fixed order (results independent of scheduling).
        for (int g = 0; g < group; g++)
        {
            var per = new T[workers][];
            for (int wk = 0; wk < workers; wk++) per[wk] = partials[wk][g];
            Gather((T*)heads[g].DQ, n, d, dPad, per);
        }
        GC.KeepAlive(copies);
    }

    /// <summary>The address of an array allocated pinned (on the pinned object heap: it never moves).</summary>
    private static T* Pin(T[] pinned) => (T*)Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(pinned));

    /// <summary>A query head's inputs as the block loop reads them: padded Q and dO, row terms, mask.</summary>
    private struct Prepared
    {
        public T* Q, DO, L2, D;
        public KernelMask Mask;
    }

    /// <summary>Zero-padded copy of a rows×cols matrix with row stride <paramref name="stride"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PadRows(T* src, int rows, int cols, T* dst, int stride)
    {
        for (int i = 0; i < rows; i++)
            new ReadOnlySpan<T>(src + (long)i * cols, cols).CopyTo(new Span<T>(dst + (long)i * stride, cols));
    }

    /// <summary>l2[i] = Lᵢ·log₂e and rowD[i] = Dᵢ = ⟨dOᵢ, Oᵢ⟩ (FlashAttention-2 Alg. 2 line 4, accumulated in float64).
    /// A row that saw no key (L = −∞) gets l2 = +∞, so every P = 2^(S − l2) of it is 0, never 2^(−∞ + ∞).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowTerms(T* lse, T* o, T* dO, int n, int dv, T* l2, T* rowD)
    {
        T log2e = T.CreateTruncating(1.4426950408889634);
        for (int i = 0; i < n; i++)
        {
            l2[i] = T.IsNegativeInfinity(lse[i]) ? T.PositiveInfinity : lse[i] * log2e;
            T* a = dO + (long)i * dv, b = o + (long)i * dv;
            double sum = 0;
            for (int c = 0; c < dv; c++) sum += double.CreateTruncating(a[c]) * double.CreateTruncating(b[c]);
            rowD[i] = T.CreateTruncating(sum);
        }
    }

    /// <summary>dq[i, c] = Σ_w partials[w][i·dPad + c] in worker order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gather(T* dq, int n, int d, int dPad, T[][] partials)
    {
        for (int i = 0; i < n; i++)
        {
            T* dst = dq + (long)i * d;
            new ReadOnlySpan<T>(partials[0], i * dPad, d).CopyTo(new Span<T>(dst, d));
            for (int p = 1; p < partials.Length; p++)
            {
                var src = new ReadOnlySpan<T>(partials[p], i * dPad, d);
                for (int c = 0; c < d; c++) dst[c] += src[c];
            }
        }
    }

    private struct Context
    {
        public Prepared[] Heads;
        public nint[] DQs;
        public T* K, V, DK, DV, P, DS, DKAcc, DVAcc, Kt, Kr, Vt, KrT;
        public int N, M, Dk, Dv, DPad, DvPad, Bc, Panel;
        public bool Wide, Narrow;
        public T KScale, Scale;
    }

    private sealed class Scratch(int bc, int d, int dv, int dPad, int dvPad, int panel)
    {
        /// <summary>P and dS tiles; the 6-key groups of dV, dK read up to 5 coefficients past a row, hence the padding.</summary>
        public readonly T[] P = GC.AllocateArray<T>(QueryTile * bc + 8, pinned: true);
        public readonly T[] DS = GC.AllocateArray<T>(QueryTile * bc + 8, pinned: true);
        public readonly T[] DK = GC.AllocateArray<T>(RoundUp(bc, MicroRows) * dPad, pinned: true);
        public readonly T[] DV = GC.AllocateArray<T>(RoundUp(bc, MicroRows) * dvPad, pinned: true);
        /// <summary>This block's s·log₂e·Kᵀ and Vᵀ as panels ([bc / panel][d or dv][panel]) and s·K (bc × dPad), zero-padded.</summary>
        public readonly T[] Kt = GC.AllocateArray<T>(d * RoundUp(bc, panel), pinned: true);
        public readonly T[] Kr = GC.AllocateArray<T>(bc * dPad, pinned: true);
        public readonly T[] Vt = GC.AllocateArray<T>(dv * RoundUp(bc, panel), pinned: true);
        /// <summary>Narrow heads (<see cref="IsNarrow"/>): s·Kᵀ (d × bc, columns past the block's keys zero); dK and dV are then
        /// accumulated transposed in <see cref="DK"/> and <see cref="DV"/> (d × bc and dv × bc, which fit in them).</summary>
        public readonly T[] KrT = GC.AllocateArray<T>(d * bc, pinned: true);
    }

    /// <summary>
    /// Heads narrower than half a vector (d, dv ≤ W/2: d ≤ 8 at f32 on AVX-512) take the keys-on-lanes products: dK += dSᵀ·Q
    /// and dV += Pᵀ·dO as d (dv) columns of bc keys each, broadcasting Q[i, c] (dO[i, c]), and dQ += dS·(s·K) as d dot
    /// products of bc keys per row — instead of register blocks whose output vectors are zero-padded from d to W (at
    /// d = 4 and W = 16, three quarters of those FMAs added zeros and the backward ran at 3.7× the forward).
    /// </summary>
    public static bool IsNarrow(int d, int dv) => TS.Count > 1 && 2 * d <= TS.Count && 2 * dv <= TS.Count;

    private static int RoundUp(int x, int to) => (x + to - 1) / to * to;

    /// <summary>Packs key block [j0, j0 + keys) into the worker's panels: s·log₂e·Kᵀ and Vᵀ (columns past keys zero) and
    /// s·K row-major (rows past keys are never read; columns past d stay zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBlock(ref Context x, int j0, int keys)
    {
        int bc = x.Bc, d = x.Dk, dv = x.Dv, dPad = x.DPad, panel = x.Panel;
        T* kb = x.K + (long)j0 * d, vb = x.V + (long)j0 * dv;
        for (int jj = 0; jj < bc; jj++)
        {
            T* kt = x.Kt + (long)(jj / panel) * d * panel + jj % panel, vt = x.Vt + (long)(jj / panel) * dv * panel + jj % panel;
            if (jj < keys)
            {
                T* kj = kb + (long)jj * d, kr = x.Kr + jj * dPad, vj = vb + (long)jj * dv;
                for (int c = 0; c < d; c++) { kt[c * panel] = kj[c] * x.KScale; kr[c] = kj[c] * x.Scale; }
                for (int c = 0; c < dv; c++) vt[c * panel] = vj[c];
                if (x.Narrow) for (int c = 0; c < d; c++) x.KrT[c * bc + jj] = kj[c] * x.Scale;
            }
            else
            {
                for (int c = 0; c < d; c++) kt[c * panel] = T.Zero;
                for (int c = 0; c < dv; c++) vt[c * panel] = T.Zero;
                if (x.Narrow) for (int c = 0; c < d; c++) x.KrT[c * bc + jj] = T.Zero; // dS past the keys meets 0
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ProcessBlock(ref Context x, int b)
    {
        int bc = x.Bc, d = x.Dk, dv = x.Dv, dPad = x.DPad, dvPad = x.DvPad, w = TS.Count, panel = x.Panel;
        int panels = (bc + panel - 1) / panel;
        int j0 = b * bc, keys = Math.Min(bc, x.M - j0);
        bool packed = false;
        T* p = x.P, ds = x.DS;
        for (int g = 0; g < x.Heads.Length; g++)
        {
            ref readonly var hd = ref x.Heads[g];
            var mask = hd.Mask;
            T* dq = (T*)x.DQs[g];
            for (int i0 = 0; i0 < x.N; i0 += QueryTile)
            {
                int rows = Math.Min(QueryTile, x.N - i0);
                var tile = mask.Classify(i0, rows, j0, bc);
                if (tile == BlockVisibility.Hidden) continue; // no row of the tile sees a key of the block
                if (!packed)
                {
                    PackBlock(ref x, j0, keys);
                    new Span<T>(x.DKAcc, RoundUp(bc, MicroRows) * dPad).Clear();
                    new Span<T>(x.DVAcc, RoundUp(bc, MicroRows) * dvPad).Clear();
                    packed = true;
                }
                int micro = (rows + MicroRows - 1) / MicroRows, first = micro, last = -1;
                for (int mt = 0; mt < micro; mt++)
                {
                    int r0 = mt * MicroRows, i = i0 + r0;
                    T* qi = hd.Q + (long)i * dPad, doi = hd.DO + (long)i * dvPad;
                    T* pr = p + r0 * bc, dsr = ds + r0 * bc;
                    var vis = tile == BlockVisibility.Full ? tile : mask.Classify(i, Math.Min(MicroRows, x.N - i), j0, bc);
                    if (vis == BlockVisibility.Hidden)
                    {
                        // These rows see none of the block's keys: P = dS = 0 (the tile's column sums read them).
                        new Span<T>(pr, MicroRows * bc).Clear();
                        new Span<T>(dsr, MicroRows * bc).Clear();
                        continue;
                    }
                    first = Math.Min(first, mt); last = mt;
                    // S = Q·(s·log₂e·K)ᵀ; hidden pairs −∞ and the bias added (their bias never read); P = 2^(S − L·log₂e).
                    for (int pn = 0; pn < panels; pn++) RegisterBlocks<T, TV, TS>.Product6(x.Wide, qi, dPad, x.Kt + (long)pn * d * panel, d, pr + pn * panel, bc);
                    if (vis == BlockVisibility.Partial || mask.HasBias) mask.Apply(pr, bc, i, MicroRows, j0, bc);
                    // dP = dO·Vᵀ, then in one pass P = 2^(S − L·log₂e) and dS = P∘(dP − D).
                    for (int pn = 0; pn < panels; pn++) RegisterBlocks<T, TV, TS>.Product6(x.Wide, doi, dvPad, x.Vt + (long)pn * dv * panel, dv, dsr + pn * panel, bc);
                    for (int r = 0; r < MicroRows; r++)
                    {
                        T* row = pr + r * bc, drow = dsr + r * bc;
                        TV l = TS.Broadcast(hd.L2[i + r]), dr = TS.Broadcast(hd.D[i + r]);
                        for (int c = 0; c < bc; c += w)
                        {
                            TV pv = TS.Exp2(TS.Sub(TS.Load(ref row[c]), l));
                            TS.Store(pv, ref row[c]);
                            TS.Store(TS.Mul(pv, TS.Sub(TS.Load(ref drow[c]), dr)), ref drow[c]);
                        }
                    }
                    // dQ += dS·(s·K).
                    if (x.Narrow) NarrowDQ(dsr, bc, x.KrT, d, dq + (long)i * dPad, dPad);
                    else RegisterBlocks<T, TV, TS>.Accumulate6(x.Wide, dsr, bc, 1, keys, x.Kr, dPad, dq + (long)i * dPad, dPad, dPad);
                }
                if (last < first) continue;
                // dV += Pᵀ·dO and dK += dSᵀ·Q over the tile's visited rows, 6 keys at a time (coefficient P[i, key] at key + i·bc).
                int r1 = first * MicroRows, count = (last + 1) * MicroRows - r1;
                if (x.Narrow)
                {
                    NarrowColumns(p + r1 * bc, bc, count, hd.DO + (long)(i0 + r1) * dvPad, dvPad, dv, x.DVAcc);
                    NarrowColumns(ds + r1 * bc, bc, count, hd.Q + (long)(i0 + r1) * dPad, dPad, d, x.DKAcc);
                    continue;
                }
                for (int kg = 0; kg < keys; kg += MicroRows)
                {
                    RegisterBlocks<T, TV, TS>.Accumulate6(x.Wide, p + r1 * bc + kg, 1, bc, count, hd.DO + (long)(i0 + r1) * dvPad, dvPad, x.DVAcc + kg * dvPad, dvPad, dvPad);
                    RegisterBlocks<T, TV, TS>.Accumulate6(x.Wide, ds + r1 * bc + kg, 1, bc, count, hd.Q + (long)(i0 + r1) * dPad, dPad, x.DKAcc + kg * dPad, dPad, dPad);
                }
            }
        }
        if (!packed) return; // no query of the group sees these keys: their gradients stay 0
        if (x.Narrow)
        {
            // Transposed accumulators: column c of key jj at c·bc + jj.
            for (int jj = 0; jj < keys; jj++)
            {
                T* dkj = x.DK + (long)(j0 + jj) * d, dvj = x.DV + (long)(j0 + jj) * dv;
                for (int c = 0; c < d; c++) dkj[c] = x.DKAcc[c * bc + jj] * x.Scale;
                for (int c = 0; c < dv; c++) dvj[c] = x.DVAcc[c * bc + jj];
            }
            return;
        }
        for (int jj = 0; jj < keys; jj++)
        {
            T* dkj = x.DK + (long)(j0 + jj) * d, dkAcc = x.DKAcc + jj * dPad;
            for (int c = 0; c < d; c++) dkj[c] = dkAcc[c] * x.Scale;
            new ReadOnlySpan<T>(x.DVAcc + jj * dvPad, dv).CopyTo(new Span<T>(x.DV + (long)(j0 + jj) * dv, dv));
        }
    }

    /// <summary>Narrow heads: dq[r·dqStride + c] += Σ_j ds[r·bc + j]·krT[c·bc + j] for the micro-tile's rows and c &lt; d,
    /// the keys on the lanes: at bc = 4 vectors two columns of s·K (eight registers) are held across the six rows, each
    /// row's dS vectors loaded once per column pair; one horizontal sum per (row, column).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void NarrowDQ(T* ds, int bc, T* krT, int d, T* dq, int dqStride)
    {
        int w = TS.Count;
        if (bc == 4 * w)
        {
            int c = 0;
            for (; c + 2 <= d; c += 2)
            {
                T* k = krT + c * bc, l = k + bc;
                TV k0 = TS.Load(ref k[0]), k1 = TS.Load(ref k[w]), k2 = TS.Load(ref k[2 * w]), k3 = TS.Load(ref k[3 * w]);
                TV l0 = TS.Load(ref l[0]), l1 = TS.Load(ref l[w]), l2 = TS.Load(ref l[2 * w]), l3 = TS.Load(ref l[3 * w]);
                for (int r = 0; r < MicroRows; r++)
                {
                    T* row = ds + r * bc;
                    TV s0 = TS.Load(ref row[0]), s1 = TS.Load(ref row[w]), s2 = TS.Load(ref row[2 * w]), s3 = TS.Load(ref row[3 * w]);
                    TV a = TS.Fma(s0, k0, TS.Mul(s2, k2)), b = TS.Fma(s1, k1, TS.Mul(s3, k3));
                    TV e = TS.Fma(s0, l0, TS.Mul(s2, l2)), f = TS.Fma(s1, l1, TS.Mul(s3, l3));
                    T* o = dq + (long)r * dqStride + c;
                    o[0] += TS.SumAcross(TS.Add(a, b));
                    o[1] += TS.SumAcross(TS.Add(e, f));
                }
            }
            if (c < d)
            {
                T* k = krT + c * bc;
                TV k0 = TS.Load(ref k[0]), k1 = TS.Load(ref k[w]), k2 = TS.Load(ref k[2 * w]), k3 = TS.Load(ref k[3 * w]);
                for (int r = 0; r < MicroRows; r++)
                {
                    T* row = ds + r * bc;
                    TV a = TS.Fma(TS.Load(ref row[0]), k0, TS.Mul(TS.Load(ref row[2 * w]), k2));
                    TV b = TS.Fma(TS.Load(ref row[w]), k1, TS.Mul(TS.Load(ref row[3 * w]), k3));
                    dq[(long)r * dqStride + c] += TS.SumAcross(TS.Add(a, b));
                }
            }
            return;
        }
        for (int r = 0; r < MicroRows; r++)
        {
            T* row = ds + r * bc, o = dq + (long)r * dqStride;
            for (int c = 0; c < d; c++)
            {
                T* kc = krT + c * bc;
                TV a = TS.Zero;
                for (int j = 0; j < bc; j += w) a = TS.Fma(TS.Load(ref row[j]), TS.Load(ref kc[j]), a);
                o[c] += TS.SumAcross(a);
            }
        }
    }

    /// <summary>Narrow heads: acc[c·bc + j] += Σ_r coef[r·bc + j]·x[r·xStride + c] over <paramref name="rows"/> rows, for c &lt;
    /// <paramref name="cols"/> — dK += dSᵀ·Q (coef = dS, x = Q) or dV += Pᵀ·dO, transposed, the bc keys on the lanes: two
    /// columns × four vectors of sums in registers across the rows, each row's coefficient vectors loaded once per pair.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void NarrowColumns(T* coef, int bc, int rows, T* x, int xStride, int cols, T* acc)
    {
        int w = TS.Count;
        if (bc != 4 * w)
        {
            for (int c = 0; c < cols; c++)
                for (int j = 0; j < bc; j += w)
                {
                    TV a = TS.Load(ref acc[c * bc + j]);
                    for (int r = 0; r < rows; r++) a = TS.Fma(TS.Load(ref coef[r * bc + j]), TS.Broadcast(x[(long)r * xStride + c]), a);
                    TS.Store(a, ref acc[c * bc + j]);
                }
            return;
        }
        int cc = 0;
        for (; cc + 2 <= cols; cc += 2)
        {
            T* ac = acc + cc * bc, ad = ac + bc;
            TV a0 = TS.Load(ref ac[0]), a1 = TS.Load(ref ac[w]), a2 = TS.Load(ref ac[2 * w]), a3 = TS.Load(ref ac[3 * w]);
            TV b0 = TS.Load(ref ad[0]), b1 = TS.Load(ref ad[w]), b2 = TS.Load(ref ad[2 * w]), b3 = TS.Load(ref ad[3 * w]);
            for (int r = 0; r < rows; r++)
            {
                T* xr = x + (long)r * xStride + cc;
                TV xa = TS.Broadcast(xr[0]), xb = TS.Broadcast(xr[1]);
                T* cr = coef + r * bc;
                TV v0 = TS.Load(ref cr[0]), v1 = TS.Load(ref cr[w]), v2 = TS.Load(ref cr[2 * w]), v3 = TS.Load(ref cr[3 * w]);
                a0 = TS.Fma(v0, xa, a0); a1 = TS.Fma(v1, xa, a1); a2 = TS.Fma(v2, xa, a2); a3 = TS.Fma(v3, xa, a3);
                b0 = TS.Fma(v0, xb, b0); b1 = TS.Fma(v1, xb, b1); b2 = TS.Fma(v2, xb, b2); b3 = TS.Fma(v3, xb, b3);
            }
            TS.Store(a0, ref ac[0]); TS.Store(a1, ref ac[w]); TS.Store(a2, ref ac[2 * w]); TS.Store(a3, ref ac[3 * w]);
            TS.Store(b0, ref ad[0]); TS.Store(b1, ref ad[w]); TS.Store(b2, ref ad[2 * w]); TS.Store(b3, ref ad[3 * w]);
        }
        if (cc < cols)
        {
            T* ac = acc + cc * bc;
            TV a0 = TS.Load(ref ac[0]), a1 = TS.Load(ref ac[w]), a2 = TS.Load(ref ac[2 * w]), a3 = TS.Load(ref ac[3 * w]);
            for (int r = 0; r < rows; r++)
            {
                TV xa = TS.Broadcast(x[(long)r * xStride + cc]);
                T* cr = coef + r * bc;
                a0 = TS.Fma(TS.Load(ref cr[0]), xa, a0); a1 = TS.Fma(TS.Load(ref cr[w]), xa, a1);
                a2 = TS.Fma(TS.Load(ref cr[2 * w]), xa, a2); a3 = TS.Fma(TS.Load(ref cr[3 * w]), xa, a3);
            }
            TS.Store(a0, ref ac[0]); TS.Store(a1, ref ac[w]); TS.Store(a2, ref ac[2 * w]); TS.Store(a3, ref ac[3 * w]);
        }
    }
}
