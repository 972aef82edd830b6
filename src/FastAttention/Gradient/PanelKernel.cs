using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace FastAttention.Gradient;

/// <summary>
/// The one SIMD micro-kernel of the forward and backward tiles: acc[0..w) += Σ_k coeffs[k]·panel[k·stride .. k·stride + w).
/// Register-blocked over 8, 4 and 1 vectors (Vector512 where the hardware accelerates it, else <see cref="Vector{T}"/>);
/// the accumulators stay in registers for the whole k loop; scalar tail. Every tile product of the backward pass
/// (S = q·Kᵀ, dP = dO·Vᵀ, dQ += dS·K, dV += Pᵀ·dO, dK += dSᵀ·Q) is this shape once K and V are packed transposed
/// per key block. Also the fused element-wise steps of the online softmax and of the softmax Jacobian.
/// </summary>
internal static class PanelKernel
{
    /// <summary>Lanes of T per vector the kernels use (16 floats with AVX-512, else <see cref="Vector{T}"/>.Count).</summary>
    public static int Lanes<T>() where T : unmanaged => Vector512.IsHardwareAccelerated ? Vector512<T>.Count : Vector<T>.Count;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate<T>(ReadOnlySpan<T> coeffs, ReadOnlySpan<T> panel, int stride, Span<T> acc)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> => Accumulate(coeffs, 1, coeffs.Length, panel, stride, acc);

    /// <summary>As above with the k-th coefficient at coeffs[k·coeffStride], k &lt; count (reads a tile column without transposing it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate<T>(ReadOnlySpan<T> coeffs, int coeffStride, int count, ReadOnlySpan<T> panel, int stride, Span<T> acc)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int w = acc.Length, kk = count;
        if (kk == 0 || w == 0) return;
        if ((long)(kk - 1) * stride + w > panel.Length) ThrowPanel();
        if ((long)(kk - 1) * coeffStride >= coeffs.Length) ThrowCoeffs();
        ref T a = ref MemoryMarshal.GetReference(acc);
        ref T p = ref MemoryMarshal.GetReference(panel);
        ref T c = ref MemoryMarshal.GetReference(coeffs);
        int x = 0;
        if (Vector512.IsHardwareAccelerated) x = Accumulate512(ref c, coeffStride, kk, ref p, stride, ref a, w);
        int vc = Vector<T>.Count;
        for (; x + 4 * vc <= w; x += 4 * vc)
        {
            var s0 = Vector.LoadUnsafe(ref a, (nuint)x); var s1 = Vector.LoadUnsafe(ref a, (nuint)(x + vc));
            var s2 = Vector.LoadUnsafe(ref a, (nuint)(x + 2 * vc)); var s3 = Vector.LoadUnsafe(ref a, (nuint)(x + 3 * vc));
            for (int k = 0; k < kk; k++)
            {
                var ck = new Vector<T>(Unsafe.Add(ref c, k * coeffStride));
                ref T row = ref Unsafe.Add(ref p, k * stride + x);
                s0 = Fma(ck, Vector.LoadUnsafe(ref row), s0);
                s1 = Fma(ck, Vector.LoadUnsafe(ref row, (nuint)vc), s1);
                s2 = Fma(ck, Vector.LoadUnsafe(ref row, (nuint)(2 * vc)), s2);
                s3 = Fma(ck, Vector.LoadUnsafe(ref row, (nuint)(3 * vc)), s3);
            }
            s0.StoreUnsafe(ref a, (nuint)x); s1.StoreUnsafe(ref a, (nuint)(x + vc));
            s2.StoreUnsafe(ref a, (nuint)(x + 2 * vc)); s3.StoreUnsafe(ref a, (nuint)(x + 3 * vc));
        }
        for (; x + vc <= w; x += vc)
        {
            var s0 = Vector.LoadUnsafe(ref a, (nuint)x);
            for (int k = 0; k < kk; k++)
                s0 = Fma(new Vector<T>(Unsafe.Add(ref c, k * coeffStride)), Vector.LoadUnsafe(ref Unsafe.Add(ref p, k * stride + x)), s0);
            s0.StoreUnsafe(ref a, (nuint)x);
        }
        for (; x < w; x++)
        {
            T s = Unsafe.Add(ref a, x);
            for (int k = 0; k < kk; k++) s = T.FusedMultiplyAdd(Unsafe.Add(ref c, k * coeffStride), Unsafe.Add(ref p, k * stride + x), s);
            Unsafe.Add(ref a, x) = s;
        }
    }

    /// <summary>The Vector512 part of <see cref="Accumulate{T}(ReadOnlySpan{T}, int, int, ReadOnlySpan{T}, int, Span{T})"/>:
    /// 8-, 4- and 1-vector column chunks; returns the first column it did not handle.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Accumulate512<T>(ref T c, int coeffStride, int kk, ref T p, int stride, ref T a, int w)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int vc = Vector512<T>.Count, x = 0;
        for (; x + 8 * vc <= w; x += 8 * vc)
        {
            var s0 = Vector512.LoadUnsafe(ref a, (nuint)x); var s1 = Vector512.LoadUnsafe(ref a, (nuint)(x + vc));
            var s2 = Vector512.LoadUnsafe(ref a, (nuint)(x + 2 * vc)); var s3 = Vector512.LoadUnsafe(ref a, (nuint)(x + 3 * vc));
            var s4 = Vector512.LoadUnsafe(ref a, (nuint)(x + 4 * vc)); var s5 = Vector512.LoadUnsafe(ref a, (nuint)(x + 5 * vc));
            var s6 = Vector512.LoadUnsafe(ref a, (nuint)(x + 6 * vc)); var s7 = Vector512.LoadUnsafe(ref a, (nuint)(x + 7 * vc));
            for (int k = 0; k < kk; k++)
            {
                var ck = Vector512.Create(Unsafe.Add(ref c, k * coeffStride));
                ref T row = ref Unsafe.Add(ref p, k * stride + x);
                s0 = Fma(ck, Vector512.LoadUnsafe(ref row), s0);
                s1 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)vc), s1);
                s2 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(2 * vc)), s2);
                s3 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(3 * vc)), s3);
                s4 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(4 * vc)), s4);
                s5 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(5 * vc)), s5);
                s6 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(6 * vc)), s6);
                s7 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(7 * vc)), s7);
            }
            s0.StoreUnsafe(ref a, (nuint)x); s1.StoreUnsafe(ref a, (nuint)(x + vc));
            s2.StoreUnsafe(ref a, (nuint)(x + 2 * vc)); s3.StoreUnsafe(ref a, (nuint)(x + 3 * vc));
            s4.StoreUnsafe(ref a, (nuint)(x + 4 * vc)); s5.StoreUnsafe(ref a, (nuint)(x + 5 * vc));
            s6.StoreUnsafe(ref a, (nuint)(x + 6 * vc)); s7.StoreUnsafe(ref a, (nuint)(x + 7 * vc));
        }
        for (; x + 4 * vc <= w; x += 4 * vc)
        {
            var s0 = Vector512.LoadUnsafe(ref a, (nuint)x); var s1 = Vector512.LoadUnsafe(ref a, (nuint)(x + vc));
            var s2 = Vector512.LoadUnsafe(ref a, (nuint)(x + 2 * vc)); var s3 = Vector512.LoadUnsafe(ref a, (nuint)(x + 3 * vc));
            for (int k = 0; k < kk; k++)
            {
                var ck = Vector512.Create(Unsafe.Add(ref c, k * coeffStride));
                ref T row = ref Unsafe.Add(ref p, k * stride + x);
                s0 = Fma(ck, Vector512.LoadUnsafe(ref row), s0);
                s1 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)vc), s1);
                s2 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(2 * vc)), s2);
                s3 = Fma(ck, Vector512.LoadUnsafe(ref row, (nuint)(3 * vc)), s3);
            }
            s0.StoreUnsafe(ref a, (nuint)x); s1.StoreUnsafe(ref a, (nuint)(x + vc));
            s2.StoreUnsafe(ref a, (nuint)(x + 2 * vc)); s3.StoreUnsafe(ref a, (nuint)(x + 3 * vc));
        }
        for (; x + vc <= w; x += vc)
        {
            var s0 = Vector512.LoadUnsafe(ref a, (nuint)x);
            for (int k = 0; k < kk; k++)
                s0 = Fma(Vector512.Create(Unsafe.Add(ref c, k * coeffStride)), Vector512.LoadUnsafe(ref Unsafe.Add(ref p, k * stride + x)), s0);
            s0.StoreUnsafe(ref a, (nuint)x);
        }
        return x;
    }

    /// <summary>
    /// Four rows at once (a 4×w GEMM micro-kernel: each panel load feeds four FMAs, halving or quartering the cache
    /// traffic of <see cref="Accumulate{T}(ReadOnlySpan{T}, int, int, ReadOnlySpan{T}, int, Span{T})"/>):
    /// acc[r·accStride + x] += Σ_k coeffs[r·rowOffset + k·coeffStride]·panel[k·stride + x] for r &lt; 4, x &lt; w.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Accumulate4<T>(ReadOnlySpan<T> coeffs, int rowOffset, int coeffStride, int count,
        ReadOnlySpan<T> panel, int stride, Span<T> acc, int accStride, int w)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int kk = count;
        if (kk == 0 || w == 0) return;
        if ((long)(kk - 1) * stride + w > panel.Length) ThrowPanel();
        if (3L * rowOffset + (long)(kk - 1) * coeffStride >= coeffs.Length) ThrowCoeffs();
        if (3L * accStride + w > acc.Length) ThrowPanel();
        ref T c0 = ref MemoryMarshal.GetReference(coeffs);
        ref T c1 = ref Unsafe.Add(ref c0, rowOffset);
        ref T c2 = ref Unsafe.Add(ref c0, 2 * rowOffset);
        ref T c3 = ref Unsafe.Add(ref c0, 3 * rowOffset);
        ref T p = ref MemoryMarshal.GetReference(panel);
        ref T a0 = ref MemoryMarshal.GetReference(acc);
        ref T a1 = ref Unsafe.Add(ref a0, accStride);
        ref T a2 = ref Unsafe.Add(ref a0, 2 * accStride);
        ref T a3 = ref Unsafe.Add(ref a0, 3 * accStride);
        int x = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            int vc = Vector512<T>.Count;
            for (; x + 4 * vc <= w; x += 4 * vc)
            {
                nuint o0 = (nuint)x, o1 = (nuint)(x + vc), o2 = (nuint)(x + 2 * vc), o3 = (nuint)(x + 3 * vc);
                var s00 = Vector512.LoadUnsafe(ref a0, o0); var s01 = Vector512.LoadUnsafe(ref a0, o1); var s02 = Vector512.LoadUnsafe(ref a0, o2); var s03 = Vector512.LoadUnsafe(ref a0, o3);
                var s10 = Vector512.LoadUnsafe(ref a1, o0); var s11 = Vector512.LoadUnsafe(ref a1, o1); var s12 = Vector512.LoadUnsafe(ref a1, o2); var s13 = Vector512.LoadUnsafe(ref a1, o3);
                var s20 = Vector512.LoadUnsafe(ref a2, o0); var s21 = Vector512.LoadUnsafe(ref a2, o1); var s22 = Vector512.LoadUnsafe(ref a2, o2); var s23 = Vector512.LoadUnsafe(ref a2, o3);
                var s30 = Vector512.LoadUnsafe(ref a3, o0); var s31 = Vector512.LoadUnsafe(ref a3, o1); var s32 = Vector512.LoadUnsafe(ref a3, o2); var s33 = Vector512.LoadUnsafe(ref a3, o3);
                for (int k = 0; k < kk; k++)
                {
                    int ck = k * coeffStride;
                    ref T row = ref Unsafe.Add(ref p, k * stride + x);
                    var p0 = Vector512.LoadUnsafe(ref row); var p1 = Vector512.LoadUnsafe(ref row, (nuint)vc);
                    var p2 = Vector512.LoadUnsafe(ref row, (nuint)(2 * vc)); var p3 = Vector512.LoadUnsafe(ref row, (nuint)(3 * vc));
                    var b = Vector512.Create(Unsafe.Add(ref c0, ck));
                    s00 = Fma(b, p0, s00); s01 = Fma(b, p1, s01); s02 = Fma(b, p2, s02); s03 = Fma(b, p3, s03);
                    b = Vector512.Create(Unsafe.Add(ref c1, ck));
                    s10 = Fma(b, p0, s10); s11 = Fma(b, p1, s11); s12 = Fma(b, p2, s12); s13 = Fma(b, p3, s13);
                    b = Vector512.Create(Unsafe.Add(ref c2, ck));
                    s20 = Fma(b, p0, s20); s21 = Fma(b, p1, s21); s22 = Fma(b, p2, s22); s23 = Fma(b, p3, s23);
                    b = Vector512.Create(Unsafe.Add(ref c3, ck));
                    s30 = Fma(b, p0, s30); s31 = Fma(b, p1, s31); s32 = Fma(b, p2, s32); s33 = Fma(b, p3, s33);
                }
                s00.StoreUnsafe(ref a0, o0); s01.StoreUnsafe(ref a0, o1); s02.StoreUnsafe(ref a0, o2); s03.StoreUnsafe(ref a0, o3);
                s10.StoreUnsafe(ref a1, o0); s11.StoreUnsafe(ref a1, o1); s12.StoreUnsafe(ref a1, o2); s13.StoreUnsafe(ref a1, o3);
                s20.StoreUnsafe(ref a2, o0); s21.StoreUnsafe(ref a2, o1); s22.StoreUnsafe(ref a2, o2); s23.StoreUnsafe(ref a2, o3);
                s30.StoreUnsafe(ref a3, o0); s31.StoreUnsafe(ref a3, o1); s32.StoreUnsafe(ref a3, o2); s33.StoreUnsafe(ref a3, o3);
            }
            for (; x + vc <= w; x += vc)
            {
                nuint o = (nuint)x;
                var s0 = Vector512.LoadUnsafe(ref a0, o); var s1 = Vector512.LoadUnsafe(ref a1, o);
                var s2 = Vector512.LoadUnsafe(ref a2, o); var s3 = Vector512.LoadUnsafe(ref a3, o);
                for (int k = 0; k < kk; k++)
                {
                    int ck = k * coeffStride;
                    var pv = Vector512.LoadUnsafe(ref Unsafe.Add(ref p, k * stride + x));
                    s0 = Fma(Vector512.Create(Unsafe.Add(ref c0, ck)), pv, s0); s1 = Fma(Vector512.Create(Unsafe.Add(ref c1, ck)), pv, s1);
                    s2 = Fma(Vector512.Create(Unsafe.Add(ref c2, ck)), pv, s2); s3 = Fma(Vector512.Create(Unsafe.Add(ref c3, ck)), pv, s3);
                }
                s0.StoreUnsafe(ref a0, o); s1.StoreUnsafe(ref a1, o); s2.StoreUnsafe(ref a2, o); s3.StoreUnsafe(ref a3, o);
            }
        }
        {
            int vc = Vector<T>.Count;
            for (; x + 2 * vc <= w; x += 2 * vc)
            {
                nuint o0 = (nuint)x, o1 = (nuint)(x + vc);
                var s00 = Vector.LoadUnsafe(ref a0, o0); var s01 = Vector.LoadUnsafe(ref a0, o1);
                var s10 = Vector.LoadUnsafe(ref a1, o0); var s11 = Vector.LoadUnsafe(ref a1, o1);
                var s20 = Vector.LoadUnsafe(ref a2, o0); var s21 = Vector.LoadUnsafe(ref a2, o1);
                var s30 = Vector.LoadUnsafe(ref a3, o0); var s31 = Vector.LoadUnsafe(ref a3, o1);
                for (int k = 0; k < kk; k++)
                {
                    int ck = k * coeffStride;
                    ref T row = ref Unsafe.Add(ref p, k * stride + x);
                    var p0 = Vector.LoadUnsafe(ref row); var p1 = Vector.LoadUnsafe(ref row, (nuint)vc);
                    var b = new Vector<T>(Unsafe.Add(ref c0, ck)); s00 = Fma(b, p0, s00); s01 = Fma(b, p1, s01);
                    b = new Vector<T>(Unsafe.Add(ref c1, ck)); s10 = Fma(b, p0, s10); s11 = Fma(b, p1, s11);
                    b = new Vector<T>(Unsafe.Add(ref c2, ck)); s20 = Fma(b, p0, s20); s21 = Fma(b, p1, s21);
                    b = new Vector<T>(Unsafe.Add(ref c3, ck)); s30 = Fma(b, p0, s30); s31 = Fma(b, p1, s31);
                }
                s00.StoreUnsafe(ref a0, o0); s01.StoreUnsafe(ref a0, o1); s10.StoreUnsafe(ref a1, o0); s11.StoreUnsafe(ref a1, o1);
                s20.StoreUnsafe(ref a2, o0); s21.StoreUnsafe(ref a2, o1); s30.StoreUnsafe(ref a3, o0); s31.StoreUnsafe(ref a3, o1);
            }
            for (; x + vc <= w; x += vc)
            {
                nuint o = (nuint)x;
                var s0 = Vector.LoadUnsafe(ref a0, o); var s1 = Vector.LoadUnsafe(ref a1, o);
                var s2 = Vector.LoadUnsafe(ref a2, o); var s3 = Vector.LoadUnsafe(ref a3, o);
                for (int k = 0; k < kk; k++)
                {
                    int ck = k * coeffStride;
                    var pv = Vector.LoadUnsafe(ref Unsafe.Add(ref p, k * stride + x));
                    s0 = Fma(new Vector<T>(Unsafe.Add(ref c0, ck)), pv, s0); s1 = Fma(new Vector<T>(Unsafe.Add(ref c1, ck)), pv, s1);
                    s2 = Fma(new Vector<T>(Unsafe.Add(ref c2, ck)), pv, s2); s3 = Fma(new Vector<T>(Unsafe.Add(ref c3, ck)), pv, s3);
                }
                s0.StoreUnsafe(ref a0, o); s1.StoreUnsafe(ref a1, o); s2.StoreUnsafe(ref a2, o); s3.StoreUnsafe(ref a3, o);
            }
        }
        for (; x < w; x++)
        {
            T s0 = Unsafe.Add(ref a0, x), s1 = Unsafe.Add(ref a1, x), s2 = Unsafe.Add(ref a2, x), s3 = Unsafe.Add(ref a3, x);
            for (int k = 0; k < kk; k++)
            {
                int ck = k * coeffStride;
                T pv = Unsafe.Add(ref p, k * stride + x);
                s0 = T.FusedMultiplyAdd(Unsafe.Add(ref c0, ck), pv, s0); s1 = T.FusedMultiplyAdd(Unsafe.Add(ref c1, ck), pv, s1);
                s2 = T.FusedMultiplyAdd(Unsafe.Add(ref c2, ck), pv, s2); s3 = T.FusedMultiplyAdd(Unsafe.Add(ref c3, ck), pv, s3);
            }
            Unsafe.Add(ref a0, x) = s0; Unsafe.Add(ref a1, x) = s1; Unsafe.Add(ref a2, x) = s2; Unsafe.Add(ref a3, x) = s3;
        }
    }

    /// <summary>Rows [0, rows) of the multi-row product, four at a time, the remainder one at a time.</summary>
    public static void AccumulateRows<T>(ReadOnlySpan<T> coeffs, int rowOffset, int coeffStride, int count,
        ReadOnlySpan<T> panel, int stride, Span<T> acc, int accStride, int w, int rows)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4)
            Accumulate4(coeffs.Slice(r * rowOffset), rowOffset, coeffStride, count, panel, stride, acc.Slice(r * accStride), accStride, w);
        for (; r < rows; r++)
            Accumulate(coeffs.Slice(r * rowOffset), coeffStride, count, panel, stride, acc.Slice(r * accStride, w));
    }

    /// <summary>dst[x] = exp(src[x]·scale − shift) for x &lt; valid, 0 for valid ≤ x &lt; dst.Length (masked keys).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ScaledExp<T>(ReadOnlySpan<T> src, T scale, T shift, int valid, Span<T> dst)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int w = dst.Length, x = 0;
        if (src.Length < w || valid > w) ThrowPanel();
        ref T s = ref MemoryMarshal.GetReference(src);
        ref T t = ref MemoryMarshal.GetReference(dst);
        if (Vector512.IsHardwareAccelerated)
        {
            int v5 = Vector512<T>.Count;
            var vs = Vector512.Create(scale); var vshift = Vector512.Create(shift);
            for (; x + v5 <= valid; x += v5)
                Exp(Fma(Vector512.LoadUnsafe(ref s, (nuint)x), vs, -vshift)).StoreUnsafe(ref t, (nuint)x);
        }
        int vc = Vector<T>.Count;
        var ws = new Vector<T>(scale); var wshift = new Vector<T>(shift);
        for (; x + vc <= valid; x += vc)
            Exp(Fma(Vector.LoadUnsafe(ref s, (nuint)x), ws, -wshift)).StoreUnsafe(ref t, (nuint)x);
        for (; x < valid; x++) Unsafe.Add(ref t, x) = T.Exp(Unsafe.Add(ref s, x) * scale - shift);
        for (; x < w; x++) Unsafe.Add(ref t, x) = T.Zero;
    }

    /// <summary>ds[x] = p[x]·(ds[x] − shift): the softmax Jacobian row dS = P∘(dP − D) in place.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void JacobianRow<T>(ReadOnlySpan<T> p, T shift, Span<T> ds) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int w = ds.Length, x = 0;
        if (p.Length < w) ThrowPanel();
        ref T pr = ref MemoryMarshal.GetReference(p);
        ref T dr = ref MemoryMarshal.GetReference(ds);
        if (Vector512.IsHardwareAccelerated)
        {
            int v5 = Vector512<T>.Count;
            var vshift = Vector512.Create(shift);
            for (; x + v5 <= w; x += v5)
                (Vector512.LoadUnsafe(ref pr, (nuint)x) * (Vector512.LoadUnsafe(ref dr, (nuint)x) - vshift)).StoreUnsafe(ref dr, (nuint)x);
        }
        int vc = Vector<T>.Count;
        var wshift = new Vector<T>(shift);
        for (; x + vc <= w; x += vc)
            (Vector.LoadUnsafe(ref pr, (nuint)x) * (Vector.LoadUnsafe(ref dr, (nuint)x) - wshift)).StoreUnsafe(ref dr, (nuint)x);
        for (; x < w; x++) Unsafe.Add(ref dr, x) = Unsafe.Add(ref pr, x) * (Unsafe.Add(ref dr, x) - shift);
    }

    /// <summary>Packs rows [from, from + count) of a row-major (rows×cols) matrix transposed into a cols×width panel
    /// (column j of the panel is row from + j), zero-padding columns count..width.</summary>
    public static void PackTransposed<T>(ReadOnlySpan<T> source, int cols, int from, int count, int width, Span<T> panel)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        panel.Slice(0, cols * width).Clear();
        for (int j = 0; j < count; j++)
        {
            var row = source.Slice((from + j) * cols, cols);
            for (int c = 0; c < cols; c++) panel[c * width + j] = row[c];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<T> Fma<T>(Vector<T> a, Vector<T> b, Vector<T> c) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return Unsafe.BitCast<Vector<float>, Vector<T>>(Vector.FusedMultiplyAdd(Unsafe.BitCast<Vector<T>, Vector<float>>(a),
                Unsafe.BitCast<Vector<T>, Vector<float>>(b), Unsafe.BitCast<Vector<T>, Vector<float>>(c)));
        if (typeof(T) == typeof(double))
            return Unsafe.BitCast<Vector<double>, Vector<T>>(Vector.FusedMultiplyAdd(Unsafe.BitCast<Vector<T>, Vector<double>>(a),
                Unsafe.BitCast<Vector<T>, Vector<double>>(b), Unsafe.BitCast<Vector<T>, Vector<double>>(c)));
        return a * b + c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Fma<T>(Vector512<T> a, Vector512<T> b, Vector512<T> c) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return Vector512.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double))
            return Vector512.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        return a * b + c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<T> Exp<T>(Vector<T> a) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return Unsafe.BitCast<Vector<float>, Vector<T>>(Vector.Exp(Unsafe.BitCast<Vector<T>, Vector<float>>(a)));
        if (typeof(T) == typeof(double)) return Unsafe.BitCast<Vector<double>, Vector<T>>(Vector.Exp(Unsafe.BitCast<Vector<T>, Vector<double>>(a)));
        throw new NotSupportedException();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Exp<T>(Vector512<T> a) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float)) return Vector512.Exp(a.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.Exp(a.AsDouble()).As<double, T>();
        throw new NotSupportedException();
    }

    private static void ThrowCoeffs() => throw new ArgumentException("coeffs is shorter than count entries of the given stride.", "coeffs");

    private static void ThrowPanel() => throw new ArgumentException("the panel is shorter than coeffs.Length rows of the given stride.", "panel");
}
