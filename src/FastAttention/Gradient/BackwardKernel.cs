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
/// The FlashAttention-2 backward pass of one K/V head and the query heads that read it, written once against <see cref="ISimd{T,TV}"/> in the style of the
/// exact forward kernel (<see cref="FlashKernel{T,TV,TS}"/>): 4-row × 4-vector register blocks (16 accumulators, each
/// panel load feeding four FMAs), the scale·log₂e folded into the packed Kᵀ, the vectorised
/// <see cref="ISimd{T,TV}.Exp2"/>, and every hot method <see cref="MethodImplOptions.AggressiveOptimization"/>.
/// </summary>
/// <remarks>
/// Workers own whole key blocks of <see cref="KeyVectors"/>·W keys (round-robin, so dK, dV need no synchronisation) and
/// a private dQ accumulator (worker 0's is the output itself when nothing is padded), summed in worker order at the
/// end, so results do not depend on scheduling. Per key block the worker packs s·log₂e·Kᵀ, s·K and Vᵀ into its own
/// panels; then for every tile of <see cref="QueryTile"/> query rows, each 4-row micro-tile computes
/// P = 2^(Q·(s·log₂e·K)ᵀ − L·log₂e) in the epilogue of the S product, dS = P∘(dO·Vᵀ − D) in the epilogue of the dP
/// product and dQ += dS·(s·K); then the tile adds dV += Pᵀ·dO and dK += dSᵀ·Q (4 keys × 4 vectors, summing over
/// the tile's rows; dK scaled by s when written). Q and dO are read in place unless d, dv are not multiples of W or
/// n of 4 (then zero-padded copies). Working memory: O(n) row terms, per-worker dQ (n·d) and per-worker panels and
/// tiles — never n×m.
/// </remarks>
internal static unsafe class BackwardKernel<T, TV, TS>
    where T : unmanaged, IBinaryFloatingPointIeee754<T>
    where TV : unmanaged
    where TS : struct, ISimd<T, TV>
{
    public const int MicroRows = 4;
    public const int QueryTile = 64;
    /// <summary>Key block = this many vectors: one 4-vector slice of logits per micro-tile, so the block's three packed
    /// panels (Kᵀ, K, Vᵀ; 16 KB each for float32 at d = 64 with AVX-512) and the P and dS tiles stay near L1.</summary>
    public const int KeyVectors = 4;

    public static int KeyBlock => KeyVectors * TS.Count;

    /// <summary>16 accumulators + 4 panel vectors + a broadcast fit only in 32 vector registers (EVEX, AVX-512); with
    /// 16 (AVX2) they spill, and the kernel uses 4-row × 2-vector blocks instead.</summary>
    public static bool WideBlocksByDefault => SimdInfo.VectorRegisters >= 32;

    /// <summary>
    /// One K/V head and the group of query heads that read it (one head for multi-head attention): dQ of each query
    /// head, and dK (m×d), dV (m×dv) summed over the group, of ⟨dO, softmax(s·QKᵀ + bias)·V⟩, from the forward pass's
    /// outputs and log-sum-exps. The outputs must be zero on entry; m is the number of keys that exist (the key length).
    /// <paramref name="wideBlocks"/>: 4-row × 4-vector register blocks (16 accumulators; needs the 32 vector registers
    /// of AVX-512) or 4-row × 2-vector blocks (8 accumulators, for 16 registers); see <see cref="WideBlocksByDefault"/>.
    /// Each (query tile, key block) is classified by its head's mask (<see cref="KernelMask.Classify"/>): hidden pairs are
    /// skipped, partly visible ones (and every block under a bias) get the per-element epilogue before the exp.
    /// </summary>
    public static void Run(BackwardHeadInput[] heads, T* k, T* v, T* dk, T* dvOut,
        int n, int m, int d, int dv, double scale, int workers, bool wideBlocks)
    {
        int w = TS.Count, bc = KeyBlock, group = heads.Length;
        int blocks = (m + bc - 1) / bc;
        int dPad = (d + w - 1) / w * w, dvPad = (dv + w - 1) / w * w;
        int nPad = (n + MicroRows - 1) / MicroRows * MicroRows;
        workers = Math.Max(1, Math.Min(workers, blocks));
        // Rows of Q and dO are read in 4-row micro-tiles and whole vectors: use them in place when that stays inside
        // them, else padded copies (zero rows past n, zero columns past d / dv).
        bool inPlace = d == dPad && dv == dvPad && n == nPad;
        var qCopy = new T[group][]; var doCopy = new T[group][];
        var rows = new T[group][]; // L·log₂e, then D = rowsum(dO∘O); zero past n
        var prepared = new Prepared[group];
        {
            for (int g = 0; g < group; g++)
            {
                var h = heads[g];
                rows[g] = GC.AllocateArray<T>(2 * nPad, pinned: true);
                T* prow = Pin(rows[g]);
                T* pq = (T*)h.Q, pdo = (T*)h.DO;
                if (!inPlace)
                {
                    qCopy[g] = GC.AllocateArray<T>(nPad * dPad, pinned: true);
                    doCopy[g] = GC.AllocateArray<T>(nPad * dvPad, pinned: true);
                    pq = Pin(qCopy[g]); pdo = Pin(doCopy[g]);
                    PadRows((T*)h.Q, n, d, pq, dPad);
                    PadRows((T*)h.DO, n, dv, pdo, dvPad);
                }
                RowTerms((T*)h.Lse, (T*)h.O, (T*)h.DO, n, dv, prow, prow + nPad);
                prepared[g] = new Prepared { Q = pq, DO = pdo, L2 = prow, D = prow + nPad, DQ = (T*)h.DQ, Mask = h.Mask };
            }
            var partials = new T[workers][][];
            T kScale = T.CreateTruncating(scale * 1.4426950408889634); // s·log₂e folded into Kᵀ: exp(s·x − L) = 2^(s·log₂e·x − L·log₂e)
            T sT = T.CreateTruncating(scale);
            nint nk = (nint)k, nv = (nint)v, ndk = (nint)dk, ndv = (nint)dvOut;
            Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, worker =>
            {
                // Worker 0 accumulates dQ in the outputs themselves when their rows are not padded.
                var part = new T[group][];
                var dqs = new nint[group];
                var scratch = new Scratch(bc, d, dv, dPad, dvPad);
                {
                    for (int g = 0; g < group; g++)
                    {
                        if (worker == 0 && inPlace) { dqs[g] = (nint)prepared[g].DQ; continue; }
                        part[g] = GC.AllocateArray<T>(nPad * dPad, pinned: true);
                        dqs[g] = (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref part[g][0]);
                    }
                    fixed (T* pp = scratch.P) fixed (T* pds = scratch.DS) fixed (T* pdk = scratch.DK) fixed (T* pdv = scratch.DV)
                    fixed (T* pkt = scratch.Kt) fixed (T* pkr = scratch.Kr) fixed (T* pvt = scratch.Vt)
                    {
                        var x = new Context
                        {
                            Heads = prepared, DQs = dqs, K = (T*)nk, V = (T*)nv, DK = (T*)ndk, DV = (T*)ndv,
                            P = pp, DS = pds, DKAcc = pdk, DVAcc = pdv, Kt = pkt, Kr = pkr, Vt = pvt,
                            N = n, M = m, Dk = d, Dv = dv, DPad = dPad, DvPad = dvPad, Bc = bc, Wide = wideBlocks, KScale = kScale, Scale = sT,
                        };
                        for (int b = worker; b < blocks; b += workers) ProcessBlock(ref x, b);
                    }
                }
                partials[worker] = part;
            });
            // dQ = Σ_workers partial, in a fixed order (results independent of scheduling).
            for (int g = 0; g < group; g++)
            {
                var per = new T[workers][];
                for (int wk = 0; wk < workers; wk++) per[wk] = partials[wk][g];
                Gather((T*)heads[g].DQ, n, d, dPad, per, inPlace);
            }
        }

        static T* Pin(T[] a) => (T*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref a[0]); // arrays allocated pinned
    }

    /// <summary>A query head's inputs as the block loop reads them: Q and dO (padded or in place), row terms, mask.</summary>
    private struct Prepared
    {
        public T* Q, DO, L2, D, DQ;
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

    /// <summary>dq[i, c] = Σ_w partials[w][i·dPad + c] in worker order (partials[0] is dq itself when <paramref name="inPlace"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gather(T* dq, int n, int d, int dPad, T[][] partials, bool inPlace)
    {
        int first = inPlace ? 1 : 0;
        if (first == partials.Length) return;
        for (int i = 0; i < n; i++)
        {
            T* dst = dq + (long)i * d;
            if (first == 0) new ReadOnlySpan<T>(partials[0], i * dPad, d).CopyTo(new Span<T>(dst, d));
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
        public T* K, V, DK, DV, P, DS, DKAcc, DVAcc, Kt, Kr, Vt;
        public int N, M, Dk, Dv, DPad, DvPad, Bc;
        public bool Wide;
        public T KScale, Scale;
    }

    private sealed class Scratch(int bc, int d, int dv, int dPad, int dvPad)
    {
        public readonly T[] P = GC.AllocateArray<T>(QueryTile * bc, pinned: true);
        public readonly T[] DS = GC.AllocateArray<T>(QueryTile * bc, pinned: true);
        public readonly T[] DK = GC.AllocateArray<T>(bc * dPad, pinned: true);
        public readonly T[] DV = GC.AllocateArray<T>(bc * dvPad, pinned: true);
        /// <summary>This block's s·log₂e·Kᵀ (d × bc), s·K (bc × dPad) and Vᵀ (dv × bc), zero-padded.</summary>
        public readonly T[] Kt = GC.AllocateArray<T>(d * bc, pinned: true);
        public readonly T[] Kr = GC.AllocateArray<T>(bc * dPad, pinned: true);
        public readonly T[] Vt = GC.AllocateArray<T>(dv * bc, pinned: true);
    }

    /// <summary>Packs key block [j0, j0 + keys) into the worker's panels: Kᵀ·s·log₂e and Vᵀ (columns past keys zero) and
    /// K·s row-major (rows past keys are never read; columns past d stay zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBlock(ref Context x, int j0, int keys)
    {
        int bc = x.Bc, d = x.Dk, dv = x.Dv, dPad = x.DPad;
        T* kb = x.K + (long)j0 * d, vb = x.V + (long)j0 * dv;
        if (keys < bc)
        {
            new Span<T>(x.Kt, d * bc).Clear();
            new Span<T>(x.Vt, dv * bc).Clear();
        }
        for (int jj = 0; jj < keys; jj++)
        {
            T* kj = kb + (long)jj * d, kr = x.Kr + jj * dPad;
            for (int c = 0; c < d; c++) { x.Kt[c * bc + jj] = kj[c] * x.KScale; kr[c] = kj[c] * x.Scale; }
            T* vj = vb + (long)jj * dv;
            for (int c = 0; c < dv; c++) x.Vt[c * bc + jj] = vj[c];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ProcessBlock(ref Context x, int b)
    {
        int bc = x.Bc, d = x.Dk, dv = x.Dv, dPad = x.DPad, dvPad = x.DvPad, w = TS.Count;
        int j0 = b * bc, keys = Math.Min(bc, x.M - j0);
        int keys4 = (keys + MicroRows - 1) / MicroRows * MicroRows;
        bool packed = false;
        T* p = x.P, ds = x.DS;
        for (int g = 0; g < x.Heads.Length; g++)
        {
            ref readonly var hd = ref x.Heads[g];
            T* q = hd.Q, dO = hd.DO, l2 = hd.L2, rowD = hd.D, dq = (T*)x.DQs[g];
            var mask = hd.Mask;
            for (int i0 = 0; i0 < x.N; i0 += QueryTile)
            {
                int rows = Math.Min(QueryTile, x.N - i0);
                var tile = mask.Classify(i0, rows, j0, bc);
                if (tile == BlockVisibility.Hidden) continue; // no row of the tile sees a key of the block
                if (!packed)
                {
                    PackBlock(ref x, j0, keys);
                    new Span<T>(x.DKAcc, bc * dPad).Clear();
                    new Span<T>(x.DVAcc, bc * dvPad).Clear();
                    packed = true;
                }
                int micro = (rows + MicroRows - 1) / MicroRows;
                int first = micro, last = -1;
                for (int mt = 0; mt < micro; mt++)
                {
                    int r0 = mt * MicroRows, i = i0 + r0;
                    T* qi = q + (long)i * dPad, doi = dO + (long)i * dvPad;
                    T* pr = p + r0 * bc, dsr = ds + r0 * bc;
                    var vis = tile == BlockVisibility.Full ? BlockVisibility.Full : mask.Classify(i, Math.Min(MicroRows, x.N - i), j0, bc);
                    if (vis == BlockVisibility.Hidden)
                    {
                        // These 4 rows see none of the block's keys: P = dS = 0 (the tile's column sums read them).
                        new Span<T>(pr, MicroRows * bc).Clear();
                        new Span<T>(dsr, MicroRows * bc).Clear();
                        continue;
                    }
                    first = Math.Min(first, mt); last = mt;
                    bool epilogue = vis == BlockVisibility.Partial || mask.HasBias;
                    if (x.Wide)
                        for (int slice = 0; slice < KeyVectors; slice += 4)
                            Probabilities(qi, dPad, d, x.Kt + slice * w, bc, l2 + i, pr + slice * w, epilogue);
                    else
                        for (int slice = 0; slice < KeyVectors; slice += 2)
                            Probabilities2(qi, dPad, d, x.Kt + slice * w, bc, l2 + i, pr + slice * w, epilogue);
                    if (epilogue)
                    {
                        // Logits are raw here: hide pairs (−∞), add the bias, then P = 2^(S − L₂).
                        mask.Apply(pr, bc, i, MicroRows, j0, bc);
                        Exponentiate(pr, bc, l2 + i);
                    }
                    if (x.Wide)
                        for (int slice = 0; slice < KeyVectors; slice += 4)
                            ScoreGradients(doi, dvPad, dv, x.Vt + slice * w, bc, pr + slice * w, rowD + i, dsr + slice * w);
                    else
                        for (int slice = 0; slice < KeyVectors; slice += 2)
                            ScoreGradients2(doi, dvPad, dv, x.Vt + slice * w, bc, pr + slice * w, rowD + i, dsr + slice * w);
                    AccumulateRows(dsr, bc, keys, x.Kr, dPad, dq + (long)i * dPad, x.Wide);
                }
                if (last < first) continue;
                int r = first * MicroRows, count = (last + 1) * MicroRows - r;
                AccumulateColumns(p + r * bc, bc, keys4, dO + (long)(i0 + r) * dvPad, dvPad, count, x.DVAcc, x.Wide);
                AccumulateColumns(ds + r * bc, bc, keys4, q + (long)(i0 + r) * dPad, dPad, count, x.DKAcc, x.Wide);
            }
        }
        if (!packed) return; // no query of the group sees these keys: their gradients stay 0
        for (int jj = 0; jj < keys; jj++)
        {
            T* dkj = x.DK + (long)(j0 + jj) * d, dkAcc = x.DKAcc + jj * dPad;
            for (int c = 0; c < d; c++) dkj[c] = dkAcc[c] * x.Scale;
            new ReadOnlySpan<T>(x.DVAcc + jj * dvPad, dv).CopyTo(new Span<T>(x.DV + (long)(j0 + jj) * dv, dv));
        }
    }

    /// <summary>P = 2^(S − L₂) in place for 4 rows of raw logits (after the mask epilogue; −∞ gives 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Exponentiate(T* s, int bc, T* l2)
    {
        int w = TS.Count;
        for (int r = 0; r < MicroRows; r++)
        {
            TV l = TS.Broadcast(l2[r]);
            T* sr = s + r * bc;
            for (int c = 0; c < bc; c += w) TS.Store(TS.Exp2(TS.Sub(TS.Load(ref sr[c]), l)), ref sr[c]);
        }
    }

    /// <summary>P = 2^(Q̃·Kᵀ − L₂) for 4 rows × 4W keys: the S product (accumulators in registers) with the exp in its epilogue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Probabilities(T* q, int qStride, int d, T* kt, int bc, T* l2, T* p, bool raw)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a02 = TS.Zero, a03 = TS.Zero;
        TV a10 = TS.Zero, a11 = TS.Zero, a12 = TS.Zero, a13 = TS.Zero;
        TV a20 = TS.Zero, a21 = TS.Zero, a22 = TS.Zero, a23 = TS.Zero;
        TV a30 = TS.Zero, a31 = TS.Zero, a32 = TS.Zero, a33 = TS.Zero;
        T* q0 = q, q1 = q + qStride, q2 = q + 2 * qStride, q3 = q + 3 * qStride;
        for (int c = 0; c < d; c++)
        {
            T* kc = kt + c * bc;
            TV k0 = TS.Load(ref *kc), k1 = TS.Load(ref kc[w]), k2 = TS.Load(ref kc[2 * w]), k3 = TS.Load(ref kc[3 * w]);
            TV b = TS.Broadcast(q0[c]);
            a00 = TS.Fma(b, k0, a00); a01 = TS.Fma(b, k1, a01); a02 = TS.Fma(b, k2, a02); a03 = TS.Fma(b, k3, a03);
            b = TS.Broadcast(q1[c]);
            a10 = TS.Fma(b, k0, a10); a11 = TS.Fma(b, k1, a11); a12 = TS.Fma(b, k2, a12); a13 = TS.Fma(b, k3, a13);
            b = TS.Broadcast(q2[c]);
            a20 = TS.Fma(b, k0, a20); a21 = TS.Fma(b, k1, a21); a22 = TS.Fma(b, k2, a22); a23 = TS.Fma(b, k3, a23);
            b = TS.Broadcast(q3[c]);
            a30 = TS.Fma(b, k0, a30); a31 = TS.Fma(b, k1, a31); a32 = TS.Fma(b, k2, a32); a33 = TS.Fma(b, k3, a33);
        }
        if (raw)
        {
            // The mask epilogue comes between the logits and the exp: store S as it is.
            TS.Store(a00, ref p[0]); TS.Store(a01, ref p[w]); TS.Store(a02, ref p[2 * w]); TS.Store(a03, ref p[3 * w]);
            T* r1 = p + bc; TS.Store(a10, ref r1[0]); TS.Store(a11, ref r1[w]); TS.Store(a12, ref r1[2 * w]); TS.Store(a13, ref r1[3 * w]);
            T* r2 = p + 2 * bc; TS.Store(a20, ref r2[0]); TS.Store(a21, ref r2[w]); TS.Store(a22, ref r2[2 * w]); TS.Store(a23, ref r2[3 * w]);
            T* r3 = p + 3 * bc; TS.Store(a30, ref r3[0]); TS.Store(a31, ref r3[w]); TS.Store(a32, ref r3[2 * w]); TS.Store(a33, ref r3[3 * w]);
            return;
        }
        TV l = TS.Broadcast(l2[0]);
        TS.Store(TS.Exp2(TS.Sub(a00, l)), ref p[0]); TS.Store(TS.Exp2(TS.Sub(a01, l)), ref p[w]);
        TS.Store(TS.Exp2(TS.Sub(a02, l)), ref p[2 * w]); TS.Store(TS.Exp2(TS.Sub(a03, l)), ref p[3 * w]);
        T* p1 = p + bc; l = TS.Broadcast(l2[1]);
        TS.Store(TS.Exp2(TS.Sub(a10, l)), ref p1[0]); TS.Store(TS.Exp2(TS.Sub(a11, l)), ref p1[w]);
        TS.Store(TS.Exp2(TS.Sub(a12, l)), ref p1[2 * w]); TS.Store(TS.Exp2(TS.Sub(a13, l)), ref p1[3 * w]);
        T* p2 = p + 2 * bc; l = TS.Broadcast(l2[2]);
        TS.Store(TS.Exp2(TS.Sub(a20, l)), ref p2[0]); TS.Store(TS.Exp2(TS.Sub(a21, l)), ref p2[w]);
        TS.Store(TS.Exp2(TS.Sub(a22, l)), ref p2[2 * w]); TS.Store(TS.Exp2(TS.Sub(a23, l)), ref p2[3 * w]);
        T* p3 = p + 3 * bc; l = TS.Broadcast(l2[3]);
        TS.Store(TS.Exp2(TS.Sub(a30, l)), ref p3[0]); TS.Store(TS.Exp2(TS.Sub(a31, l)), ref p3[w]);
        TS.Store(TS.Exp2(TS.Sub(a32, l)), ref p3[2 * w]); TS.Store(TS.Exp2(TS.Sub(a33, l)), ref p3[3 * w]);
    }

    /// <summary>dS = P∘(dO·Vᵀ − D) for 4 rows × 4W keys: the dP product with the softmax Jacobian in its epilogue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreGradients(T* dO, int doStride, int dv, T* vt, int bc, T* p, T* rowD, T* ds)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a02 = TS.Zero, a03 = TS.Zero;
        TV a10 = TS.Zero, a11 = TS.Zero, a12 = TS.Zero, a13 = TS.Zero;
        TV a20 = TS.Zero, a21 = TS.Zero, a22 = TS.Zero, a23 = TS.Zero;
        TV a30 = TS.Zero, a31 = TS.Zero, a32 = TS.Zero, a33 = TS.Zero;
        T* o0 = dO, o1 = dO + doStride, o2 = dO + 2 * doStride, o3 = dO + 3 * doStride;
        for (int c = 0; c < dv; c++)
        {
            T* vc = vt + c * bc;
            TV v0 = TS.Load(ref *vc), v1 = TS.Load(ref vc[w]), v2 = TS.Load(ref vc[2 * w]), v3 = TS.Load(ref vc[3 * w]);
            TV b = TS.Broadcast(o0[c]);
            a00 = TS.Fma(b, v0, a00); a01 = TS.Fma(b, v1, a01); a02 = TS.Fma(b, v2, a02); a03 = TS.Fma(b, v3, a03);
            b = TS.Broadcast(o1[c]);
            a10 = TS.Fma(b, v0, a10); a11 = TS.Fma(b, v1, a11); a12 = TS.Fma(b, v2, a12); a13 = TS.Fma(b, v3, a13);
            b = TS.Broadcast(o2[c]);
            a20 = TS.Fma(b, v0, a20); a21 = TS.Fma(b, v1, a21); a22 = TS.Fma(b, v2, a22); a23 = TS.Fma(b, v3, a23);
            b = TS.Broadcast(o3[c]);
            a30 = TS.Fma(b, v0, a30); a31 = TS.Fma(b, v1, a31); a32 = TS.Fma(b, v2, a32); a33 = TS.Fma(b, v3, a33);
        }
        TV dr = TS.Broadcast(rowD[0]);
        TS.Store(TS.Mul(TS.Load(ref p[0]), TS.Sub(a00, dr)), ref ds[0]); TS.Store(TS.Mul(TS.Load(ref p[w]), TS.Sub(a01, dr)), ref ds[w]);
        TS.Store(TS.Mul(TS.Load(ref p[2 * w]), TS.Sub(a02, dr)), ref ds[2 * w]); TS.Store(TS.Mul(TS.Load(ref p[3 * w]), TS.Sub(a03, dr)), ref ds[3 * w]);
        T* p1 = p + bc, ds1 = ds + bc; dr = TS.Broadcast(rowD[1]);
        TS.Store(TS.Mul(TS.Load(ref p1[0]), TS.Sub(a10, dr)), ref ds1[0]); TS.Store(TS.Mul(TS.Load(ref p1[w]), TS.Sub(a11, dr)), ref ds1[w]);
        TS.Store(TS.Mul(TS.Load(ref p1[2 * w]), TS.Sub(a12, dr)), ref ds1[2 * w]); TS.Store(TS.Mul(TS.Load(ref p1[3 * w]), TS.Sub(a13, dr)), ref ds1[3 * w]);
        T* p2 = p + 2 * bc, ds2 = ds + 2 * bc; dr = TS.Broadcast(rowD[2]);
        TS.Store(TS.Mul(TS.Load(ref p2[0]), TS.Sub(a20, dr)), ref ds2[0]); TS.Store(TS.Mul(TS.Load(ref p2[w]), TS.Sub(a21, dr)), ref ds2[w]);
        TS.Store(TS.Mul(TS.Load(ref p2[2 * w]), TS.Sub(a22, dr)), ref ds2[2 * w]); TS.Store(TS.Mul(TS.Load(ref p2[3 * w]), TS.Sub(a23, dr)), ref ds2[3 * w]);
        T* p3 = p + 3 * bc, ds3 = ds + 3 * bc; dr = TS.Broadcast(rowD[3]);
        TS.Store(TS.Mul(TS.Load(ref p3[0]), TS.Sub(a30, dr)), ref ds3[0]); TS.Store(TS.Mul(TS.Load(ref p3[w]), TS.Sub(a31, dr)), ref ds3[w]);
        TS.Store(TS.Mul(TS.Load(ref p3[2 * w]), TS.Sub(a32, dr)), ref ds3[2 * w]); TS.Store(TS.Mul(TS.Load(ref p3[3 * w]), TS.Sub(a33, dr)), ref ds3[3 * w]);
    }

    /// <summary><see cref="Probabilities"/> for 4 rows × 2W keys (8 accumulators, for 16 vector registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Probabilities2(T* q, int qStride, int d, T* kt, int bc, T* l2, T* p, bool raw)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero, a20 = TS.Zero, a21 = TS.Zero, a30 = TS.Zero, a31 = TS.Zero;
        T* q0 = q, q1 = q + qStride, q2 = q + 2 * qStride, q3 = q + 3 * qStride;
        for (int c = 0; c < d; c++)
        {
            T* kc = kt + c * bc;
            TV k0 = TS.Load(ref *kc), k1 = TS.Load(ref kc[w]);
            TV b = TS.Broadcast(q0[c]); a00 = TS.Fma(b, k0, a00); a01 = TS.Fma(b, k1, a01);
            b = TS.Broadcast(q1[c]); a10 = TS.Fma(b, k0, a10); a11 = TS.Fma(b, k1, a11);
            b = TS.Broadcast(q2[c]); a20 = TS.Fma(b, k0, a20); a21 = TS.Fma(b, k1, a21);
            b = TS.Broadcast(q3[c]); a30 = TS.Fma(b, k0, a30); a31 = TS.Fma(b, k1, a31);
        }
        if (raw)
        {
            TS.Store(a00, ref p[0]); TS.Store(a01, ref p[w]);
            TS.Store(a10, ref p[bc]); TS.Store(a11, ref p[bc + w]);
            TS.Store(a20, ref p[2 * bc]); TS.Store(a21, ref p[2 * bc + w]);
            TS.Store(a30, ref p[3 * bc]); TS.Store(a31, ref p[3 * bc + w]);
            return;
        }
        TV l = TS.Broadcast(l2[0]);
        TS.Store(TS.Exp2(TS.Sub(a00, l)), ref p[0]); TS.Store(TS.Exp2(TS.Sub(a01, l)), ref p[w]);
        T* p1 = p + bc; l = TS.Broadcast(l2[1]);
        TS.Store(TS.Exp2(TS.Sub(a10, l)), ref p1[0]); TS.Store(TS.Exp2(TS.Sub(a11, l)), ref p1[w]);
        T* p2 = p + 2 * bc; l = TS.Broadcast(l2[2]);
        TS.Store(TS.Exp2(TS.Sub(a20, l)), ref p2[0]); TS.Store(TS.Exp2(TS.Sub(a21, l)), ref p2[w]);
        T* p3 = p + 3 * bc; l = TS.Broadcast(l2[3]);
        TS.Store(TS.Exp2(TS.Sub(a30, l)), ref p3[0]); TS.Store(TS.Exp2(TS.Sub(a31, l)), ref p3[w]);
    }

    /// <summary><see cref="ScoreGradients"/> for 4 rows × 2W keys (8 accumulators, for 16 vector registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreGradients2(T* dO, int doStride, int dv, T* vt, int bc, T* p, T* rowD, T* ds)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero, a20 = TS.Zero, a21 = TS.Zero, a30 = TS.Zero, a31 = TS.Zero;
        T* o0 = dO, o1 = dO + doStride, o2 = dO + 2 * doStride, o3 = dO + 3 * doStride;
        for (int c = 0; c < dv; c++)
        {
            T* vc = vt + c * bc;
            TV v0 = TS.Load(ref *vc), v1 = TS.Load(ref vc[w]);
            TV b = TS.Broadcast(o0[c]); a00 = TS.Fma(b, v0, a00); a01 = TS.Fma(b, v1, a01);
            b = TS.Broadcast(o1[c]); a10 = TS.Fma(b, v0, a10); a11 = TS.Fma(b, v1, a11);
            b = TS.Broadcast(o2[c]); a20 = TS.Fma(b, v0, a20); a21 = TS.Fma(b, v1, a21);
            b = TS.Broadcast(o3[c]); a30 = TS.Fma(b, v0, a30); a31 = TS.Fma(b, v1, a31);
        }
        TV dr = TS.Broadcast(rowD[0]);
        TS.Store(TS.Mul(TS.Load(ref p[0]), TS.Sub(a00, dr)), ref ds[0]); TS.Store(TS.Mul(TS.Load(ref p[w]), TS.Sub(a01, dr)), ref ds[w]);
        T* p1 = p + bc, ds1 = ds + bc; dr = TS.Broadcast(rowD[1]);
        TS.Store(TS.Mul(TS.Load(ref p1[0]), TS.Sub(a10, dr)), ref ds1[0]); TS.Store(TS.Mul(TS.Load(ref p1[w]), TS.Sub(a11, dr)), ref ds1[w]);
        T* p2 = p + 2 * bc, ds2 = ds + 2 * bc; dr = TS.Broadcast(rowD[2]);
        TS.Store(TS.Mul(TS.Load(ref p2[0]), TS.Sub(a20, dr)), ref ds2[0]); TS.Store(TS.Mul(TS.Load(ref p2[w]), TS.Sub(a21, dr)), ref ds2[w]);
        T* p3 = p + 3 * bc, ds3 = ds + 3 * bc; dr = TS.Broadcast(rowD[3]);
        TS.Store(TS.Mul(TS.Load(ref p3[0]), TS.Sub(a30, dr)), ref ds3[0]); TS.Store(TS.Mul(TS.Load(ref p3[w]), TS.Sub(a31, dr)), ref ds3[w]);
    }

    /// <summary>acc[r, :] += Σ_{j &lt; count} c[r, j]·panel[j, :] for 4 rows (c row stride <paramref name="cStride"/>, panel
    /// and acc row stride <paramref name="width"/>, a multiple of W): dQ += dS·K, in 4-row × 4-vector register blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateRows(T* coeffs, int cStride, int count, T* panel, int width, T* acc, bool wide)
    {
        int w = TS.Count;
        T* c0 = coeffs, c1 = coeffs + cStride, c2 = coeffs + 2 * cStride, c3 = coeffs + 3 * cStride;
        T* acc1 = acc + width, acc2 = acc + 2 * width, acc3 = acc + 3 * width;
        int x = 0;
        for (; wide && x + 4 * w <= width; x += 4 * w)
        {
            TV s00 = TS.Load(ref acc[x]), s01 = TS.Load(ref acc[x + w]), s02 = TS.Load(ref acc[x + 2 * w]), s03 = TS.Load(ref acc[x + 3 * w]);
            TV s10 = TS.Load(ref acc1[x]), s11 = TS.Load(ref acc1[x + w]), s12 = TS.Load(ref acc1[x + 2 * w]), s13 = TS.Load(ref acc1[x + 3 * w]);
            TV s20 = TS.Load(ref acc2[x]), s21 = TS.Load(ref acc2[x + w]), s22 = TS.Load(ref acc2[x + 2 * w]), s23 = TS.Load(ref acc2[x + 3 * w]);
            TV s30 = TS.Load(ref acc3[x]), s31 = TS.Load(ref acc3[x + w]), s32 = TS.Load(ref acc3[x + 2 * w]), s33 = TS.Load(ref acc3[x + 3 * w]);
            T* row = panel + x;
            for (int j = 0; j < count; j++, row += width)
            {
                TV p0 = TS.Load(ref row[0]), p1 = TS.Load(ref row[w]), p2 = TS.Load(ref row[2 * w]), p3 = TS.Load(ref row[3 * w]);
                TV b = TS.Broadcast(c0[j]);
                s00 = TS.Fma(b, p0, s00); s01 = TS.Fma(b, p1, s01); s02 = TS.Fma(b, p2, s02); s03 = TS.Fma(b, p3, s03);
                b = TS.Broadcast(c1[j]);
                s10 = TS.Fma(b, p0, s10); s11 = TS.Fma(b, p1, s11); s12 = TS.Fma(b, p2, s12); s13 = TS.Fma(b, p3, s13);
                b = TS.Broadcast(c2[j]);
                s20 = TS.Fma(b, p0, s20); s21 = TS.Fma(b, p1, s21); s22 = TS.Fma(b, p2, s22); s23 = TS.Fma(b, p3, s23);
                b = TS.Broadcast(c3[j]);
                s30 = TS.Fma(b, p0, s30); s31 = TS.Fma(b, p1, s31); s32 = TS.Fma(b, p2, s32); s33 = TS.Fma(b, p3, s33);
            }
            TS.Store(s00, ref acc[x]); TS.Store(s01, ref acc[x + w]); TS.Store(s02, ref acc[x + 2 * w]); TS.Store(s03, ref acc[x + 3 * w]);
            TS.Store(s10, ref acc1[x]); TS.Store(s11, ref acc1[x + w]); TS.Store(s12, ref acc1[x + 2 * w]); TS.Store(s13, ref acc1[x + 3 * w]);
            TS.Store(s20, ref acc2[x]); TS.Store(s21, ref acc2[x + w]); TS.Store(s22, ref acc2[x + 2 * w]); TS.Store(s23, ref acc2[x + 3 * w]);
            TS.Store(s30, ref acc3[x]); TS.Store(s31, ref acc3[x + w]); TS.Store(s32, ref acc3[x + 2 * w]); TS.Store(s33, ref acc3[x + 3 * w]);
        }
        for (; x + 2 * w <= width; x += 2 * w)
        {
            TV s00 = TS.Load(ref acc[x]), s01 = TS.Load(ref acc[x + w]), s10 = TS.Load(ref acc1[x]), s11 = TS.Load(ref acc1[x + w]);
            TV s20 = TS.Load(ref acc2[x]), s21 = TS.Load(ref acc2[x + w]), s30 = TS.Load(ref acc3[x]), s31 = TS.Load(ref acc3[x + w]);
            T* row = panel + x;
            for (int j = 0; j < count; j++, row += width)
            {
                TV p0 = TS.Load(ref row[0]), p1 = TS.Load(ref row[w]);
                TV b = TS.Broadcast(c0[j]); s00 = TS.Fma(b, p0, s00); s01 = TS.Fma(b, p1, s01);
                b = TS.Broadcast(c1[j]); s10 = TS.Fma(b, p0, s10); s11 = TS.Fma(b, p1, s11);
                b = TS.Broadcast(c2[j]); s20 = TS.Fma(b, p0, s20); s21 = TS.Fma(b, p1, s21);
                b = TS.Broadcast(c3[j]); s30 = TS.Fma(b, p0, s30); s31 = TS.Fma(b, p1, s31);
            }
            TS.Store(s00, ref acc[x]); TS.Store(s01, ref acc[x + w]); TS.Store(s10, ref acc1[x]); TS.Store(s11, ref acc1[x + w]);
            TS.Store(s20, ref acc2[x]); TS.Store(s21, ref acc2[x + w]); TS.Store(s30, ref acc3[x]); TS.Store(s31, ref acc3[x + w]);
        }
        for (; x < width; x += w)
        {
            TV s0 = TS.Load(ref acc[x]), s1 = TS.Load(ref acc1[x]), s2 = TS.Load(ref acc2[x]), s3 = TS.Load(ref acc3[x]);
            T* row = panel + x;
            for (int j = 0; j < count; j++, row += width)
            {
                TV p0 = TS.Load(ref row[0]);
                s0 = TS.Fma(TS.Broadcast(c0[j]), p0, s0); s1 = TS.Fma(TS.Broadcast(c1[j]), p0, s1);
                s2 = TS.Fma(TS.Broadcast(c2[j]), p0, s2); s3 = TS.Fma(TS.Broadcast(c3[j]), p0, s3);
            }
            TS.Store(s0, ref acc[x]); TS.Store(s1, ref acc1[x]); TS.Store(s2, ref acc2[x]); TS.Store(s3, ref acc3[x]);
        }
    }

    /// <summary>acc[j, :] += Σ_{i &lt; rows} c[i, j]·panel[i, :] for j &lt; <paramref name="keys"/> (a multiple of 4; c row stride
    /// <paramref name="cStride"/>, panel and acc row stride <paramref name="width"/>): dV += Pᵀ·dO and dK += dSᵀ·Q̃,
    /// 4 keys × 4 vectors per register block, reading the tile's columns in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateColumns(T* coeffs, int cStride, int keys, T* panel, int width, int rows, T* acc, bool wide)
    {
        for (int j = 0; j < keys; j += 4)
            AccumulateRows4(coeffs + j, cStride, rows, panel, width, acc + (long)j * width, wide);
    }

    /// <summary>Four accumulator rows: acc[r, :] += Σ_i c[i·cStride + r]·panel[i, :].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateRows4(T* c, int cStride, int rows, T* panel, int width, T* acc, bool wide)
    {
        int w = TS.Count;
        T* acc1 = acc + width, acc2 = acc + 2 * width, acc3 = acc + 3 * width;
        int x = 0;
        for (; wide && x + 4 * w <= width; x += 4 * w)
        {
            TV s00 = TS.Load(ref acc[x]), s01 = TS.Load(ref acc[x + w]), s02 = TS.Load(ref acc[x + 2 * w]), s03 = TS.Load(ref acc[x + 3 * w]);
            TV s10 = TS.Load(ref acc1[x]), s11 = TS.Load(ref acc1[x + w]), s12 = TS.Load(ref acc1[x + 2 * w]), s13 = TS.Load(ref acc1[x + 3 * w]);
            TV s20 = TS.Load(ref acc2[x]), s21 = TS.Load(ref acc2[x + w]), s22 = TS.Load(ref acc2[x + 2 * w]), s23 = TS.Load(ref acc2[x + 3 * w]);
            TV s30 = TS.Load(ref acc3[x]), s31 = TS.Load(ref acc3[x + w]), s32 = TS.Load(ref acc3[x + 2 * w]), s33 = TS.Load(ref acc3[x + 3 * w]);
            T* row = panel + x, ci = c;
            for (int i = 0; i < rows; i++, row += width, ci += cStride)
            {
                TV p0 = TS.Load(ref row[0]), p1 = TS.Load(ref row[w]), p2 = TS.Load(ref row[2 * w]), p3 = TS.Load(ref row[3 * w]);
                TV b = TS.Broadcast(ci[0]);
                s00 = TS.Fma(b, p0, s00); s01 = TS.Fma(b, p1, s01); s02 = TS.Fma(b, p2, s02); s03 = TS.Fma(b, p3, s03);
                b = TS.Broadcast(ci[1]);
                s10 = TS.Fma(b, p0, s10); s11 = TS.Fma(b, p1, s11); s12 = TS.Fma(b, p2, s12); s13 = TS.Fma(b, p3, s13);
                b = TS.Broadcast(ci[2]);
                s20 = TS.Fma(b, p0, s20); s21 = TS.Fma(b, p1, s21); s22 = TS.Fma(b, p2, s22); s23 = TS.Fma(b, p3, s23);
                b = TS.Broadcast(ci[3]);
                s30 = TS.Fma(b, p0, s30); s31 = TS.Fma(b, p1, s31); s32 = TS.Fma(b, p2, s32); s33 = TS.Fma(b, p3, s33);
            }
            TS.Store(s00, ref acc[x]); TS.Store(s01, ref acc[x + w]); TS.Store(s02, ref acc[x + 2 * w]); TS.Store(s03, ref acc[x + 3 * w]);
            TS.Store(s10, ref acc1[x]); TS.Store(s11, ref acc1[x + w]); TS.Store(s12, ref acc1[x + 2 * w]); TS.Store(s13, ref acc1[x + 3 * w]);
            TS.Store(s20, ref acc2[x]); TS.Store(s21, ref acc2[x + w]); TS.Store(s22, ref acc2[x + 2 * w]); TS.Store(s23, ref acc2[x + 3 * w]);
            TS.Store(s30, ref acc3[x]); TS.Store(s31, ref acc3[x + w]); TS.Store(s32, ref acc3[x + 2 * w]); TS.Store(s33, ref acc3[x + 3 * w]);
        }
        for (; x + 2 * w <= width; x += 2 * w)
        {
            TV s00 = TS.Load(ref acc[x]), s01 = TS.Load(ref acc[x + w]), s10 = TS.Load(ref acc1[x]), s11 = TS.Load(ref acc1[x + w]);
            TV s20 = TS.Load(ref acc2[x]), s21 = TS.Load(ref acc2[x + w]), s30 = TS.Load(ref acc3[x]), s31 = TS.Load(ref acc3[x + w]);
            T* row = panel + x, ci = c;
            for (int i = 0; i < rows; i++, row += width, ci += cStride)
            {
                TV p0 = TS.Load(ref row[0]), p1 = TS.Load(ref row[w]);
                TV b = TS.Broadcast(ci[0]); s00 = TS.Fma(b, p0, s00); s01 = TS.Fma(b, p1, s01);
                b = TS.Broadcast(ci[1]); s10 = TS.Fma(b, p0, s10); s11 = TS.Fma(b, p1, s11);
                b = TS.Broadcast(ci[2]); s20 = TS.Fma(b, p0, s20); s21 = TS.Fma(b, p1, s21);
                b = TS.Broadcast(ci[3]); s30 = TS.Fma(b, p0, s30); s31 = TS.Fma(b, p1, s31);
            }
            TS.Store(s00, ref acc[x]); TS.Store(s01, ref acc[x + w]); TS.Store(s10, ref acc1[x]); TS.Store(s11, ref acc1[x + w]);
            TS.Store(s20, ref acc2[x]); TS.Store(s21, ref acc2[x + w]); TS.Store(s30, ref acc3[x]); TS.Store(s31, ref acc3[x + w]);
        }
        for (; x < width; x += w)
        {
            TV s0 = TS.Load(ref acc[x]), s1 = TS.Load(ref acc1[x]), s2 = TS.Load(ref acc2[x]), s3 = TS.Load(ref acc3[x]);
            T* row = panel + x, ci = c;
            for (int i = 0; i < rows; i++, row += width, ci += cStride)
            {
                TV p0 = TS.Load(ref row[0]);
                s0 = TS.Fma(TS.Broadcast(ci[0]), p0, s0); s1 = TS.Fma(TS.Broadcast(ci[1]), p0, s1);
                s2 = TS.Fma(TS.Broadcast(ci[2]), p0, s2); s3 = TS.Fma(TS.Broadcast(ci[3]), p0, s3);
            }
            TS.Store(s0, ref acc[x]); TS.Store(s1, ref acc1[x]); TS.Store(s2, ref acc2[x]); TS.Store(s3, ref acc3[x]);
        }
    }
}
