using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastAttention.Exact;

/// <summary>
/// The handful of SIMD operations the exact kernels (forward, backward, decode) and the machine limits (FMA peak, exp
/// limit, bandwidth) need, as static abstract members so each kernel is written once and the JIT specialises it per
/// (element type, width): Vector512, Vector256, Vector128 or scalar, float or double. The width is chosen in one place,
/// <see cref="SimdDispatch"/>.
/// </summary>
internal interface ISimd<T, TV> where T : unmanaged where TV : unmanaged
{
    /// <summary>Lanes per vector.</summary>
    static abstract int Count { get; }
    static abstract TV Zero { get; }
    static abstract TV Broadcast(T x);
    static abstract TV Load(ref T source);
    static abstract void Store(TV v, ref T destination);
    /// <summary>a·b + c (one rounding where the hardware fuses; Vector128 on x86 without FMA rounds twice).</summary>
    static abstract TV Fma(TV a, TV b, TV c);
    static abstract TV Mul(TV a, TV b);
    static abstract TV Add(TV a, TV b);
    static abstract TV Sub(TV a, TV b);
    static abstract TV Max(TV a, TV b);
    static abstract TV Min(TV a, TV b);
    static abstract T MaxAcross(TV v);
    static abstract T SumAcross(TV v);
    /// <summary>True when some lane of <paramref name="a"/> exceeds the same lane of <paramref name="b"/>.</summary>
    static abstract bool AnyGreaterThan(TV a, TV b);
    /// <summary>2ˣ for x ≤ 16 (0 for x below the smallest normal exponent, so −∞ gives 0; NaN gives 0).
    /// Relative error ≤ <see cref="Exp2Coefficients.RelativeErrorF32"/> (float) / <see cref="Exp2Coefficients.RelativeErrorF64"/> (double).</summary>
    static abstract TV Exp2(TV x);
    /// <summary>2^max(x, −126) (float) / 2^max(x, −1022) (double): <see cref="Exp2"/> without the flush to 0 below the smallest
    /// normal, two operations cheaper. Only for arguments that are visible logits relative to a reference within a few
    /// units of their max, where 2⁻¹²⁶ against weights ≥ 1 is far below any rounding (never for masked −∞ logits).</summary>
    static abstract TV Exp2Clamped(TV x);
}

/// <summary>
/// 2ˣ = 2ⁿ·2ᶠ with n = round(x), f = x − n ∈ [−½, ½]: 2ᶠ by a polynomial (float: degree 6, Chebyshev-fitted on
/// [−½, ½] with the constant term 1; double: degree-13 Taylor, remainder ≤ 0.347¹⁴/14! = 1.7·10⁻¹⁷), then 2ⁿ added
/// to the exponent field as an integer (no multiply). n comes from the low mantissa bits of x + 1.5·2ᵖ (p = 23 or 52),
/// shifted straight into the exponent field.
/// </summary>
internal static class Exp2Coefficients
{
    /// <summary>Measured max relative error of the float32 Exp2 over [−126, 16] (1.2 units of 2⁻²⁴, rounding included).</summary>
    public const double RelativeErrorF32 = 1.5 * 5.960464477539063e-8;
    /// <summary>Bound on the relative error of the float64 Exp2 (polynomial remainder plus Horner rounding).</summary>
    public const double RelativeErrorF64 = 4 * 1.1102230246251565e-16;

    public const float F1 = 0.6931471880262285f, F2 = 0.24022650760567846f, F3 = 0.05550357114219147f, F4 = 0.009618082557302569f,
        F5 = 0.001339086336462805f, F6 = 0.00015453162939509034f;
    public const double D1 = 0.6931471805599453, D2 = 0.2402265069591007, D3 = 0.05550410866482158, D4 = 0.009618129107628477,
        D5 = 0.0013333558146428443, D6 = 1.5403530393381606e-4, D7 = 1.525273380405984e-5, D8 = 1.3215486790144307e-6,
        D9 = 1.0178086009239699e-7, D10 = 7.054911620801123e-9, D11 = 4.445538271870811e-10, D12 = 2.567843599348821e-11,
        D13 = 1.3691488853904124e-12;
    /// <summary>1.5·2²³ and 1.5·2⁵²: adding one rounds to an integer held in the low mantissa bits.</summary>
    public const float MagicF = 12582912f;
    public const double MagicD = 6755399441055744.0;
}

internal readonly struct Simd512F : ISimd<float, Vector512<float>>
{
    public static int Count => Vector512<float>.Count;
    public static Vector512<float> Zero => Vector512<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(ref float s) => Vector512.LoadUnsafe(ref s);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, ref float d) => v.StoreUnsafe(ref d);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Mul(Vector512<float> a, Vector512<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Sub(Vector512<float> a, Vector512<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Max(Vector512<float> a, Vector512<float> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Min(Vector512<float> a, Vector512<float> b) => Vector512.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> v)
    {
        var h = Vector256.MaxNative(v.GetLower(), v.GetUpper());
        return Simd128F.MaxAcross(Vector128.MaxNative(h.GetLower(), h.GetUpper()));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float SumAcross(Vector512<float> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreaterThan(Vector512<float> a, Vector512<float> b) => Vector512.GreaterThanAny(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> x)
    {
        return Exp2Clamped(x) & Vector512.GreaterThanOrEqual(x, Vector512.Create(-126f)); // below 2⁻¹²⁶ (and −∞, NaN): 0
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2Clamped(Vector512<float> x)
    {
        var magic = Vector512.Create(Exp2Coefficients.MagicF);
        var xc = Vector512.MaxNative(x, Vector512.Create(-126f));
        var t = xc + magic;
        var f = xc - (t - magic); // f ∈ [−1/2, 1/2]
        var p = Fma(Vector512.Create(Exp2Coefficients.F6), f, Vector512.Create(Exp2Coefficients.F5));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.F4));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.F3));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.F2));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.F1));
        p = Fma(p, f, Vector512<float>.One);
        // 2ⁿ: n sits in t's low mantissa bits; shifting by 23 moves it (two's complement, |n| < 256) onto the exponent field.
        return (p.AsInt32() + Vector512.ShiftLeft(t.AsInt32(), 23)).AsSingle();
    }
}

internal readonly struct Simd512D : ISimd<double, Vector512<double>>
{
    public static int Count => Vector512<double>.Count;
    public static Vector512<double> Zero => Vector512<double>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Broadcast(double x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Load(ref double s) => Vector512.LoadUnsafe(ref s);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<double> v, ref double d) => v.StoreUnsafe(ref d);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Fma(Vector512<double> a, Vector512<double> b, Vector512<double> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Mul(Vector512<double> a, Vector512<double> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Add(Vector512<double> a, Vector512<double> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Sub(Vector512<double> a, Vector512<double> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Max(Vector512<double> a, Vector512<double> b) => Vector512.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<double> Min(Vector512<double> a, Vector512<double> b) => Vector512.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double MaxAcross(Vector512<double> v) => Simd256D.MaxAcross(Vector256.MaxNative(v.GetLower(), v.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumAcross(Vector512<double> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreaterThan(Vector512<double> a, Vector512<double> b) => Vector512.GreaterThanAny(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<double> Exp2(Vector512<double> x)
    {
        // The clamped evaluation, with arguments below the floor flushed to 0.
        return Exp2Clamped(x) & Vector512.GreaterThanOrEqual(x, Vector512.Create(-1022.0));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<double> Exp2Clamped(Vector512<double> x)
    {
        var magic = Vector512.Create(Exp2Coefficients.MagicD);
        var xc = Vector512.MaxNative(x, Vector512.Create(-1022.0));
        var t = xc + magic;
        var f = xc - (t - magic);
        var p = Fma(Vector512.Create(Exp2Coefficients.D13), f, Vector512.Create(Exp2Coefficients.D12));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D11));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D10));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D9));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D8));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D7));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D6));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D5));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D4));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D3));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D2));
        p = Fma(p, f, Vector512.Create(Exp2Coefficients.D1));
        p = Fma(p, f, Vector512<double>.One);
        return (p.AsInt64() + Vector512.ShiftLeft(t.AsInt64(), 52)).AsDouble();
    }
}

internal readonly struct Simd256F : ISimd<float, Vector256<float>>
{
    public static int Count => Vector256<float>.Count;
    public static Vector256<float> Zero => Vector256<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(ref float s) => Vector256.LoadUnsafe(ref s);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, ref float d) => v.StoreUnsafe(ref d);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Mul(Vector256<float> a, Vector256<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Sub(Vector256<float> a, Vector256<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Max(Vector256<float> a, Vector256<float> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Min(Vector256<float> a, Vector256<float> b) => Vector256.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> v) => Simd128F.MaxAcross(Vector128.MaxNative(v.GetLower(), v.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float SumAcross(Vector256<float> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreaterThan(Vector256<float> a, Vector256<float> b) => Vector256.GreaterThanAny(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> x)
    {
        return Exp2Clamped(x) & Vector256.GreaterThanOrEqual(x, Vector256.Create(-126f)); // below 2⁻¹²⁶ (and −∞, NaN): 0
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2Clamped(Vector256<float> x)
    {
        var magic = Vector256.Create(Exp2Coefficients.MagicF);
        var xc = Vector256.MaxNative(x, Vector256.Create(-126f));
        var t = xc + magic;
        var f = xc - (t - magic); // f ∈ [−1/2, 1/2]
        var p = Fma(Vector256.Create(Exp2Coefficients.F6), f, Vector256.Create(Exp2Coefficients.F5));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.F4));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.F3));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.F2));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.F1));
        p = Fma(p, f, Vector256<float>.One);
        // 2ⁿ: n sits in t's low mantissa bits; shifting by 23 moves it (two's complement, |n| < 256) onto the exponent field.
        return (p.AsInt32() + Vector256.ShiftLeft(t.AsInt32(), 23)).AsSingle();
    }
}

internal readonly struct Simd256D : ISimd<double, Vector256<double>>
{
    public static int Count => Vector256<double>.Count;
    public static Vector256<double> Zero => Vector256<double>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Broadcast(double x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Load(ref double s) => Vector256.LoadUnsafe(ref s);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<double> v, ref double d) => v.StoreUnsafe(ref d);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Fma(Vector256<double> a, Vector256<double> b, Vector256<double> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Mul(Vector256<double> a, Vector256<double> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Add(Vector256<double> a, Vector256<double> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Sub(Vector256<double> a, Vector256<double> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Max(Vector256<double> a, Vector256<double> b) => Vector256.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<double> Min(Vector256<double> a, Vector256<double> b) => Vector256.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double MaxAcross(Vector256<double> v) => Simd128D.MaxAcross(Vector128.MaxNative(v.GetLower(), v.GetUpper()));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumAcross(Vector256<double> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreaterThan(Vector256<double> a, Vector256<double> b) => Vector256.GreaterThanAny(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<double> Exp2(Vector256<double> x)
    {
        // The clamped evaluation, with arguments below the floor flushed to 0.
        return Exp2Clamped(x) & Vector256.GreaterThanOrEqual(x, Vector256.Create(-1022.0));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<double> Exp2Clamped(Vector256<double> x)
    {
        var magic = Vector256.Create(Exp2Coefficients.MagicD);
        var xc = Vector256.MaxNative(x, Vector256.Create(-1022.0));
        var t = xc + magic;
        var f = xc - (t - magic);
        var p = Fma(Vector256.Create(Exp2Coefficients.D13), f, Vector256.Create(Exp2Coefficients.D12));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D11));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D10));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D9));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D8));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D7));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D6));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D5));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D4));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D3));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D2));
        p = Fma(p, f, Vector256.Create(Exp2Coefficients.D1));
        p = Fma(p, f, Vector256<double>.One);
        return (p.AsInt64() + Vector256.ShiftLeft(t.AsInt64(), 52)).AsDouble();
    }
}

internal readonly struct Simd128F : ISimd<float, Vector128<float>>
{
    public static int Count => Vector128<float>.Count;
    public static Vector128<float> Zero => Vector128<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Broadcast(float x) => Vector128.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(ref float s) => Vector128.LoadUnsafe(ref s);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> v, ref float d) => v.StoreUnsafe(ref d);
    /// <summary>Fused where the CPU has FMA (ARM NEON, x86 FMA3); mul + add on SSE-only CPUs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Mul(Vector128<float> a, Vector128<float> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Sub(Vector128<float> a, Vector128<float> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Max(Vector128<float> a, Vector128<float> b) => Vector128.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Min(Vector128<float> a, Vector128<float> b) => Vector128.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector128<float> v)
    {
        // Shuffle tree with the native max (the kernels never pass NaN here; ±0 order does not matter to a max).
        v = Vector128.MaxNative(v, Vector128.Shuffle(v, Vector128.Create(2, 3, 0, 1)));
        return Vector128.MaxNative(v, Vector128.Shuffle(v, Vector128.Create(1, 0, 3, 2))).ToScalar();
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float SumAcross(Vector128<float> v) => Vector128.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreaterThan(Vector128<float> a, Vector128<float> b) => Vector128.GreaterThanAny(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp2(Vector128<float> x)
    {
        return Exp2Clamped(x) & Vector128.GreaterThanOrEqual(x, Vector128.Create(-126f)); // below 2⁻¹²⁶ (and −∞, NaN): 0
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Exp2Clamped(Vector128<float> x)
    {
        var magic = Vector128.Create(Exp2Coefficients.MagicF);
        var xc = Vector128.MaxNative(x, Vector128.Create(-126f));
        var t = xc + magic;
        var f = xc - (t - magic); // f ∈ [−1/2, 1/2]
        var p = Fma(Vector128.Create(Exp2Coefficients.F6), f, Vector128.Create(Exp2Coefficients.F5));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.F4));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.F3));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.F2));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.F1));
        p = Fma(p, f, Vector128<float>.One);
        // 2ⁿ: n sits in t's low mantissa bits; shifting by 23 moves it (two's complement, |n| < 256) onto the exponent field.
        return (p.AsInt32() + Vector128.ShiftLeft(t.AsInt32(), 23)).AsSingle();
    }
}

internal readonly struct Simd128D : ISimd<double, Vector128<double>>
{
    public static int Count => Vector128<double>.Count;
    public static Vector128<double> Zero => Vector128<double>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Broadcast(double x) => Vector128.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Load(ref double s) => Vector128.LoadUnsafe(ref s);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<double> v, ref double d) => v.StoreUnsafe(ref d);
    /// <summary>Fused where the CPU has FMA (ARM NEON, x86 FMA3); mul + add on SSE-only CPUs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Fma(Vector128<double> a, Vector128<double> b, Vector128<double> c) => Vector128.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Mul(Vector128<double> a, Vector128<double> b) => a * b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Add(Vector128<double> a, Vector128<double> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Sub(Vector128<double> a, Vector128<double> b) => a - b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Max(Vector128<double> a, Vector128<double> b) => Vector128.MaxNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<double> Min(Vector128<double> a, Vector128<double> b) => Vector128.MinNative(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double MaxAcross(Vector128<double> v) => Vector128.MaxNative(v, Vector128.Shuffle(v, Vector128.Create(1L, 0L))).ToScalar();
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumAcross(Vector128<double> v) => Vector128.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static bool AnyGreaterThan(Vector128<double> a, Vector128<double> b) => Vector128.GreaterThanAny(a, b);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<double> Exp2(Vector128<double> x)
    {
        // The clamped evaluation, with arguments below the floor flushed to 0.
        return Exp2Clamped(x) & Vector128.GreaterThanOrEqual(x, Vector128.Create(-1022.0));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<double> Exp2Clamped(Vector128<double> x)
    {
        var magic = Vector128.Create(Exp2Coefficients.MagicD);
        var xc = Vector128.MaxNative(x, Vector128.Create(-1022.0));
        var t = xc + magic;
        var f = xc - (t - magic);
        var p = Fma(Vector128.Create(Exp2Coefficients.D13), f, Vector128.Create(Exp2Coefficients.D12));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D11));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D10));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D9));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D8));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D7));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D6));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D5));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D4));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D3));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D2));
        p = Fma(p, f, Vector128.Create(Exp2Coefficients.D1));
        p = Fma(p, f, Vector128<double>.One);
        return (p.AsInt64() + Vector128.ShiftLeft(t.AsInt64(), 52)).AsDouble();
    }
}

/// <summary>Scalar fallback (no SIMD hardware, or forced by tests): the same kernels with one lane.</summary>
internal readonly struct ScalarSimd<T> : ISimd<T, T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static int Count => 1;
    public static T Zero => T.Zero;
    public static T Broadcast(T x) => x;
    public static T Load(ref T s) => s;
    public static void Store(T v, ref T d) => d = v;
    public static T Fma(T a, T b, T c) => T.FusedMultiplyAdd(a, b, c);
    public static T Mul(T a, T b) => a * b;
    public static T Add(T a, T b) => a + b;
    public static T Sub(T a, T b) => a - b;
    public static T Max(T a, T b) => T.Max(a, b);
    public static T Min(T a, T b) => T.Min(a, b);
    public static T MaxAcross(T v) => v;
    public static T SumAcross(T v) => v;
    public static bool AnyGreaterThan(T a, T b) => a > b;
    public static T Exp2(T x) => x >= T.CreateTruncating(typeof(T) == typeof(float) ? -126 : -1022) ? T.Exp2(x) : T.Zero;
    public static T Exp2Clamped(T x) => T.Exp2(T.Max(x, T.CreateTruncating(typeof(T) == typeof(float) ? -126 : -1022)));
}
