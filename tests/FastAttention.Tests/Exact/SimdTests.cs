using System.Numerics;
using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Exact;

/// <summary>The SIMD layer at each width, through the one dispatch ladder: exp₂ accuracy and its edge values, the
/// reductions and the lane comparison every kernel relies on.</summary>
public unsafe class SimdTests
{
    private struct Probe : ISimdKernel<int>
    {
        public double* X;
        public double* Exp2, Clamped, Max, Sum;
        public int Count;
        public bool* Any;

        public int Run<T, TV, TS>() where T : unmanaged, IBinaryFloatingPointIeee754<T> where TV : unmanaged where TS : struct, ISimd<T, TV>
        {
            int w = TS.Count;
            var lanes = stackalloc T[w];
            var e = stackalloc T[w];
            for (int i = 0; i + w <= Count; i += w)
            {
                for (int l = 0; l < w; l++) lanes[l] = T.CreateTruncating(X[i + l]);
                TV x = TS.Load(ref lanes[0]);
                TS.Store(TS.Exp2(x), ref e[0]);
                for (int l = 0; l < w; l++) Exp2[i + l] = double.CreateTruncating(e[l]);
                TS.Store(TS.Exp2Clamped(x), ref e[0]);
                for (int l = 0; l < w; l++) Clamped[i + l] = double.CreateTruncating(e[l]);
                Max[i / w] = double.CreateTruncating(TS.MaxAcross(x));
                Sum[i / w] = double.CreateTruncating(TS.SumAcross(x));
                Any[i / w] = TS.AnyGreaterThan(x, TS.Broadcast(T.CreateTruncating(-1.0)));
            }
            return w;
        }
    }

    private static void Check<T>(int lanes) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        bool f32 = typeof(T) == typeof(float);
        double lo = f32 ? -126 : -1022, tol = f32 ? Exp2Coefficients.RelativeErrorF32 : Exp2Coefficients.RelativeErrorF64;
        var xs = new List<double>();
        var rng = new Random(lanes);
        for (int i = 0; i < 4096; i++) xs.Add(lo + (16 - lo) * rng.NextDouble());
        xs.AddRange([0, -0.5, 0.5, -1, 1, 8, 16, lo, lo + 0.25, -1e-30, double.NegativeInfinity, lo - 0.5, lo - 100, double.NaN]);
        while (xs.Count % 16 != 0) xs.Add(-2);
        var x = xs.Select(v => double.CreateTruncating(T.CreateTruncating(v))).ToArray();
        var exp = new double[x.Length]; var clamped = new double[x.Length];
        var max = new double[x.Length]; var sum = new double[x.Length]; var any = new bool[x.Length];
        int w;
        fixed (double* px = x, pe = exp, pc = clamped, pm = max, ps = sum) fixed (bool* pa = any)
        {
            var probe = new Probe { X = px, Exp2 = pe, Clamped = pc, Max = pm, Sum = ps, Any = pa, Count = x.Length };
            w = SimdDispatch.Run<T, Probe, int>(ref probe, lanes);
        }
        Assert.Equal(lanes == 1 ? 1 : lanes * 4 / sizeof(T), w); // the width that ran
        for (int i = 0; i < x.Length; i++)
        {
            double xi = x[i];
            if (double.IsNaN(xi)) { Assert.Equal(0.0, exp[i]); continue; }
            if (xi < lo) { Assert.Equal(0.0, exp[i]); Assert.Equal(Math.Pow(2, lo), clamped[i], Math.Pow(2, lo) * tol); continue; }
            double expected = Math.Pow(2, xi);
            Assert.True(Math.Abs(exp[i] - expected) <= tol * expected, $"exp2({xi}) = {exp[i]:R}, expected {expected:R}");
            Assert.True(Math.Abs(clamped[i] - expected) <= tol * expected, $"clamped exp2({xi}) = {clamped[i]:R}");
        }
        Assert.Equal(1.0, exp[xs.IndexOf(0)]); // the row max gets weight exactly 1
        for (int v = 0; v + w <= x.Length; v += w)
        {
            var slice = x.AsSpan(v, w).ToArray();
            if (slice.Any(double.IsNaN)) continue;
            Assert.Equal(slice.Max(), max[v / w]);
            Assert.Equal(slice.Sum(), sum[v / w], Math.Abs(slice.Sum()) * 1e-6 + 1e-300);
            Assert.Equal(slice.Any(s => s > -1), any[v / w]);
        }
    }

    [SimdTheory(16)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector512_exp2_and_reductions(bool f32) { if (f32) Check<float>(16); else Check<double>(16); }

    [SimdTheory(8)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector256_exp2_and_reductions(bool f32) { if (f32) Check<float>(8); else Check<double>(8); }

    [SimdTheory(4)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector128_exp2_and_reductions(bool f32) { if (f32) Check<float>(4); else Check<double>(4); }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Scalar_exp2_and_reductions(bool f32) { if (f32) Check<float>(1); else Check<double>(1); }
}
