using System.Numerics;
using System.Runtime.CompilerServices;

namespace FastAttention.Exact;

/// <summary>
/// The register blocks every attention kernel is built from (forward, decode and backward), written once against
/// <see cref="ISimd{T,TV}"/>: 6 rows × 2 vectors (12 accumulators, for the 16 vector registers of AVX2 and SSE) or
/// 6 rows × 4 vectors (24 accumulators, for the 32 of AVX-512 and ARM64), each vector load feeding 6 FMAs.
/// <list type="bullet">
/// <item><see cref="Product6"/>: C[6 × panel] = A[6 × depth]·Panel[depth × panel] over a packed panel (S = Q̃·Kᵀ, dP = dO·Vᵀ);
/// <see cref="Product6Panels"/> the same over consecutive panels in one call (the forward's S strip).</item>
/// <item><see cref="Accumulate6"/>: acc[6 × width] += coeff[6 × count]·B[count × width] with B rows in place at any stride and
/// the coefficients at any row stride and step (O += P·V, dQ += dS·K, and transposed dV += Pᵀ·dO, dK += dSᵀ·Q).</item>
/// </list>
/// </summary>
internal static unsafe class RegisterBlocks<T, TV, TS>
    where T : unmanaged, IBinaryFloatingPointIeee754<T>
    where TV : unmanaged
    where TS : struct, ISimd<T, TV>
{
    /// <summary>Rows of every register block.</summary>
    public const int Rows = 6;

    /// <summary>Vectors per panel row: 4 with <paramref name="wide"/> blocks (32 registers), else 2.</summary>
    public static int PanelWidth(bool wide) => (wide ? 4 : 2) * TS.Count;

    /// <summary>C[r, 0..panel) = Σ_{c &lt; depth} A[r, c]·Panel[c, 0..panel) for 6 rows of A (stride <paramref name="aStride"/>),
    /// the panel packed as <paramref name="depth"/> rows of <see cref="PanelWidth"/> contiguous elements; C rows at
    /// <paramref name="cStride"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Product6(bool wide, T* a, int aStride, T* panel, int depth, T* c, int cStride)
    {
        if (wide) Product6x4(a, aStride, panel, depth, c, cStride);
        else Product6x2(a, aStride, panel, depth, c, cStride);
    }

    /// <summary><see cref="Product6"/> over <paramref name="panels"/> consecutive packed panels (each depth × PanelWidth,
    /// contiguous), C's panel columns side by side: one call per strip, the row pointers set up once. The same FMAs in the
    /// same order as one <see cref="Product6"/> per panel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Product6Panels(bool wide, T* a, int aStride, T* panel, int panels, int depth, T* c, int cStride)
    {
        if (wide) for (int pn = 0; pn < panels; pn++) Product6x4(a, aStride, panel + (long)pn * depth * 4 * TS.Count, depth, c + pn * 4 * TS.Count, cStride);
        else Product6x2Panels(a, aStride, panel, panels, depth, c, cStride);
    }

    /// <summary>6 rows × 2W columns over <paramref name="panels"/> packed panels ([d][2W] each).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Product6x2Panels(T* q, int qStride, T* panel, int panels, int d, T* s, int sStride)
    {
        // Product6x2 inlined into one loop over the strip: one call per key block, not per panel.
        for (int pn = 0; pn < panels; pn++) Product6x2(q, qStride, panel + (long)pn * d * 2 * TS.Count, d, s + pn * 2 * TS.Count, sStride);
    }

    /// <summary>acc[r, 0..width) += Σ_{j &lt; count} coeff[r·cRow + j·cStep]·B[j, 0..width) for 6 rows; B rows at
    /// <paramref name="bStride"/>, acc rows at <paramref name="accStride"/>, width a multiple of W. Like every accumulate here,
    /// the call's sum is formed from zero in registers and then added to acc (the same work as accumulating into acc): a
    /// term meets the call's roundings plus one per later call, not all of acc's history — the count the exact
    /// certificate's rounding bound (<see cref="ExactRoundingBound"/>) uses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate6(bool wide, T* coeff, int cRow, long cStep, int count, T* b, long bStride, T* acc, int accStride, int width)
    {
        int x = 0;
        if (wide)
        {
            x = width / (4 * TS.Count) * 4 * TS.Count;
            if (x > 0) Accumulate6x4(coeff, cRow, cStep, count, b, bStride, acc, accStride, x);
        }
        int rest = (width - x) / (2 * TS.Count) * 2 * TS.Count;
        if (rest > 0) Accumulate6x2(coeff, cRow, cStep, count, b + x, bStride, acc + x, accStride, rest);
        x += rest;
        if (x < width) Accumulate6x1(coeff, cRow, cStep, count, b + x, bStride, acc + x, accStride, width - x);
    }

    /// <summary>6 rows × 2W columns over one packed panel ([d][2W]): 12 accumulators, each panel load feeding 6 FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Product6x2(T* q, int qStride, T* panel, int d, T* s, int sStride)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero, a20 = TS.Zero, a21 = TS.Zero;
        TV a30 = TS.Zero, a31 = TS.Zero, a40 = TS.Zero, a41 = TS.Zero, a50 = TS.Zero, a51 = TS.Zero;
        T* q0 = q, q1 = q + qStride, q2 = q + 2 * qStride, q3 = q + 3 * qStride, q4 = q + 4 * qStride, q5 = q + 5 * qStride;
        for (int c = 0; c < d; c++, panel += 2 * w)
        {
            TV k0 = TS.Load(ref panel[0]), k1 = TS.Load(ref panel[w]);
            TV x = TS.Broadcast(q0[c]); a00 = TS.Fma(x, k0, a00); a01 = TS.Fma(x, k1, a01);
            x = TS.Broadcast(q1[c]); a10 = TS.Fma(x, k0, a10); a11 = TS.Fma(x, k1, a11);
            x = TS.Broadcast(q2[c]); a20 = TS.Fma(x, k0, a20); a21 = TS.Fma(x, k1, a21);
            x = TS.Broadcast(q3[c]); a30 = TS.Fma(x, k0, a30); a31 = TS.Fma(x, k1, a31);
            x = TS.Broadcast(q4[c]); a40 = TS.Fma(x, k0, a40); a41 = TS.Fma(x, k1, a41);
            x = TS.Broadcast(q5[c]); a50 = TS.Fma(x, k0, a50); a51 = TS.Fma(x, k1, a51);
        }
        TS.Store(a00, ref s[0]); TS.Store(a01, ref s[w]); s += sStride;
        TS.Store(a10, ref s[0]); TS.Store(a11, ref s[w]); s += sStride;
        TS.Store(a20, ref s[0]); TS.Store(a21, ref s[w]); s += sStride;
        TS.Store(a30, ref s[0]); TS.Store(a31, ref s[w]); s += sStride;
        TS.Store(a40, ref s[0]); TS.Store(a41, ref s[w]); s += sStride;
        TS.Store(a50, ref s[0]); TS.Store(a51, ref s[w]);
    }

    /// <summary>6 rows × 4W columns over one packed panel ([d][4W]): 24 accumulators, for CPUs with 32 vector registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Product6x4(T* q, int qStride, T* panel, int d, T* s, int sStride)
    {
        int w = TS.Count;
        TV a00 = TS.Zero, a01 = TS.Zero, a02 = TS.Zero, a03 = TS.Zero, a10 = TS.Zero, a11 = TS.Zero, a12 = TS.Zero, a13 = TS.Zero;
        TV a20 = TS.Zero, a21 = TS.Zero, a22 = TS.Zero, a23 = TS.Zero, a30 = TS.Zero, a31 = TS.Zero, a32 = TS.Zero, a33 = TS.Zero;
        TV a40 = TS.Zero, a41 = TS.Zero, a42 = TS.Zero, a43 = TS.Zero, a50 = TS.Zero, a51 = TS.Zero, a52 = TS.Zero, a53 = TS.Zero;
        T* q0 = q, q1 = q + qStride, q2 = q + 2 * qStride, q3 = q + 3 * qStride, q4 = q + 4 * qStride, q5 = q + 5 * qStride;
        for (int c = 0; c < d; c++, panel += 4 * w)
        {
            TV k0 = TS.Load(ref panel[0]), k1 = TS.Load(ref panel[w]), k2 = TS.Load(ref panel[2 * w]), k3 = TS.Load(ref panel[3 * w]);
            TV x = TS.Broadcast(q0[c]); a00 = TS.Fma(x, k0, a00); a01 = TS.Fma(x, k1, a01); a02 = TS.Fma(x, k2, a02); a03 = TS.Fma(x, k3, a03);
            x = TS.Broadcast(q1[c]); a10 = TS.Fma(x, k0, a10); a11 = TS.Fma(x, k1, a11); a12 = TS.Fma(x, k2, a12); a13 = TS.Fma(x, k3, a13);
            x = TS.Broadcast(q2[c]); a20 = TS.Fma(x, k0, a20); a21 = TS.Fma(x, k1, a21); a22 = TS.Fma(x, k2, a22); a23 = TS.Fma(x, k3, a23);
            x = TS.Broadcast(q3[c]); a30 = TS.Fma(x, k0, a30); a31 = TS.Fma(x, k1, a31); a32 = TS.Fma(x, k2, a32); a33 = TS.Fma(x, k3, a33);
            x = TS.Broadcast(q4[c]); a40 = TS.Fma(x, k0, a40); a41 = TS.Fma(x, k1, a41); a42 = TS.Fma(x, k2, a42); a43 = TS.Fma(x, k3, a43);
            x = TS.Broadcast(q5[c]); a50 = TS.Fma(x, k0, a50); a51 = TS.Fma(x, k1, a51); a52 = TS.Fma(x, k2, a52); a53 = TS.Fma(x, k3, a53);
        }
        TS.Store(a00, ref s[0]); TS.Store(a01, ref s[w]); TS.Store(a02, ref s[2 * w]); TS.Store(a03, ref s[3 * w]); s += sStride;
        TS.Store(a10, ref s[0]); TS.Store(a11, ref s[w]); TS.Store(a12, ref s[2 * w]); TS.Store(a13, ref s[3 * w]); s += sStride;
        TS.Store(a20, ref s[0]); TS.Store(a21, ref s[w]); TS.Store(a22, ref s[2 * w]); TS.Store(a23, ref s[3 * w]); s += sStride;
        TS.Store(a30, ref s[0]); TS.Store(a31, ref s[w]); TS.Store(a32, ref s[2 * w]); TS.Store(a33, ref s[3 * w]); s += sStride;
        TS.Store(a40, ref s[0]); TS.Store(a41, ref s[w]); TS.Store(a42, ref s[2 * w]); TS.Store(a43, ref s[3 * w]); s += sStride;
        TS.Store(a50, ref s[0]); TS.Store(a51, ref s[w]); TS.Store(a52, ref s[2 * w]); TS.Store(a53, ref s[3 * w]);
    }

    /// <summary>6 × 2-vector blocks of <see cref="Accumulate6"/> over columns [0, width) (width a multiple of 2W).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate6x2(T* c, int cRow, long cStep, int count, T* b, long bStride, T* acc, int accStride, int width)
    {
        int w = TS.Count, x = 0;
        T* c0 = c, c1 = c + cRow, c2 = c + 2 * cRow, c3 = c + 3 * cRow, c4 = c + 4 * cRow, c5 = c + 5 * cRow;
        T* o0 = acc, o1 = acc + accStride, o2 = acc + 2 * accStride, o3 = acc + 3 * accStride, o4 = acc + 4 * accStride, o5 = acc + 5 * accStride;
        for (; x + 2 * w <= width; x += 2 * w)
        {
            TV a00 = TS.Zero, a01 = TS.Zero;
            TV a10 = TS.Zero, a11 = TS.Zero;
            TV a20 = TS.Zero, a21 = TS.Zero;
            TV a30 = TS.Zero, a31 = TS.Zero;
            TV a40 = TS.Zero, a41 = TS.Zero;
            TV a50 = TS.Zero, a51 = TS.Zero;
            T* br = b + x;
            long o = 0;
            for (int j = 0; j < count; j++, br += bStride, o += cStep)
            {
                TV b0 = TS.Load(ref br[0]), b1 = TS.Load(ref br[w]);
                TV s = TS.Broadcast(c0[o]); a00 = TS.Fma(s, b0, a00); a01 = TS.Fma(s, b1, a01);
                s = TS.Broadcast(c1[o]); a10 = TS.Fma(s, b0, a10); a11 = TS.Fma(s, b1, a11);
                s = TS.Broadcast(c2[o]); a20 = TS.Fma(s, b0, a20); a21 = TS.Fma(s, b1, a21);
                s = TS.Broadcast(c3[o]); a30 = TS.Fma(s, b0, a30); a31 = TS.Fma(s, b1, a31);
                s = TS.Broadcast(c4[o]); a40 = TS.Fma(s, b0, a40); a41 = TS.Fma(s, b1, a41);
                s = TS.Broadcast(c5[o]); a50 = TS.Fma(s, b0, a50); a51 = TS.Fma(s, b1, a51);
            }
            TS.Store(TS.Add(TS.Load(ref o0[x]), a00), ref o0[x]); TS.Store(TS.Add(TS.Load(ref o0[x + w]), a01), ref o0[x + w]);
            TS.Store(TS.Add(TS.Load(ref o1[x]), a10), ref o1[x]); TS.Store(TS.Add(TS.Load(ref o1[x + w]), a11), ref o1[x + w]);
            TS.Store(TS.Add(TS.Load(ref o2[x]), a20), ref o2[x]); TS.Store(TS.Add(TS.Load(ref o2[x + w]), a21), ref o2[x + w]);
            TS.Store(TS.Add(TS.Load(ref o3[x]), a30), ref o3[x]); TS.Store(TS.Add(TS.Load(ref o3[x + w]), a31), ref o3[x + w]);
            TS.Store(TS.Add(TS.Load(ref o4[x]), a40), ref o4[x]); TS.Store(TS.Add(TS.Load(ref o4[x + w]), a41), ref o4[x + w]);
            TS.Store(TS.Add(TS.Load(ref o5[x]), a50), ref o5[x]); TS.Store(TS.Add(TS.Load(ref o5[x + w]), a51), ref o5[x + w]);
        }
    }

    /// <summary>6 × 4-vector blocks of <see cref="Accumulate6"/> (24 accumulators; width a multiple of 4W).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate6x4(T* c, int cRow, long cStep, int count, T* b, long bStride, T* acc, int accStride, int width)
    {
        int w = TS.Count, x = 0;
        T* c0 = c, c1 = c + cRow, c2 = c + 2 * cRow, c3 = c + 3 * cRow, c4 = c + 4 * cRow, c5 = c + 5 * cRow;
        T* o0 = acc, o1 = acc + accStride, o2 = acc + 2 * accStride, o3 = acc + 3 * accStride, o4 = acc + 4 * accStride, o5 = acc + 5 * accStride;
        for (; x + 4 * w <= width; x += 4 * w)
        {
            TV a00 = TS.Zero, a01 = TS.Zero, a02 = TS.Zero, a03 = TS.Zero;
            TV a10 = TS.Zero, a11 = TS.Zero, a12 = TS.Zero, a13 = TS.Zero;
            TV a20 = TS.Zero, a21 = TS.Zero, a22 = TS.Zero, a23 = TS.Zero;
            TV a30 = TS.Zero, a31 = TS.Zero, a32 = TS.Zero, a33 = TS.Zero;
            TV a40 = TS.Zero, a41 = TS.Zero, a42 = TS.Zero, a43 = TS.Zero;
            TV a50 = TS.Zero, a51 = TS.Zero, a52 = TS.Zero, a53 = TS.Zero;
            T* br = b + x;
            long o = 0;
            for (int j = 0; j < count; j++, br += bStride, o += cStep)
            {
                TV b0 = TS.Load(ref br[0]), b1 = TS.Load(ref br[w]), b2 = TS.Load(ref br[2 * w]), b3 = TS.Load(ref br[3 * w]);
                TV s = TS.Broadcast(c0[o]); a00 = TS.Fma(s, b0, a00); a01 = TS.Fma(s, b1, a01); a02 = TS.Fma(s, b2, a02); a03 = TS.Fma(s, b3, a03);
                s = TS.Broadcast(c1[o]); a10 = TS.Fma(s, b0, a10); a11 = TS.Fma(s, b1, a11); a12 = TS.Fma(s, b2, a12); a13 = TS.Fma(s, b3, a13);
                s = TS.Broadcast(c2[o]); a20 = TS.Fma(s, b0, a20); a21 = TS.Fma(s, b1, a21); a22 = TS.Fma(s, b2, a22); a23 = TS.Fma(s, b3, a23);
                s = TS.Broadcast(c3[o]); a30 = TS.Fma(s, b0, a30); a31 = TS.Fma(s, b1, a31); a32 = TS.Fma(s, b2, a32); a33 = TS.Fma(s, b3, a33);
                s = TS.Broadcast(c4[o]); a40 = TS.Fma(s, b0, a40); a41 = TS.Fma(s, b1, a41); a42 = TS.Fma(s, b2, a42); a43 = TS.Fma(s, b3, a43);
                s = TS.Broadcast(c5[o]); a50 = TS.Fma(s, b0, a50); a51 = TS.Fma(s, b1, a51); a52 = TS.Fma(s, b2, a52); a53 = TS.Fma(s, b3, a53);
            }
            TS.Store(TS.Add(TS.Load(ref o0[x]), a00), ref o0[x]); TS.Store(TS.Add(TS.Load(ref o0[x + w]), a01), ref o0[x + w]); TS.Store(TS.Add(TS.Load(ref o0[x + 2 * w]), a02), ref o0[x + 2 * w]); TS.Store(TS.Add(TS.Load(ref o0[x + 3 * w]), a03), ref o0[x + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref o1[x]), a10), ref o1[x]); TS.Store(TS.Add(TS.Load(ref o1[x + w]), a11), ref o1[x + w]); TS.Store(TS.Add(TS.Load(ref o1[x + 2 * w]), a12), ref o1[x + 2 * w]); TS.Store(TS.Add(TS.Load(ref o1[x + 3 * w]), a13), ref o1[x + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref o2[x]), a20), ref o2[x]); TS.Store(TS.Add(TS.Load(ref o2[x + w]), a21), ref o2[x + w]); TS.Store(TS.Add(TS.Load(ref o2[x + 2 * w]), a22), ref o2[x + 2 * w]); TS.Store(TS.Add(TS.Load(ref o2[x + 3 * w]), a23), ref o2[x + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref o3[x]), a30), ref o3[x]); TS.Store(TS.Add(TS.Load(ref o3[x + w]), a31), ref o3[x + w]); TS.Store(TS.Add(TS.Load(ref o3[x + 2 * w]), a32), ref o3[x + 2 * w]); TS.Store(TS.Add(TS.Load(ref o3[x + 3 * w]), a33), ref o3[x + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref o4[x]), a40), ref o4[x]); TS.Store(TS.Add(TS.Load(ref o4[x + w]), a41), ref o4[x + w]); TS.Store(TS.Add(TS.Load(ref o4[x + 2 * w]), a42), ref o4[x + 2 * w]); TS.Store(TS.Add(TS.Load(ref o4[x + 3 * w]), a43), ref o4[x + 3 * w]);
            TS.Store(TS.Add(TS.Load(ref o5[x]), a50), ref o5[x]); TS.Store(TS.Add(TS.Load(ref o5[x + w]), a51), ref o5[x + w]); TS.Store(TS.Add(TS.Load(ref o5[x + 2 * w]), a52), ref o5[x + 2 * w]); TS.Store(TS.Add(TS.Load(ref o5[x + 3 * w]), a53), ref o5[x + 3 * w]);
        }
    }

    /// <summary>6 × 1-vector blocks of <see cref="Accumulate6"/> (the columns left by the wider blocks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Accumulate6x1(T* c, int cRow, long cStep, int count, T* b, long bStride, T* acc, int accStride, int width)
    {
        int w = TS.Count;
        T* c0 = c, c1 = c + cRow, c2 = c + 2 * cRow, c3 = c + 3 * cRow, c4 = c + 4 * cRow, c5 = c + 5 * cRow;
        for (int x = 0; x < width; x += w)
        {
            T* o = acc + x;
            TV a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero;
            TV a3 = TS.Zero, a4 = TS.Zero, a5 = TS.Zero;
            T* br = b + x;
            long k = 0;
            for (int j = 0; j < count; j++, br += bStride, k += cStep)
            {
                TV v = TS.Load(ref br[0]);
                a0 = TS.Fma(TS.Broadcast(c0[k]), v, a0); a1 = TS.Fma(TS.Broadcast(c1[k]), v, a1); a2 = TS.Fma(TS.Broadcast(c2[k]), v, a2);
                a3 = TS.Fma(TS.Broadcast(c3[k]), v, a3); a4 = TS.Fma(TS.Broadcast(c4[k]), v, a4); a5 = TS.Fma(TS.Broadcast(c5[k]), v, a5);
            }
            TS.Store(TS.Add(TS.Load(ref o[0]), a0), ref o[0]); TS.Store(TS.Add(TS.Load(ref o[accStride]), a1), ref o[accStride]); TS.Store(TS.Add(TS.Load(ref o[2 * accStride]), a2), ref o[2 * accStride]);
            TS.Store(TS.Add(TS.Load(ref o[3 * accStride]), a3), ref o[3 * accStride]); TS.Store(TS.Add(TS.Load(ref o[4 * accStride]), a4), ref o[4 * accStride]); TS.Store(TS.Add(TS.Load(ref o[5 * accStride]), a5), ref o[5 * accStride]);
        }
    }

    /// <summary>One row: acc[0..width) += Σ_j p[j]·B[j, 0..width) (width a multiple of W), 4 vectors at a time (decode rows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate1(T* p, int count, T* b, long bStride, T* acc, int width)
    {
        int w = TS.Count, x = 0;
        // Eight vectors per pass first: a row of d = 64 floats (two rows of 32 doubles) is then read in one sequential
        // pass (decode streams V from memory once; two half-row passes at a 256-byte stride had the prefetcher see gaps).
        for (; x + 8 * w <= width; x += 8 * w)
        {
            TV a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero, a4 = TS.Zero, a5 = TS.Zero, a6 = TS.Zero, a7 = TS.Zero;
            T* br = b + x;
            bool prefetch = System.Runtime.Intrinsics.X86.Sse.IsSupported && width == bStride;
            for (int j = 0; j < count; j++, br += bStride)
            {
                if (prefetch)
                {
                    // One sequential stream of V rows: the row 32 ahead (never faults past the end).
                    byte* pf = (byte*)(br + 32 * bStride);
                    for (int l = 0; l < 8 * w * sizeof(T); l += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch0(pf + l);
                }
                TV s = TS.Broadcast(p[j]);
                a0 = TS.Fma(s, TS.Load(ref br[0]), a0); a1 = TS.Fma(s, TS.Load(ref br[w]), a1);
                a2 = TS.Fma(s, TS.Load(ref br[2 * w]), a2); a3 = TS.Fma(s, TS.Load(ref br[3 * w]), a3);
                a4 = TS.Fma(s, TS.Load(ref br[4 * w]), a4); a5 = TS.Fma(s, TS.Load(ref br[5 * w]), a5);
                a6 = TS.Fma(s, TS.Load(ref br[6 * w]), a6); a7 = TS.Fma(s, TS.Load(ref br[7 * w]), a7);
            }
            T* ar = acc + x;
            TS.Store(TS.Add(TS.Load(ref ar[0]), a0), ref ar[0]); TS.Store(TS.Add(TS.Load(ref ar[w]), a1), ref ar[w]);
            TS.Store(TS.Add(TS.Load(ref ar[2 * w]), a2), ref ar[2 * w]); TS.Store(TS.Add(TS.Load(ref ar[3 * w]), a3), ref ar[3 * w]);
            TS.Store(TS.Add(TS.Load(ref ar[4 * w]), a4), ref ar[4 * w]); TS.Store(TS.Add(TS.Load(ref ar[5 * w]), a5), ref ar[5 * w]);
            TS.Store(TS.Add(TS.Load(ref ar[6 * w]), a6), ref ar[6 * w]); TS.Store(TS.Add(TS.Load(ref ar[7 * w]), a7), ref ar[7 * w]);
        }
        for (; x + 4 * w <= width; x += 4 * w)
        {
            TV a0 = TS.Zero, a1 = TS.Zero, a2 = TS.Zero, a3 = TS.Zero;
            T* br = b + x;
            for (int j = 0; j < count; j++, br += bStride)
            {
                TV s = TS.Broadcast(p[j]);
                a0 = TS.Fma(s, TS.Load(ref br[0]), a0); a1 = TS.Fma(s, TS.Load(ref br[w]), a1);
                a2 = TS.Fma(s, TS.Load(ref br[2 * w]), a2); a3 = TS.Fma(s, TS.Load(ref br[3 * w]), a3);
            }
            TS.Store(TS.Add(TS.Load(ref acc[x]), a0), ref acc[x]); TS.Store(TS.Add(TS.Load(ref acc[x + w]), a1), ref acc[x + w]); TS.Store(TS.Add(TS.Load(ref acc[x + 2 * w]), a2), ref acc[x + 2 * w]); TS.Store(TS.Add(TS.Load(ref acc[x + 3 * w]), a3), ref acc[x + 3 * w]);
        }
        for (; x < width; x += w)
        {
            TV a0 = TS.Zero;
            T* br = b + x;
            for (int j = 0; j < count; j++, br += bStride) a0 = TS.Fma(TS.Broadcast(p[j]), TS.Load(ref br[0]), a0);
            TS.Store(TS.Add(TS.Load(ref acc[x]), a0), ref acc[x]);
        }
    }

    /// <summary>The columns [c0, end) that do not fill a vector, scalar, for <paramref name="rows"/> rows (B read in place).</summary>
    public static void AccumulateTail(T* coeff, int cRow, long cStep, int rows, int count, T* b, long bStride, T* acc, int accStride, int c0, int end)
    {
        for (int x = c0; x < end; x++)
            for (int r = 0; r < rows; r++)
            {
                T* cr = coeff + r * cRow;
                T sum = T.Zero;
                for (int j = 0; j < count; j++) sum = T.FusedMultiplyAdd(cr[j * cStep], b[j * bStride + x], sum);
                acc[r * accStride + x] += sum;
            }
    }
}
