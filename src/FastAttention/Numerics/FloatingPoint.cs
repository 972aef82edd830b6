using System.Numerics;
using System.Runtime.CompilerServices;

namespace FastAttention.Numerics;

/// <summary>
/// The one numerics core every error budget reads: unit roundoffs, γₖ (Higham, Lemma 3.1), error-free transformations
/// (TwoSum, TwoProduct), double-double dot products, and the rounded-up statistics (max-abs, row norms) that bounds
/// are built from. Nothing else in the library defines these.
/// </summary>
public static class FloatingPoint
{
    /// <summary>Unit roundoff of float64, u = 2⁻⁵³.</summary>
    public const double U = 1.1102230246251565e-16;

    /// <summary>Unit roundoff of float32, 2⁻²⁴.</summary>
    public const double UFloat32 = 5.9604644775390625e-08;

    /// <summary>Unit roundoff of float16, 2⁻¹¹.</summary>
    public const double UFloat16 = 4.8828125e-04;

    /// <summary>The smallest positive normal float64, 2⁻¹⁰²² (below it, rounding is absolute, not relative).</summary>
    public const double MinNormal = 2.2250738585072014e-308;

    /// <summary>The unit roundoff of <typeparamref name="T"/> (float16, float32 or float64).</summary>
    public static double UnitRoundoff<T>() where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        typeof(T) == typeof(double) ? U : typeof(T) == typeof(float) ? UFloat32 : typeof(T) == typeof(Half) ? UFloat16 : U;

    /// <summary>γₖ = k·u/(1 − k·u): the bound on k compounded float64 roundings (Higham, Lemma 3.1); +∞ when k·u ≥ ½.</summary>
    public static double Gamma(double k) => k * U < 0.5 ? k * U / (1 - k * U) : double.PositiveInfinity;

    /// <summary>γₖ for a unit roundoff <paramref name="unit"/>: k·unit/(1 − k·unit), +∞ when k·unit ≥ ½.</summary>
    public static double Gamma(double k, double unit) => k * unit < 0.5 ? k * unit / (1 - k * unit) : double.PositiveInfinity;

    /// <summary>
    /// An upper bound on e^x, within a factor 2·e^{4u|x|} of it from e^−708 up: 2^⌈x·log₂e⌉, the exponent from one
    /// rounded product widened by 2u of itself (the product and the constant each err by ≤ u/2 relative), then an exact
    /// power of two built from its bits; +∞ above e^709; below e^−708 the smallest normal 2⁻¹⁰²² — still a bound, and no
    /// subnormal result, since subnormal arithmetic costs ~100 cycles per operation (the range search sums one of these
    /// per pruned node, most of them far below its maximum). A few cycles where <see cref="Math.Exp"/> costs tens, for
    /// bounds that may be loose by 2×. NaN stays NaN.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double ExpUpperBound(double x)
    {
        if (!(x < 709)) return double.IsNaN(x) ? x : double.PositiveInfinity;
        if (x < -709) return MinNormal; // e^−709 < 2^−1022
        double t = x * 1.4426950408889634;
        double k = Math.Max(-1022, Math.Ceiling(t + 2 * U * Math.Abs(t)));
        return BitConverter.Int64BitsToDouble((long)(k + 1023) << 52);
    }

    /// <summary>TwoSum (Knuth): s + e = a + b exactly, s = fl(a + b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (double Sum, double Error) TwoSum(double a, double b)
    {
        double s = a + b, bb = s - a;
        return (s, (a - (s - bb)) + (b - bb));
    }

    /// <summary>TwoProduct via FMA: p + e = a·b exactly, p = fl(a·b).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (double Product, double Error) TwoProduct(double a, double b)
    {
        double p = a * b;
        return (p, Math.FusedMultiplyAdd(a, b, -p));
    }

    /// <summary>
    /// Σ_c q_c·k_c − (yHi + yLo), with error ≤ 2u·|result| + 4(d + 1)u²·Σ|q_c k_c|: every product is split exactly
    /// (TwoProduct via FMA) and all parts are added with Neumaier's compensation.
    /// </summary>
    public static double DotMinus(ReadOnlySpan<double> q, ReadOnlySpan<double> k, double yHi, double yLo)
    {
        var (sum, comp) = CompensatedDot(q, k, -yHi, -yLo);
        return sum + comp;
    }

    /// <summary>q·k as a double-double (hi + lo), error ≤ 4(d + 1)u²·Σ|q_c k_c|.</summary>
    public static (double Hi, double Lo) Dot2(ReadOnlySpan<double> q, ReadOnlySpan<double> k)
    {
        var (sum, comp) = CompensatedDot(q, k, 0, 0);
        double hi = sum + comp;
        return (hi, comp - (hi - sum));
    }

    /// <summary>(sum, comp) after adding every q_c·k_c to sum + comp: each product split exactly (TwoProduct via FMA),
    /// the high parts added with Neumaier's compensation, the errors into comp.</summary>
    private static (double Sum, double Comp) CompensatedDot(ReadOnlySpan<double> q, ReadOnlySpan<double> k, double sum, double comp)
    {
        for (int c = 0; c < q.Length; c++)
        {
            double p = q[c] * k[c];
            comp += Math.FusedMultiplyAdd(q[c], k[c], -p);
            double t = sum + p;
            comp += Math.Abs(sum) >= Math.Abs(p) ? (sum - t) + p : (p - t) + sum;
            sum = t;
        }
        return (sum, comp);
    }

    /// <summary>max |xᵢ| (exact: no rounding in a maximum of magnitudes); 0 for an empty span.</summary>
    public static double MaxAbs<T>(ReadOnlySpan<T> x) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (x.IsEmpty) return 0;
        if (typeof(T) == typeof(float))
            return Math.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x)));
        if (typeof(T) == typeof(double))
            return Math.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(System.Runtime.InteropServices.MemoryMarshal.Cast<T, double>(x)));
        double r = 0;
        foreach (var e in x) r = Math.Max(r, Math.Abs(double.CreateTruncating(e)));
        return r;
    }

    /// <summary>maxᵢ ‖xᵢ‖₂ over the rows of a rows×d row-major matrix, rounded up so it bounds the exact maximum
    /// (d roundings in the sum of squares, one in the square root: factor 1 + γ_{d+4}).</summary>
    public static double MaxRowNorm<T>(ReadOnlySpan<T> x, int rows, int d) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // Entries beyond ~1e154 would overflow their squares: scale by an exact power of two first. float32 and float16
        // entries squared stay far inside float64's range (no overflow, no underflow to subnormals): no scaling pass.
        double scale = 1;
        if (typeof(T) == typeof(double))
        {
            double mx = MaxAbs(x.Slice(0, rows * d));
            if (mx == 0) return 0;
            scale = Math.ScaleB(1, -Math.ILogB(mx));
        }
        double best = 0;
        if (typeof(T) == typeof(float) && System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated && d >= 8)
        {
            // float32 rows widened exactly, eight entries per step in two float64 FMA chains (still d roundings).
            var f = System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(x);
            var sv = System.Runtime.Intrinsics.Vector256.Create(scale);
            for (int i = 0; i < rows; i++)
            {
                var row = f.Slice(i * d, d);
                var a0 = System.Runtime.Intrinsics.Vector256<double>.Zero; var a1 = a0;
                int c = 0;
                for (; c + 8 <= d; c += 8)
                {
                    var w = System.Runtime.Intrinsics.Vector256.Create(row.Slice(c, 8));
                    var lo = System.Runtime.Intrinsics.Vector256.WidenLower(w) * sv; var hi = System.Runtime.Intrinsics.Vector256.WidenUpper(w) * sv;
                    a0 = System.Runtime.Intrinsics.Vector256.FusedMultiplyAdd(lo, lo, a0); a1 = System.Runtime.Intrinsics.Vector256.FusedMultiplyAdd(hi, hi, a1);
                }
                double s = System.Runtime.Intrinsics.Vector256.Sum(a0 + a1);
                for (; c < d; c++) { double e = row[c] * scale; s = Math.FusedMultiplyAdd(e, e, s); }
                best = Math.Max(best, s);
            }
        }
        else if (typeof(T) == typeof(double) && System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated && d >= 4)
        {
            var f = System.Runtime.InteropServices.MemoryMarshal.Cast<T, double>(x);
            var sv = System.Runtime.Intrinsics.Vector256.Create(scale);
            for (int i = 0; i < rows; i++)
            {
                var row = f.Slice(i * d, d);
                var a0 = System.Runtime.Intrinsics.Vector256<double>.Zero;
                int c = 0;
                for (; c + 4 <= d; c += 4)
                {
                    var w = System.Runtime.Intrinsics.Vector256.Create(row.Slice(c, 4)) * sv;
                    a0 = System.Runtime.Intrinsics.Vector256.FusedMultiplyAdd(w, w, a0);
                }
                double s = System.Runtime.Intrinsics.Vector256.Sum(a0);
                for (; c < d; c++) { double e = row[c] * scale; s = Math.FusedMultiplyAdd(e, e, s); }
                best = Math.Max(best, s);
            }
        }
        else
            for (int i = 0; i < rows; i++)
            {
                double s = 0;
                for (int c = 0; c < d; c++) { double e = double.CreateTruncating(x[i * d + c]) * scale; s = Math.FusedMultiplyAdd(e, e, s); }
                best = Math.Max(best, s);
            }
        return Math.Sqrt(best) * (1 + Gamma(d + 4)) / scale;
    }
}
