using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace FastAttention.Exact;

/// <summary>
/// The handful of SIMD operations the exact kernel needs, as static abstract members so the kernel is written once
/// and the JIT specialises it per (element type, width): Vector512, Vector256 or scalar, float or double.
/// </summary>
internal interface ISimd<T, TV> where T : unmanaged where TV : unmanaged
{
    static abstract int Count { get; }
    static abstract TV Zero { get; }
    static abstract TV Broadcast(T x);
    static abstract TV Load(ref T source);
    static abstract void Store(TV v, ref T destination);
    /// <summary>a·b + c with one rounding.</summary>
    static abstract TV Fma(TV a, TV b, TV c);
    static abstract TV Mul(TV a, TV b);
    static abstract TV Add(TV a, TV b);
    static abstract TV Sub(TV a, TV b);
    static abstract TV Max(TV a, TV b);
    static abstract T MaxAcross(TV v);
    static abstract T SumAcross(TV v);
    /// <summary>2ˣ for x ≤ 0 (0 below the smallest normal, so −∞ gives 0). Relative error ≤ 2 ulp.</summary>
    static abstract TV Exp2(TV x);
}

/// <summary>Coefficients of 2^f = e^{f·ln2} for |f| ≤ 1/2 (Taylor; remainder ≤ 0.347ᵏ⁺¹/(k+1)!).</summary>
internal static class Exp2Coefficients
{
    // k = 7 for float: remainder 5.2e-9 < 2⁻²⁴; k = 13 for double: remainder 1.7e-17 < 2⁻⁵³.
    public const float F1 = 0.6931471805599453f, F2 = 0.2402265069591007f, F3 = 0.05550410866482158f, F4 = 0.009618129107628477f,
        F5 = 0.0013333558146428443f, F6 = 1.5403530393381606e-4f, F7 = 1.525273380405984e-5f;
    public const double D1 = 0.6931471805599453, D2 = 0.2402265069591007, D3 = 0.05550410866482158, D4 = 0.009618129107628477,
        D5 = 0.0013333558146428443, D6 = 1.5403530393381606e-4, D7 = 1.525273380405984e-5, D8 = 1.3215486790144307e-6,
        D9 = 1.0178086009239699e-7, D10 = 7.054911620801123e-9, D11 = 4.445538271870811e-10, D12 = 2.567843599348821e-11,
        D13 = 1.3691488853904124e-12;
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> v)
    {
        var h = Vector256.MaxNative(v.GetLower(), v.GetUpper());
        var q = Vector128.MaxNative(h.GetLower(), h.GetUpper());
        return MathF.Max(MathF.Max(q[0], q[1]), MathF.Max(q[2], q[3]));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float SumAcross(Vector512<float> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> x)
    {
        var magic = Vector512.Create(12582912f); // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits
        var xc = Vector512.MaxNative(x, Vector512.Create(-127f));
        var t = xc + magic;
        var n = t.AsInt32() - magic.AsInt32();
        var f = xc - (t - magic); // f ∈ [−1/2, 1/2]
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(Exp2Coefficients.F7), f, Vector512.Create(Exp2Coefficients.F6));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.F5));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.F4));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.F3));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.F2));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.F1));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512<float>.One);
        var scale = Vector512.ShiftLeft(n + Vector512.Create(127), 23).AsSingle();
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(-126f)), Vector512<float>.Zero, p * scale);
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> v)
    {
        var q = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        return MathF.Max(MathF.Max(q[0], q[1]), MathF.Max(q[2], q[3]));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float SumAcross(Vector256<float> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp2(Vector256<float> x)
    {
        var magic = Vector256.Create(12582912f);
        var xc = Vector256.MaxNative(x, Vector256.Create(-127f));
        var t = xc + magic;
        var n = t.AsInt32() - magic.AsInt32();
        var f = xc - (t - magic);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(Exp2Coefficients.F7), f, Vector256.Create(Exp2Coefficients.F6));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.F5));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.F4));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.F3));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.F2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.F1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256<float>.One);
        var scale = Vector256.ShiftLeft(n + Vector256.Create(127), 23).AsSingle();
        return Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(-126f)), Vector256<float>.Zero, p * scale);
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double MaxAcross(Vector512<double> v)
    {
        var h = Vector256.MaxNative(v.GetLower(), v.GetUpper());
        return Math.Max(Math.Max(h[0], h[1]), Math.Max(h[2], h[3]));
    }
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumAcross(Vector512<double> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<double> Exp2(Vector512<double> x)
    {
        var magic = Vector512.Create(6755399441055744.0); // 1.5·2⁵²
        var xc = Vector512.MaxNative(x, Vector512.Create(-1023.0));
        var t = xc + magic;
        var n = t.AsInt64() - magic.AsInt64();
        var f = xc - (t - magic);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(Exp2Coefficients.D13), f, Vector512.Create(Exp2Coefficients.D12));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D11));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D10));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D9));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D8));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D7));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D6));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D5));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D4));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D3));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D2));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(Exp2Coefficients.D1));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512<double>.One);
        var scale = Vector512.ShiftLeft(n + Vector512.Create(1023L), 52).AsDouble();
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(-1022.0)), Vector512<double>.Zero, p * scale);
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double MaxAcross(Vector256<double> v) => Math.Max(Math.Max(v[0], v[1]), Math.Max(v[2], v[3]));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double SumAcross(Vector256<double> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<double> Exp2(Vector256<double> x)
    {
        var magic = Vector256.Create(6755399441055744.0);
        var xc = Vector256.MaxNative(x, Vector256.Create(-1023.0));
        var t = xc + magic;
        var n = t.AsInt64() - magic.AsInt64();
        var f = xc - (t - magic);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(Exp2Coefficients.D13), f, Vector256.Create(Exp2Coefficients.D12));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D11));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D10));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D9));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D8));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D7));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D6));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D5));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D4));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D3));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D2));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256.Create(Exp2Coefficients.D1));
        p = Vector256.FusedMultiplyAdd(p, f, Vector256<double>.One);
        var scale = Vector256.ShiftLeft(n + Vector256.Create(1023L), 52).AsDouble();
        return Vector256.ConditionalSelect(Vector256.LessThan(x, Vector256.Create(-1022.0)), Vector256<double>.Zero, p * scale);
    }
}

/// <summary>Scalar fallback (no SIMD hardware): the same kernel with one lane.</summary>
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
    public static T MaxAcross(T v) => v;
    public static T SumAcross(T v) => v;
    public static T Exp2(T x) => T.IsNegativeInfinity(x) ? T.Zero : T.Exp2(x);
}
