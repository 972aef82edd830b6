using System.Numerics;
using System.Runtime.CompilerServices;
using FastAttention.Exact;

namespace FastAttention.Gradient;

/// <summary>
/// The FlashAttention-2 backward pass of one head, built from the same register blocks as the exact forward kernel
/// (<see cref="RegisterBlocks{T,TV,TS}"/>: 6 rows × 2 vectors on 16-register CPUs, 6 × 4 on 32), the scale·log₂e folded
/// into the packed Kᵀ, and the vectorised <see cref="ISimd{T,TV}.Exp2"/>.
/// </summary>
/// <remarks>
/// Workers own whole key blocks of <see cref="KeyBlock"/> keys (round-robin, so dK, dV need no synchronisation) and a
/// private dQ accumulator, summed in worker order at the end, so results do not depend on scheduling. Per key block the
/// worker packs s·log₂e·Kᵀ and Vᵀ into panels and s·K row-major; then for every tile of <see cref="QueryTile"/> query
/// rows, each 6-row micro-tile computes S = Q·(s·log₂e·K)ᵀ and P = 2^(S − L·log₂e), dP = dO·Vᵀ and dS = P∘(dP − D), and
/// dQ += dS·(s·K); then the tile adds dV += Pᵀ·dO and dK += dSᵀ·Q (6 keys at a time, the transposed coefficients read
/// in place; dK scaled by s when written). Q and dO are read from zero-padded copies (rows to a multiple of 6, columns
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
    /// One head: dQ (n×d), dK (m×d), dV (m×dv) of ⟨dO, softmax(s·QKᵀ)·V⟩ from the forward pass's output
    /// <paramref name="o"/> and log-sum-exp <paramref name="lse"/>. The outputs must be zero on entry. <paramref name="wideBlocks"/>:
    /// 6 × 4-vector register blocks, else 6 × 2; see <see cref="WideBlocksByDefault"/>.
    /// </summary>
    public static void Run(T* q, T* k, T* v, T* o, T* dO, T* lse, T* dq, T* dk, T* dvOut,
        int n, int m, int d, int dv, double scale, bool causal, int workers, bool wideBlocks)
    {
        int w = TS.Count, bc = KeyBlock;
        int blocks = (m + bc - 1) / bc;
        int dPad = (d + w - 1) / w * w, dvPad = (dv + w - 1) / w * w;
        int nPad = (n + MicroRows - 1) / MicroRows * MicroRows;
        workers = Math.Max(1, Math.Min(workers, blocks));
        // 6-row micro-tiles read whole vectors of 6 rows: zero-padded copies (rows past n, columns past d / dv).
        var qCopy = GC.AllocateArray<T>(nPad * dPad, pinned: true);
        var doCopy = GC.AllocateArray<T>(nPad * dvPad, pinned: true);
        var rows = GC.AllocateArray<T>(2 * nPad, pinned: true); // L·log₂e, then D = rowsum(dO∘O); zero past n
        var partials = new T[workers][];
        fixed (T* pqc = qCopy) fixed (T* pdc = doCopy) fixed (T* prow = rows)
        {
            PadRows(q, n, d, pqc, dPad);
            PadRows(dO, n, dv, pdc, dvPad);
            RowTerms(lse, o, dO, n, dv, prow, prow + nPad);
            nint nq = (nint)pqc, ndo = (nint)pdc, nrow = (nint)prow;
            nint nk = (nint)k, nv = (nint)v, ndk = (nint)dk, ndv = (nint)dvOut;
            T kScale = T.CreateTruncating(scale * 1.4426950408889634); // s·log₂e folded into Kᵀ: exp(s·x − L) = 2^(s·log₂e·x − L·log₂e)
            T sT = T.CreateTruncating(scale);
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, worker =>
            {
                var part = GC.AllocateArray<T>(nPad * dPad, pinned: true);
                var scratch = new Scratch(bc, d, dv, dPad, dvPad, RegisterBlocks<T, TV, TS>.PanelWidth(wideBlocks));
                fixed (T* pdq = part)
                fixed (T* pp = scratch.P) fixed (T* pds = scratch.DS) fixed (T* pdk = scratch.DK) fixed (T* pdv = scratch.DV)
                fixed (T* pkt = scratch.Kt) fixed (T* pkr = scratch.Kr) fixed (T* pvt = scratch.Vt)
                {
                    var x = new Context
                    {
                        Q = (T*)nq, DO = (T*)ndo, L2 = (T*)nrow, D = (T*)nrow + nPad, K = (T*)nk, V = (T*)nv,
                        DQ = pdq, DK = (T*)ndk, DV = (T*)ndv,
                        P = pp, DS = pds, DKAcc = pdk, DVAcc = pdv, Kt = pkt, Kr = pkr, Vt = pvt,
                        N = n, M = m, Dk = d, Dv = dv, DPad = dPad, DvPad = dvPad, Bc = bc, Panel = RegisterBlocks<T, TV, TS>.PanelWidth(wideBlocks),
                        Causal = causal, Wide = wideBlocks, KScale = kScale, Scale = sT,
                    };
                    for (int b = worker; b < blocks; b += workers) ProcessBlock(ref x, b);
                }
                partials[worker] = part;
            });
            // dQ = Σ_workers partial, in a fixed order (results independent of scheduling).
            Gather(dq, n, d, dPad, partials);
        }
    }

    /// <summary>Zero-padded copy of a rows×cols matrix with row stride <paramref name="stride"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PadRows(T* src, int rows, int cols, T* dst, int stride)
    {
        for (int i = 0; i < rows; i++)
            new ReadOnlySpan<T>(src + (long)i * cols, cols).CopyTo(new Span<T>(dst + (long)i * stride, cols));
    }

    /// <summary>l2[i] = Lᵢ·log₂e and rowD[i] = Dᵢ = ⟨dOᵢ, Oᵢ⟩ (FlashAttention-2 Alg. 2 line 4, accumulated in float64).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowTerms(T* lse, T* o, T* dO, int n, int dv, T* l2, T* rowD)
    {
        T log2e = T.CreateTruncating(1.4426950408889634);
        for (int i = 0; i < n; i++)
        {
            l2[i] = lse[i] * log2e;
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
        public T* Q, DO, L2, D, K, V, DQ, DK, DV, P, DS, DKAcc, DVAcc, Kt, Kr, Vt;
        public int N, M, Dk, Dv, DPad, DvPad, Bc, Panel;
        public bool Causal, Wide;
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
    }

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
            }
            else
            {
                for (int c = 0; c < d; c++) kt[c * panel] = T.Zero;
                for (int c = 0; c < dv; c++) vt[c * panel] = T.Zero;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ProcessBlock(ref Context x, int b)
    {
        int bc = x.Bc, d = x.Dk, dv = x.Dv, dPad = x.DPad, dvPad = x.DvPad, w = TS.Count, panel = x.Panel;
        int panels = (bc + panel - 1) / panel;
        int j0 = b * bc, keys = Math.Min(bc, x.M - j0);
        int firstQuery = x.Causal ? j0 : 0;
        if (firstQuery >= x.N) return; // no query sees these keys: their gradients stay 0
        PackBlock(ref x, j0, keys);
        new Span<T>(x.DKAcc, RoundUp(bc, MicroRows) * dPad).Clear();
        new Span<T>(x.DVAcc, RoundUp(bc, MicroRows) * dvPad).Clear();
        T* p = x.P, ds = x.DS;
        for (int i0 = firstQuery / QueryTile * QueryTile; i0 < x.N; i0 += QueryTile)
        {
            int rows = Math.Min(QueryTile, x.N - i0);
            int micro = (rows + MicroRows - 1) / MicroRows;
            // Causal: micro-tiles whose rows all precede the block see none of its keys.
            int first = x.Causal ? Math.Max(0, j0 - i0) / MicroRows : 0;
            for (int mt = first; mt < micro; mt++)
            {
                int r0 = mt * MicroRows, i = i0 + r0;
                T* qi = x.Q + (long)i * dPad, doi = x.DO + (long)i * dvPad;
                T* pr = p + r0 * bc, dsr = ds + r0 * bc;
                // P = 2^(Q·(s·log₂e·K)ᵀ − L·log₂e), hidden keys 0.
                for (int pn = 0; pn < panels; pn++) RegisterBlocks<T, TV, TS>.Product6(x.Wide, qi, dPad, x.Kt + (long)pn * d * panel, d, pr + pn * panel, bc);
                for (int r = 0; r < MicroRows; r++)
                {
                    T* row = pr + r * bc;
                    TV l = TS.Broadcast(x.L2[i + r]);
                    for (int c = 0; c < bc; c += w) TS.Store(TS.Exp2(TS.Sub(TS.Load(ref row[c]), l)), ref row[c]);
                }
                if (j0 + bc > x.M || (x.Causal && j0 + bc - 1 > i)) Mask(pr, bc, j0, i, x.M, x.Causal);
                // dS = P∘(dO·Vᵀ − D).
                for (int pn = 0; pn < panels; pn++) RegisterBlocks<T, TV, TS>.Product6(x.Wide, doi, dvPad, x.Vt + (long)pn * dv * panel, dv, dsr + pn * panel, bc);
                for (int r = 0; r < MicroRows; r++)
                {
                    T* row = dsr + r * bc, prow = pr + r * bc;
                    TV dr = TS.Broadcast(x.D[i + r]);
                    for (int c = 0; c < bc; c += w) TS.Store(TS.Mul(TS.Load(ref prow[c]), TS.Sub(TS.Load(ref row[c]), dr)), ref row[c]);
                }
                // dQ += dS·(s·K).
                RegisterBlocks<T, TV, TS>.Accumulate6(x.Wide, dsr, bc, 1, keys, x.Kr, dPad, x.DQ + (long)i * dPad, dPad, dPad);
            }
            // dV += Pᵀ·dO and dK += dSᵀ·Q over the tile's rows, 6 keys at a time (coefficient P[i, key] at key + i·bc).
            int r1 = first * MicroRows, count = micro * MicroRows - r1;
            for (int kg = 0; kg < keys; kg += MicroRows)
            {
                RegisterBlocks<T, TV, TS>.Accumulate6(x.Wide, p + r1 * bc + kg, 1, bc, count, x.DO + (long)(i0 + r1) * dvPad, dvPad, x.DVAcc + kg * dvPad, dvPad, dvPad);
                RegisterBlocks<T, TV, TS>.Accumulate6(x.Wide, ds + r1 * bc + kg, 1, bc, count, x.Q + (long)(i0 + r1) * dPad, dPad, x.DKAcc + kg * dPad, dPad, dPad);
            }
        }
        for (int jj = 0; jj < keys; jj++)
        {
            T* dkj = x.DK + (long)(j0 + jj) * d, dkAcc = x.DKAcc + jj * dPad;
            for (int c = 0; c < d; c++) dkj[c] = dkAcc[c] * x.Scale;
            new ReadOnlySpan<T>(x.DVAcc + jj * dvPad, dv).CopyTo(new Span<T>(x.DV + (long)(j0 + jj) * dv, dv));
        }
    }

    /// <summary>P = 0 for keys past m and, when causal, keys j &gt; i (6 rows from <paramref name="rowStart"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Mask(T* p, int bc, int j0, int rowStart, int m, bool causal)
    {
        for (int r = 0; r < MicroRows; r++)
        {
            int limit = causal ? Math.Min(rowStart + r, m - 1) : m - 1;
            for (int jj = Math.Max(0, limit - j0 + 1); jj < bc; jj++) p[r * bc + jj] = T.Zero;
        }
    }
}
