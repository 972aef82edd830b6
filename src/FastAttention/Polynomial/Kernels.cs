using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace FastAttention.Polynomial;

/// <summary>
/// Register-blocked SIMD kernels for Algorithm 1's products (lines 7, 9, 10): O(rows·r·cols) multiply–adds with
/// several accumulators in registers, instead of one memory-bound pass per (feature, column) pair.
/// Layouts: F is r×stride (feature-major, <c>len</c> valid rows), columns are col×stride, S is cols×r.
/// </summary>
internal static class Kernels
{
    /// <summary>s[c·r + α] += Σ_{j&lt;len} F[α·stride + j]·cols[c·stride + j] (Algorithm 1 lines 7 and 9: U₂ᵀ[V, 1]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AccumulateKeySums(double[] f, double[] cols, int r, int ncols, int stride, int len, double[] s)
    {
        int w = Vector<double>.Count;
        int vecLen = len - len % w;
        ref double fr = ref MemoryMarshal.GetArrayDataReference(f);
        ref double cr = ref MemoryMarshal.GetArrayDataReference(cols);
        int full = ncols - ncols % 4;
        for (int c = full; c < ncols; c++) KeySumsOneColumn(f, cols, r, c, stride, len, s);
        for (int c0 = 0; c0 < full; c0 += 4)
        {
            int nc = 4;
            nuint o0 = (nuint)((c0 + 0) * stride), o1 = (nuint)(Math.Min(c0 + 1, ncols - 1) * stride);
            nuint o2 = (nuint)(Math.Min(c0 + 2, ncols - 1) * stride), o3 = (nuint)(Math.Min(c0 + 3, ncols - 1) * stride);
            int a = 0;
            for (; a + 2 <= r; a += 2)
            {
                nuint fa = (nuint)(a * stride), fb = (nuint)((a + 1) * stride);
                Vector<double> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
                for (int j = 0; j < vecLen; j += w)
                {
                    nuint jj = (nuint)j;
                    var x = Vector.LoadUnsafe(ref fr, fa + jj);
                    var y = Vector.LoadUnsafe(ref fr, fb + jj);
                    var v0 = Vector.LoadUnsafe(ref cr, o0 + jj);
                    var v1 = Vector.LoadUnsafe(ref cr, o1 + jj);
                    var v2 = Vector.LoadUnsafe(ref cr, o2 + jj);
                    var v3 = Vector.LoadUnsafe(ref cr, o3 + jj);
                    a0 = Vector.FusedMultiplyAdd(x, v0, a0); a1 = Vector.FusedMultiplyAdd(x, v1, a1);
                    a2 = Vector.FusedMultiplyAdd(x, v2, a2); a3 = Vector.FusedMultiplyAdd(x, v3, a3);
                    b0 = Vector.FusedMultiplyAdd(y, v0, b0); b1 = Vector.FusedMultiplyAdd(y, v1, b1);
                    b2 = Vector.FusedMultiplyAdd(y, v2, b2); b3 = Vector.FusedMultiplyAdd(y, v3, b3);
                }
                double sa0 = Vector.Sum(a0), sa1 = Vector.Sum(a1), sa2 = Vector.Sum(a2), sa3 = Vector.Sum(a3);
                double sb0 = Vector.Sum(b0), sb1 = Vector.Sum(b1), sb2 = Vector.Sum(b2), sb3 = Vector.Sum(b3);
                for (int j = vecLen; j < len; j++)
                {
                    double x = f[a * stride + j], y = f[(a + 1) * stride + j];
                    double v0 = cols[(int)o0 + j], v1 = cols[(int)o1 + j], v2 = cols[(int)o2 + j], v3 = cols[(int)o3 + j];
                    sa0 = Math.FusedMultiplyAdd(x, v0, sa0); sa1 = Math.FusedMultiplyAdd(x, v1, sa1);
                    sa2 = Math.FusedMultiplyAdd(x, v2, sa2); sa3 = Math.FusedMultiplyAdd(x, v3, sa3);
                    sb0 = Math.FusedMultiplyAdd(y, v0, sb0); sb1 = Math.FusedMultiplyAdd(y, v1, sb1);
                    sb2 = Math.FusedMultiplyAdd(y, v2, sb2); sb3 = Math.FusedMultiplyAdd(y, v3, sb3);
                }
                Store(s, r, c0, nc, a, sa0, sa1, sa2, sa3);
                Store(s, r, c0, nc, a + 1, sb0, sb1, sb2, sb3);
            }
            for (; a < r; a++)
            {
                double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (int j = 0; j < len; j++)
                {
                    double x = f[a * stride + j];
                    s0 = Math.FusedMultiplyAdd(x, cols[(int)o0 + j], s0); s1 = Math.FusedMultiplyAdd(x, cols[(int)o1 + j], s1);
                    s2 = Math.FusedMultiplyAdd(x, cols[(int)o2 + j], s2); s3 = Math.FusedMultiplyAdd(x, cols[(int)o3 + j], s3);
                }
                Store(s, r, c0, nc, a, s0, s1, s2, s3);
            }
        }
    }

    /// <summary>One column c of <see cref="AccumulateKeySums"/>, four features at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void KeySumsOneColumn(double[] f, double[] cols, int r, int c, int stride, int len, double[] s)
    {
        int w = Vector<double>.Count;
        int vecLen = len - len % w;
        ref double fr = ref MemoryMarshal.GetArrayDataReference(f);
        ref double cr = ref MemoryMarshal.GetArrayDataReference(cols);
        nuint oc = (nuint)(c * stride);
        int a = 0;
        for (; a + 4 <= r; a += 4)
        {
            nuint f0 = (nuint)(a * stride), f1 = f0 + (nuint)stride, f2 = f1 + (nuint)stride, f3 = f2 + (nuint)stride;
            Vector<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int j = 0; j < vecLen; j += w)
            {
                nuint jj = (nuint)j;
                var v = Vector.LoadUnsafe(ref cr, oc + jj);
                a0 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, f0 + jj), v, a0);
                a1 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, f1 + jj), v, a1);
                a2 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, f2 + jj), v, a2);
                a3 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, f3 + jj), v, a3);
            }
            double s0 = Vector.Sum(a0), s1 = Vector.Sum(a1), s2 = Vector.Sum(a2), s3 = Vector.Sum(a3);
            for (int j = vecLen; j < len; j++)
            {
                double v = cols[(int)oc + j];
                s0 = Math.FusedMultiplyAdd(f[(int)f0 + j], v, s0); s1 = Math.FusedMultiplyAdd(f[(int)f1 + j], v, s1);
                s2 = Math.FusedMultiplyAdd(f[(int)f2 + j], v, s2); s3 = Math.FusedMultiplyAdd(f[(int)f3 + j], v, s3);
            }
            s[c * r + a] += s0; s[c * r + a + 1] += s1; s[c * r + a + 2] += s2; s[c * r + a + 3] += s3;
        }
        for (; a < r; a++)
        {
            double t = 0;
            for (int j = 0; j < len; j++) t = Math.FusedMultiplyAdd(f[a * stride + j], cols[(int)oc + j], t);
            s[c * r + a] += t;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(double[] s, int r, int c0, int nc, int a, double x0, double x1, double x2, double x3)
    {
        s[c0 * r + a] += x0;
        if (nc > 1) s[(c0 + 1) * r + a] += x1;
        if (nc > 2) s[(c0 + 2) * r + a] += x2;
        if (nc > 3) s[(c0 + 3) * r + a] += x3;
    }

    /// <summary>acc[c·stride + j] = Σ_α F[α·stride + j]·s[c·r + α] for j &lt; len (Algorithm 1 lines 7 and 10: U₁·(U₂ᵀ[V, 1])).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ContractQueries(double[] f, double[] s, int r, int ncols, int stride, int len, double[] acc)
    {
        int w = Vector<double>.Count;
        int vecLen = len - len % (2 * w);
        ref double fr = ref MemoryMarshal.GetArrayDataReference(f);
        ref double ar = ref MemoryMarshal.GetArrayDataReference(acc);
        int full = ncols - ncols % 4;
        for (int c = full; c < ncols; c++) ContractOneColumn(f, s, r, c, stride, len, acc);
        for (int c0 = 0; c0 < full; c0 += 4)
        {
            int nc = 4;
            int i0 = c0 * r, i1 = Math.Min(c0 + 1, ncols - 1) * r, i2 = Math.Min(c0 + 2, ncols - 1) * r, i3 = Math.Min(c0 + 3, ncols - 1) * r;
            for (int j = 0; j < vecLen; j += 2 * w)
            {
                Vector<double> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
                for (int a = 0; a < r; a++)
                {
                    nuint off = (nuint)(a * stride + j);
                    var x = Vector.LoadUnsafe(ref fr, off);
                    var y = Vector.LoadUnsafe(ref fr, off + (nuint)w);
                    var s0 = new Vector<double>(s[i0 + a]); var s1 = new Vector<double>(s[i1 + a]);
                    var s2 = new Vector<double>(s[i2 + a]); var s3 = new Vector<double>(s[i3 + a]);
                    a0 = Vector.FusedMultiplyAdd(x, s0, a0); a1 = Vector.FusedMultiplyAdd(x, s1, a1);
                    a2 = Vector.FusedMultiplyAdd(x, s2, a2); a3 = Vector.FusedMultiplyAdd(x, s3, a3);
                    b0 = Vector.FusedMultiplyAdd(y, s0, b0); b1 = Vector.FusedMultiplyAdd(y, s1, b1);
                    b2 = Vector.FusedMultiplyAdd(y, s2, b2); b3 = Vector.FusedMultiplyAdd(y, s3, b3);
                }
                nuint jj = (nuint)j;
                a0.StoreUnsafe(ref ar, (nuint)(c0 * stride) + jj); b0.StoreUnsafe(ref ar, (nuint)(c0 * stride) + jj + (nuint)w);
                if (nc > 1) { a1.StoreUnsafe(ref ar, (nuint)((c0 + 1) * stride) + jj); b1.StoreUnsafe(ref ar, (nuint)((c0 + 1) * stride) + jj + (nuint)w); }
                if (nc > 2) { a2.StoreUnsafe(ref ar, (nuint)((c0 + 2) * stride) + jj); b2.StoreUnsafe(ref ar, (nuint)((c0 + 2) * stride) + jj + (nuint)w); }
                if (nc > 3) { a3.StoreUnsafe(ref ar, (nuint)((c0 + 3) * stride) + jj); b3.StoreUnsafe(ref ar, (nuint)((c0 + 3) * stride) + jj + (nuint)w); }
            }
            for (int j = vecLen; j < len; j++)
                for (int c = c0; c < c0 + nc; c++)
                {
                    double t = 0;
                    for (int a = 0; a < r; a++) t = Math.FusedMultiplyAdd(f[a * stride + j], s[c * r + a], t);
                    acc[c * stride + j] = t;
                }
        }
    }

    /// <summary>One column c of <see cref="ContractQueries"/>, four row vectors at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ContractOneColumn(double[] f, double[] s, int r, int c, int stride, int len, double[] acc)
    {
        int w = Vector<double>.Count;
        int vecLen = len - len % (4 * w);
        ref double fr = ref MemoryMarshal.GetArrayDataReference(f);
        ref double ar = ref MemoryMarshal.GetArrayDataReference(acc);
        int sc = c * r;
        for (int j = 0; j < vecLen; j += 4 * w)
        {
            Vector<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int a = 0; a < r; a++)
            {
                nuint off = (nuint)(a * stride + j);
                var sv = new Vector<double>(s[sc + a]);
                a0 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, off), sv, a0);
                a1 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, off + (nuint)w), sv, a1);
                a2 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, off + (nuint)(2 * w)), sv, a2);
                a3 = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref fr, off + (nuint)(3 * w)), sv, a3);
            }
            nuint o = (nuint)(c * stride + j);
            a0.StoreUnsafe(ref ar, o); a1.StoreUnsafe(ref ar, o + (nuint)w);
            a2.StoreUnsafe(ref ar, o + (nuint)(2 * w)); a3.StoreUnsafe(ref ar, o + (nuint)(3 * w));
        }
        for (int j = vecLen; j < len; j++)
        {
            double t = 0;
            for (int a = 0; a < r; a++) t = Math.FusedMultiplyAdd(f[a * stride + j], s[sc + a], t);
            acc[c * stride + j] = t;
        }
    }

    /// <summary>
    /// One causal row: when <paramref name="addKey"/>, S_c += ψ·v_c for every column (v = [V_row, 1]); then
    /// num_c = φᵀS_c. Each column of S is read and written once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void CausalStep(ReadOnlySpan<double> phi, ReadOnlySpan<double> psi, bool addKey, ReadOnlySpan<double> v, double[] s, int r, Span<double> num)
    {
        int w = Vector<double>.Count;
        int vecLen = r - r % w;
        ref double pr = ref MemoryMarshal.GetReference(phi);
        ref double kr = ref MemoryMarshal.GetReference(psi);
        ref double sr = ref MemoryMarshal.GetArrayDataReference(s);
        for (int c = 0; c < v.Length; c++)
        {
            nuint baseC = (nuint)(c * r);
            double vc = v[c];
            var vv = new Vector<double>(vc);
            Vector<double> acc = default;
            if (addKey)
            {
                for (int a = 0; a < vecLen; a += w)
                {
                    var sv = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref kr, (nuint)a), vv, Vector.LoadUnsafe(ref sr, baseC + (nuint)a));
                    sv.StoreUnsafe(ref sr, baseC + (nuint)a);
                    acc = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref pr, (nuint)a), sv, acc);
                }
            }
            else
            {
                for (int a = 0; a < vecLen; a += w)
                    acc = Vector.FusedMultiplyAdd(Vector.LoadUnsafe(ref pr, (nuint)a), Vector.LoadUnsafe(ref sr, baseC + (nuint)a), acc);
            }
            double t = Vector.Sum(acc);
            for (int a = vecLen; a < r; a++)
            {
                if (addKey) s[c * r + a] = Math.FusedMultiplyAdd(psi[a], vc, s[c * r + a]);
                t = Math.FusedMultiplyAdd(phi[a], s[c * r + a], t);
            }
            num[c] = t;
        }
    }
}
