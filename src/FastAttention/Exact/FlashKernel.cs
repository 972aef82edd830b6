using System.Numerics;
using System.Runtime.CompilerServices;

namespace FastAttention.Exact;

/// <summary>
/// The FlashAttention-2-style exact kernel, written once against <see cref="ISimd{T,TV}"/>. Queries are cut into tiles
/// of <see cref="QueryTile"/> rows (one task each); keys into blocks of <see cref="KeyVectors"/> vectors. For each key block, every 4-row
/// micro-tile computes its 4×(8·W) logits in two 4×(4·W) register halves (K packed transposed per block, so a broadcast query element
/// meets 4 key vectors), updates its running max and sum (online softmax, log₂ domain: the scale·log₂e is folded into
/// Q), and accumulates P·V into a tile-local accumulator in 4-row × 4-vector register blocks. Working memory:
/// the packed Kᵀ (m·d), a padded V only when d_v is not a multiple of W, and per-thread tiles — never n×m.
/// </summary>
internal static unsafe class FlashKernel<T, TV, TS>
    where T : unmanaged, IBinaryFloatingPointIeee754<T>
    where TV : unmanaged
    where TS : struct, ISimd<T, TV>
{
    public const int MicroRows = 4;
    public const int QueryTile = 64;
    /// <summary>Key block = this many vectors (more for small d, where per-block softmax bookkeeping would
    /// dominate); logits are computed in 4-vector slices (16 accumulators).</summary>
    public static int KeyVectors(int d) => d <= 16 ? 32 : 8;

    /// <summary>Runs one head: O (n×dv) = softmax(s·QKᵀ)·V over pinned row-major buffers.</summary>
    /// <param name="q">Queries, n×d.</param>
    /// <param name="k">Keys, m×d.</param>
    /// <param name="v">Values, m×dv.</param>
    /// <param name="o">Output, n×dv.</param>
    /// <param name="lse">Optional (may be null): receives Lᵢ = log Σ_j exp(s·qᵢ·kⱼ) over visible keys, for the backward pass.</param>
    /// <param name="n">Queries.</param>
    /// <param name="m">Keys.</param>
    /// <param name="d">Head dimension.</param>
    /// <param name="dv">Value dimension.</param>
    /// <param name="scale">The logit scale s.</param>
    /// <param name="mask">The head's mask (key count m, causal alignment, window, boolean mask, bias): key blocks are
    /// classified per query tile (<see cref="KernelMask.Classify"/>); hidden blocks are skipped, partly visible ones (and
    /// every block under a bias) pay the per-element epilogue <see cref="KernelMask.Apply{T}"/>.</param>
    /// <param name="threads">Threads over query tiles.</param>
    /// <param name="narrow">4-row × 2-vector register blocks (8 accumulators) instead of 4 × 4: for CPUs with 16 vector
    /// registers (AVX2 without AVX-512), where 16 accumulators plus operands spill.</param>
    public static void Run(T* q, T* k, T* v, T* o, T* lse, int n, int m, int d, int dv, double scale, KernelMask mask, int threads, bool narrow)
    {
        int w = TS.Count, keyVectors = KeyVectors(d), bc = keyVectors * w;
        int blocks = (m + bc - 1) / bc, mPad = blocks * bc;
        int dvPad = (dv + w - 1) / w * w;
        // d_v narrower than a vector: pack V transposed per block and vectorise P·V across keys instead.
        bool transposeV = dv < w;
        bool packV = dv != dvPad;
        var kt = GC.AllocateUninitializedArray<T>(mPad * d, pinned: true);
        fixed (T* pkt = kt)
        {
            PackKeys(k, pkt, m, d, bc, blocks);
            T[]? vPacked = packV ? GC.AllocateUninitializedArray<T>(mPad * (transposeV ? dv : dvPad), pinned: true) : null;
            // The last, partial key block reads V rows beyond m: give it a zero-padded copy.
            T[] vTail = GC.AllocateArray<T>(bc * dvPad, pinned: true);
            fixed (T* pvp = vPacked)
            fixed (T* ptail = vTail)
            {
                if (transposeV) PackKeys(v, pvp, m, dv, bc, blocks); // same transposed block layout as K
                else if (packV) PackValues(v, pvp, m, dv, dvPad, mPad);
                int tailRows = m - (blocks - 1) * bc;
                if (!packV && tailRows < bc)
                    for (int j = 0; j < tailRows; j++)
                        new ReadOnlySpan<T>(v + ((blocks - 1) * bc + j) * (long)dv, dv).CopyTo(new Span<T>(ptail + j * dvPad, dv));
                nint pl = (nint)lse, pq = (nint)q, pk = (nint)pkt, pv = packV ? (nint)pvp : (nint)v, pt = (nint)ptail, po = (nint)o;
                bool tailFromPacked = packV || tailRows == bc;
                int vStride = transposeV ? dv : packV ? dvPad : dv;
                T qScale = T.CreateTruncating(scale * 1.4426950408889634); // s·log₂e: exp(s·x) = 2^(s·log₂e·x)
                int tiles = (n + QueryTile - 1) / QueryTile;
                Parallel.For(0, tiles, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, threads) },
                    () => new Scratch(d, dvPad, bc),
                    (tile, _, scratch) =>
                    {
                        var ctx = new Context
                        {
                            Lse = (T*)pl, Q = (T*)pq, Kt = (T*)pk, V = (T*)pv, Tail = tailFromPacked ? null : (T*)pt, O = (T*)po,
                            N = n, M = m, D = d, Dv = dv, DvPad = dvPad, Bc = bc, Blocks = blocks, Mask = mask, QScale = qScale,
                            VStride = vStride, KeyVectors = keyVectors, TransposedV = transposeV, Narrow = narrow,
                        };
                        ProcessTile(ref ctx, tile, scratch);
                        return scratch;
                    },
                    _ => { });
            }
        }
    }

    private struct Context
    {
        public T* Q, Kt, V, Tail, O, Lse;
        public int N, M, D, Dv, DvPad, Bc, Blocks, VStride, KeyVectors;
        public bool TransposedV, Narrow;
        public KernelMask Mask;
        public T QScale;
    }

    private sealed class Scratch(int d, int dvPad, int bc)
    {
        public readonly T[] Qs = GC.AllocateArray<T>(QueryTile * d, pinned: true);
        public readonly T[] S = GC.AllocateArray<T>(MicroRows * bc, pinned: true);
        public readonly T[] Acc = GC.AllocateArray<T>(QueryTile * dvPad, pinned: true);
        public readonly T[] RowMax = new T[QueryTile];
        public readonly T[] RowSum = new T[QueryTile];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackKeys(T* k, T* kt, int m, int d, int bc, int blocks)
    {
        for (int b = 0; b < blocks; b++)
        {
            T* dst = kt + (long)b * d * bc;
            for (int jj = 0; jj < bc; jj++)
            {
                int j = b * bc + jj;
                if (j < m) { T* src = k + (long)j * d; for (int c = 0; c < d; c++) dst[c * bc + jj] = src[c]; }
                else for (int c = 0; c < d; c++) dst[c * bc + jj] = T.Zero;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackValues(T* v, T* vp, int m, int dv, int dvPad, int mPad)
    {
        for (int j = 0; j < mPad; j++)
            for (int c = 0; c < dvPad; c++)
                vp[(long)j * dvPad + c] = j < m && c < dv ? v[(long)j * dv + c] : T.Zero;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ProcessTile(ref Context x, int tile, Scratch scratch)
    {
        int i0 = tile * QueryTile, rows = Math.Min(QueryTile, x.N - i0);
        int micro = (rows + MicroRows - 1) / MicroRows;
        int d = x.D, bc = x.Bc, dvPad = x.DvPad;
        fixed (T* qs = scratch.Qs)
        fixed (T* s = scratch.S)
        fixed (T* acc = scratch.Acc)
        {
            // Scaled query tile (rows past n are zero and never written out).
            for (int r = 0; r < micro * MicroRows; r++)
                for (int c = 0; c < d; c++)
                    qs[r * d + c] = r < rows ? x.Q[(long)(i0 + r) * d + c] * x.QScale : T.Zero;
            new Span<T>(acc, micro * MicroRows * dvPad).Clear();
            var rowMax = scratch.RowMax; var rowSum = scratch.RowSum;
            Array.Fill(rowMax, T.NegativeInfinity);
            Array.Clear(rowSum);
            var (firstBlock, lastBlock) = x.Mask.BlockSpan(i0, rows, bc);
            for (int b = firstBlock; b <= lastBlock; b++)
            {
                int j0 = b * bc;
                var visibility = x.Mask.Classify(i0, rows, j0, bc);
                if (visibility == BlockVisibility.Hidden) continue; // skipped: its K and V are never read
                bool epilogue = visibility == BlockVisibility.Partial || x.Mask.HasBias;
                T* ktb = x.Kt + (long)b * d * bc;
                T* vb; int vStride;
                if (b == x.Blocks - 1 && x.Tail != null) { vb = x.Tail; vStride = dvPad; }
                else { vb = x.V + (long)j0 * x.VStride; vStride = x.VStride; }
                for (int mt = 0; mt < micro; mt++)
                {
                    int r0 = mt * MicroRows;
                    if (x.Narrow)
                        for (int slice = 0; slice < x.KeyVectors; slice += 2)
                            ScoresNarrow(qs + r0 * d, ktb + slice * TS.Count, d, bc, s + slice * TS.Count);
                    else
                        for (int slice = 0; slice < x.KeyVectors; slice += 4)
                            Scores(qs + r0 * d, ktb + slice * TS.Count, d, bc, s + slice * TS.Count);
                    if (epilogue) x.Mask.Apply(s, bc, i0 + r0, MicroRows, j0, bc);
                    Softmax(s, bc, rowMax, rowSum, r0, acc + r0 * dvPad, dvPad);
                    if (x.TransposedV) AccumulateValuesTransposed(s, x.V + (long)b * x.Dv * bc, x.Dv, acc + r0 * dvPad, dvPad, bc);
                    else AccumulateValues(s, vb, vStride, acc + r0 * dvPad, dvPad, bc, x.Narrow);
                }
            }
            for (int r = 0; r < rows; r++)
            {
                T* dst = x.O + (long)(i0 + r) * x.Dv;
                if (T.IsNegativeInfinity(rowMax[r]))
                {
                    // The row sees no key: zeros and a log-sum-exp of −∞ (PyTorch's convention), never 0/0.
                    new Span<T>(dst, x.Dv).Clear();
                    if (x.Lse != null) x.Lse[i0 + r] = T.NegativeInfinity;
                    continue;
                }
                T inv = T.One / rowSum[r];
                T* src = acc + r * dvPad;
                for (int c = 0; c < x.Dv; c++) dst[c] = src[c] * inv;
                // Natural-log LSE from the log₂-domain running max and sum: ln 2·(max₂ + log₂ Σ).
                if (x.Lse != null) x.Lse[i0 + r] = T.CreateTruncating(0.6931471805599453) * (rowMax[r] + T.CreateTruncating(Math.Log2(double.CreateTruncating(rowSum[r]))));
            }
        }
    }

    /// <summary>4×(4W) logits: s[r, j] = Σ_c qs[r, c]·Kᵀ[c, j], accumulators in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores(T* qs, T* kt, int d, int bc, T* s)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a02 = TS.Zero, a03 = TS.Zero;
        TV a10 = TS.Zero, a11 = TS.Zero, a12 = TS.Zero, a13 = TS.Zero;
        TV a20 = TS.Zero, a21 = TS.Zero, a22 = TS.Zero, a23 = TS.Zero;
        TV a30 = TS.Zero, a31 = TS.Zero, a32 = TS.Zero, a33 = TS.Zero;
        T* q0 = qs, q1 = qs + d, q2 = qs + 2 * d, q3 = qs + 3 * d;
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
        TS.Store(a00, ref s[0]); TS.Store(a01, ref s[w]); TS.Store(a02, ref s[2 * w]); TS.Store(a03, ref s[3 * w]);
        T* s1 = s + bc;
        TS.Store(a10, ref s1[0]); TS.Store(a11, ref s1[w]); TS.Store(a12, ref s1[2 * w]); TS.Store(a13, ref s1[3 * w]);
        T* s2 = s + 2 * bc;
        TS.Store(a20, ref s2[0]); TS.Store(a21, ref s2[w]); TS.Store(a22, ref s2[2 * w]); TS.Store(a23, ref s2[3 * w]);
        T* s3 = s + 3 * bc;
        TS.Store(a30, ref s3[0]); TS.Store(a31, ref s3[w]); TS.Store(a32, ref s3[2 * w]); TS.Store(a33, ref s3[3 * w]);
    }

    /// <summary>4×(2W) logits with 8 accumulators: <see cref="Scores"/> for CPUs with 16 vector registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoresNarrow(T* qs, T* kt, int d, int bc, T* s)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero;
        TV a20 = TS.Zero, a21 = TS.Zero, a30 = TS.Zero, a31 = TS.Zero;
        T* q0 = qs, q1 = qs + d, q2 = qs + 2 * d, q3 = qs + 3 * d;
        for (int c = 0; c < d; c++)
        {
            T* kc = kt + c * bc;
            TV k0 = TS.Load(ref *kc), k1 = TS.Load(ref kc[w]);
            TV b = TS.Broadcast(q0[c]); a00 = TS.Fma(b, k0, a00); a01 = TS.Fma(b, k1, a01);
            b = TS.Broadcast(q1[c]); a10 = TS.Fma(b, k0, a10); a11 = TS.Fma(b, k1, a11);
            b = TS.Broadcast(q2[c]); a20 = TS.Fma(b, k0, a20); a21 = TS.Fma(b, k1, a21);
            b = TS.Broadcast(q3[c]); a30 = TS.Fma(b, k0, a30); a31 = TS.Fma(b, k1, a31);
        }
        TS.Store(a00, ref s[0]); TS.Store(a01, ref s[w]);
        TS.Store(a10, ref s[bc]); TS.Store(a11, ref s[bc + w]);
        TS.Store(a20, ref s[2 * bc]); TS.Store(a21, ref s[2 * bc + w]);
        TS.Store(a30, ref s[3 * bc]); TS.Store(a31, ref s[3 * bc + w]);
    }

    /// <summary>Online softmax step for 4 rows: new max, P = 2^(S − max) in place, rescale the running sum and accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Softmax(T* s, int bc, T[] rowMax, T[] rowSum, int r0, T* acc, int dvPad)
    {
        int w = TS.Count;
        for (int r = 0; r < MicroRows; r++)
        {
            T* sr = s + r * bc;
            TV mx = TS.Load(ref sr[0]);
            for (int c = w; c < bc; c += w) mx = TS.Max(mx, TS.Load(ref sr[c]));
            T blockMax = TS.MaxAcross(mx);
            T oldMax = rowMax[r0 + r];
            T newMax = T.Max(oldMax, blockMax);
            if (T.IsNegativeInfinity(newMax))
            {
                // Every key so far is masked for this (padding) row: weights stay 0.
                new Span<T>(sr, bc).Clear();
                continue;
            }
            TV mv = TS.Broadcast(newMax);
            TV sv = TS.Zero;
            for (int c = 0; c < bc; c += w)
            {
                TV e = TS.Exp2(TS.Sub(TS.Load(ref sr[c]), mv));
                TS.Store(e, ref sr[c]);
                sv = TS.Add(sv, e);
            }
            T sum = TS.SumAcross(sv);
            if (newMax != oldMax)
            {
                T alpha = T.IsNegativeInfinity(oldMax) ? T.Zero : T.Exp2(oldMax - newMax);
                rowSum[r0 + r] = rowSum[r0 + r] * alpha + sum;
                T* ar = acc + r * dvPad;
                if (alpha == T.Zero) new Span<T>(ar, dvPad).Clear();
                else
                {
                    TV av = TS.Broadcast(alpha);
                    for (int c = 0; c < dvPad; c += w) TS.Store(TS.Mul(TS.Load(ref ar[c]), av), ref ar[c]);
                }
                rowMax[r0 + r] = newMax;
            }
            else rowSum[r0 + r] += sum;
        }
    }

    /// <summary>acc[r, c] += Σ_j P[r, j]·Vᵀ[c, j] for 4 rows and narrow d_v: vectorised across keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateValuesTransposed(T* p, T* vt, int dv, T* acc, int dvPad, int bc)
    {
        int w = TS.Count;
        for (int r = 0; r < MicroRows; r++)
        {
            T* pr = p + r * bc;
            for (int c = 0; c < dv; c++)
            {
                T* vc = vt + c * bc;
                TV s0 = TS.Zero, s1 = TS.Zero;
                for (int j = 0; j < bc; j += 2 * w)
                {
                    s0 = TS.Fma(TS.Load(ref pr[j]), TS.Load(ref vc[j]), s0);
                    s1 = TS.Fma(TS.Load(ref pr[j + w]), TS.Load(ref vc[j + w]), s1);
                }
                acc[r * dvPad + c] += TS.SumAcross(TS.Add(s0, s1));
            }
        }
    }

    /// <summary>acc[r, :] += Σ_j P[r, j]·V[j, :] for 4 rows, in 4-row × 4-vector register blocks. Each block's sum is formed
    /// from zero and then added to acc (same instruction count as accumulating into acc): a key meets at most
    /// bc + (blocks) roundings instead of m, which the rounding bound (<see cref="ExactRoundingBound"/>) counts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateValues(T* p, T* vb, int vStride, T* acc, int dvPad, int bc, bool narrow)
    {
        int w = TS.Count;
        T* p1 = p + bc, p2 = p + 2 * bc, p3 = p + 3 * bc;
        T* acc1 = acc + dvPad, acc2 = acc + 2 * dvPad, acc3 = acc + 3 * dvPad;
        int c = 0;
        if (narrow)
            for (; c + 2 * w <= dvPad; c += 2 * w)
            {
                // 4 rows × 2 vectors: 8 accumulators for 16-register CPUs.
                TV o00 = TS.Zero, o01 = TS.Zero, o10 = TS.Zero, o11 = TS.Zero;
                TV o20 = TS.Zero, o21 = TS.Zero, o30 = TS.Zero, o31 = TS.Zero;
                for (int j = 0; j < bc; j++)
                {
                    T* vr = vb + (long)j * vStride + c;
                    TV v0 = TS.Load(ref vr[0]), v1 = TS.Load(ref vr[w]);
                    TV b = TS.Broadcast(p[j]); o00 = TS.Fma(b, v0, o00); o01 = TS.Fma(b, v1, o01);
                    b = TS.Broadcast(p1[j]); o10 = TS.Fma(b, v0, o10); o11 = TS.Fma(b, v1, o11);
                    b = TS.Broadcast(p2[j]); o20 = TS.Fma(b, v0, o20); o21 = TS.Fma(b, v1, o21);
                    b = TS.Broadcast(p3[j]); o30 = TS.Fma(b, v0, o30); o31 = TS.Fma(b, v1, o31);
                }
                TS.Store(TS.Add(TS.Load(ref acc[c]), o00), ref acc[c]); TS.Store(TS.Add(TS.Load(ref acc[c + w]), o01), ref acc[c + w]); TS.Store(TS.Add(TS.Load(ref acc1[c]), o10), ref acc1[c]); TS.Store(TS.Add(TS.Load(ref acc1[c + w]), o11), ref acc1[c + w]);
                TS.Store(TS.Add(TS.Load(ref acc2[c]), o20), ref acc2[c]); TS.Store(TS.Add(TS.Load(ref acc2[c + w]), o21), ref acc2[c + w]); TS.Store(TS.Add(TS.Load(ref acc3[c]), o30), ref acc3[c]); TS.Store(TS.Add(TS.Load(ref acc3[c + w]), o31), ref acc3[c + w]);
            }
        for (; !narrow && c + 4 * w <= dvPad; c += 4 * w)
        {
            TV o00 = TS.Zero, o01 = TS.Zero, o02 = TS.Zero, o03 = TS.Zero;
            TV o10 = TS.Zero, o11 = TS.Zero, o12 = TS.Zero, o13 = TS.Zero;
            TV o20 = TS.Zero, o21 = TS.Zero, o22 = TS.Zero, o23 = TS.Zero;
            TV o30 = TS.Zero, o31 = TS.Zero, o32 = TS.Zero, o33 = TS.Zero;
            for (int j = 0; j < bc; j++)
            {
                T* vr = vb + (long)j * vStride + c;
                TV v0 = TS.Load(ref vr[0]), v1 = TS.Load(ref vr[w]), v2 = TS.Load(ref vr[2 * w]), v3 = TS.Load(ref vr[3 * w]);
                TV b = TS.Broadcast(p[j]);
                o00 = TS.Fma(b, v0, o00); o01 = TS.Fma(b, v1, o01); o02 = TS.Fma(b, v2, o02); o03 = TS.Fma(b, v3, o03);
                b = TS.Broadcast(p1[j]);
                o10 = TS.Fma(b, v0, o10); o11 = TS.Fma(b, v1, o11); o12 = TS.Fma(b, v2, o12); o13 = TS.Fma(b, v3, o13);
                b = TS.Broadcast(p2[j]);
                o20 = TS.Fma(b, v0, o20); o21 = TS.Fma(b, v1, o21); o22 = TS.Fma(b, v2, o22); o23 = TS.Fma(b, v3, o23);
                b = TS.Broadcast(p3[j]);
                o30 = TS.Fma(b, v0, o30); o31 = TS.Fma(b, v1, o31); o32 = TS.Fma(b, v2, o32); o33 = TS.Fma(b, v3, o33);
            }
            TS.Store(TS.Add(TS.Load(ref acc[c]), o00), ref acc[c]); TS.Store(TS.Add(TS.Load(ref acc[c + w]), o01), ref acc[c + w]); TS.Store(TS.Add(TS.Load(ref acc[c + 2 * w]), o02), ref acc[c + 2 * w]); TS.Store(TS.Add(TS.Load(ref acc[c + 3 * w]), o03), ref acc[c + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref acc1[c]), o10), ref acc1[c]); TS.Store(TS.Add(TS.Load(ref acc1[c + w]), o11), ref acc1[c + w]); TS.Store(TS.Add(TS.Load(ref acc1[c + 2 * w]), o12), ref acc1[c + 2 * w]); TS.Store(TS.Add(TS.Load(ref acc1[c + 3 * w]), o13), ref acc1[c + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref acc2[c]), o20), ref acc2[c]); TS.Store(TS.Add(TS.Load(ref acc2[c + w]), o21), ref acc2[c + w]); TS.Store(TS.Add(TS.Load(ref acc2[c + 2 * w]), o22), ref acc2[c + 2 * w]); TS.Store(TS.Add(TS.Load(ref acc2[c + 3 * w]), o23), ref acc2[c + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref acc3[c]), o30), ref acc3[c]); TS.Store(TS.Add(TS.Load(ref acc3[c + w]), o31), ref acc3[c + w]); TS.Store(TS.Add(TS.Load(ref acc3[c + 2 * w]), o32), ref acc3[c + 2 * w]); TS.Store(TS.Add(TS.Load(ref acc3[c + 3 * w]), o33), ref acc3[c + 3 * w]);
        }
        for (; c < dvPad; c += w)
        {
            TV o0 = TS.Zero, o1 = TS.Zero, o2 = TS.Zero, o3 = TS.Zero;
            for (int j = 0; j < bc; j++)
            {
                TV v0 = TS.Load(ref vb[(long)j * vStride + c]);
                o0 = TS.Fma(TS.Broadcast(p[j]), v0, o0);
                o1 = TS.Fma(TS.Broadcast(p1[j]), v0, o1);
                o2 = TS.Fma(TS.Broadcast(p2[j]), v0, o2);
                o3 = TS.Fma(TS.Broadcast(p3[j]), v0, o3);
            }
            TS.Store(TS.Add(TS.Load(ref acc[c]), o0), ref acc[c]); TS.Store(TS.Add(TS.Load(ref acc1[c]), o1), ref acc1[c]); TS.Store(TS.Add(TS.Load(ref acc2[c]), o2), ref acc2[c]); TS.Store(TS.Add(TS.Load(ref acc3[c]), o3), ref acc3[c]);
        }
    }
}
