using System.Runtime.Intrinsics;
using FastAttention.Exact;
using FastAttention.Tests.TestSupport;
using Xunit.Abstractions;

namespace FastAttention.Tests.Exact;

/// <summary>
/// The exact certificate's a-priori rounding bound (<see cref="ExactRoundingBound"/>): never below the error measured
/// against the float64 reference — on random inputs and on the adversarial ones (huge logits, ties, duplicate and
/// collinear keys, zero queries, huge V, one key), in float64, float32 and float16, with masks — and not
/// astronomically loose.
/// </summary>
public class RoundingBoundTests(ITestOutputHelper output)
{
    private const double U32 = 5.9604644775390625e-8, U64 = 1.1102230246251565e-16;

    /// <summary>Named inputs: Q (n×d), K (m×d), V (m×dv) in float64 and the scale.</summary>
    public static IEnumerable<(string Name, int N, int M, int D, double[] Q, double[] K, double[] V, double Scale)> Inputs()
    {
        int n = 48, m = 300, d = 16;
        double[] Uni(int count, double b, int seed) => TestData.Uniform(count, b, seed);
        yield return ("random uniform", n, m, d, Uni(n * d, 1, 1), Uni(m * d, 1, 2), Uni(m * d, 1, 3), 0.25);
        yield return ("random large entries", n, m, d, Uni(n * d, 4, 4), Uni(m * d, 4, 5), Uni(m * d, 1, 6), 0.25);
        // Logits near 1e6 (float32 logit errors ≈ 0.1 in the exponent).
        yield return ("logits near 1e6", n, m, 4, Uni(n * 4, 1000, 7), Uni(m * 4, 1000, 8), Uni(m * 4, 1, 9), 1);
        // Two keys whose logits differ by about their rounding: the output flips between their values.
        var q2 = new double[n * 4]; var k2 = new double[2 * 4]; var v2 = new double[] { -1, 1 };
        for (int i = 0; i < n; i++) { q2[i * 4] = 700 + i; q2[i * 4 + 1] = 300; }
        k2[0] = 1000; k2[1] = 1000; k2[4] = 1000.0001; k2[5] = 999.9;
        yield return ("near tie of two huge logits", n, 2, 4, q2, k2, v2, 1);
        // d = 1, logits ≈ 10⁶ whose differences are O(1): float32 rounds each logit by up to 0.03.
        var qt = new double[n]; for (int i = 0; i < n; i++) qt[i] = 1000 + i / (double)n;
        var kt = new double[m]; var vt = new double[m];
        for (int j = 0; j < m; j++) { kt[j] = 1000 + 0.001 * (j % 3); vt[j] = j % 3 - 1; }
        yield return ("logits near 1e6 differing by O(1)", n, m, 1, qt, kt, vt, 1);
        var tie = new double[m * d]; for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) tie[j * d + c] = 0.5;
        yield return ("all keys identical", n, m, d, Uni(n * d, 3, 10), tie, Uni(m * d, 1, 11), 1);
        var dup = Uni(m * d, 2, 12); for (int j = 1; j < m; j += 2) Array.Copy(dup, (j - 1) * d, dup, j * d, d);
        yield return ("duplicate keys", n, m, d, Uni(n * d, 2, 13), dup, Uni(m * d, 1, 14), 1);
        var line = new double[m * d]; var rng = new Random(15);
        for (int j = 0; j < m; j++) { double t = 2 * rng.NextDouble() - 1; for (int c = 0; c < d; c++) line[j * d + c] = t * (c + 1); }
        yield return ("collinear keys", n, m, d, Uni(n * d, 1, 16), line, Uni(m * d, 1, 17), 1);
        yield return ("zero queries", n, m, d, new double[n * d], Uni(m * d, 1, 18), Uni(m * d, 1, 19), 1);
        yield return ("huge V", n, m, d, Uni(n * d, 1, 20), Uni(m * d, 1, 21), Uni(m * d, 1e30, 22), 1);
        var alt = new double[m * d]; for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) alt[j * d + c] = (j % 2 == 0 ? 1e4 : -1e4) + c;
        yield return ("alternating huge V (cancellation)", n, m, d, Uni(n * d, 0.1, 23), Uni(m * d, 0.1, 24), alt, 1);
        yield return ("one key", 3, 1, d, Uni(3 * d, 5, 25), Uni(d, 5, 26), Uni(d, 5, 27), 1);
        // The small-d path's clamped exp₂ (FusedFloor64/32): one key at the maximum with v = 1, 2999 keys 200 logits below
        // it with v = −10³⁰ — every one of them weighs the clamp's floor instead of ≈ 0, all in the same direction.
        {
            int mf = 3000;
            var qf = new double[n * 2]; var kf = new double[mf * 2]; var vf = new double[mf];
            for (int i = 0; i < n; i++) { qf[i * 2] = 10; qf[i * 2 + 1] = 0.01 * i; }
            kf[0] = 10; vf[0] = 1;
            for (int j = 1; j < mf; j++) { kf[j * 2] = -10; kf[j * 2 + 1] = 0.001 * (j % 7); vf[j] = -1e30; }
            yield return ("far keys clamped, huge V of the other sign", n, mf, 2, qf, kf, vf, 1);
        }
        yield return ("d = 128, peaked", 20, 700, 128, Uni(20 * 128, 1, 28), Uni(700 * 128, 1, 29), Uni(700 * 128, 1, 30), 1);
    }

    private static readonly AttentionMask[] Masks =
    [
        AttentionMask.None,
        new() { Window = 37, CausalAlignment = CausalAlignment.BottomRight },
        new() { Bias = new BroadcastTensor<double>(TestData.Uniform(300, 40, 31)[..1], 1) },
    ];

    [Fact]
    public void The_bound_is_never_below_the_measured_error()
    {
        var alg = new FlashAttention();
        foreach (var (name, n, m, d, q, k, v, scale) in Inputs())
            foreach (var mask in Masks)
            {
                bool causal = mask.Window is not null;
                int dv = v.Length / m;
                var p64 = new AttentionProblem<double>(q, k, v, n, m, d, dv, 1, scale, causal, mask);
                var p32 = new AttentionProblem<float>(TestData.ToFloat(q), TestData.ToFloat(k), TestData.ToFloat(v), n, m, d, dv, 1, scale, causal, mask);
                Check(name + " f64", alg.Compute(p64), ReferenceAttention.Compute(p64));
                Check(name + " f32", alg.Compute(p32), ReferenceAttention.Compute(p32));
                if (v.All(x => Math.Abs(x) < 6e4) && q.All(x => Math.Abs(x) < 6e4) && k.All(x => Math.Abs(x) < 6e4))
                {
                    var p16 = new AttentionProblem<Half>(MaskedData.Convert<Half>(q), MaskedData.Convert<Half>(k), MaskedData.Convert<Half>(v), n, m, d, dv, 1, scale, causal, mask);
                    Check(name + " f16", alg.Compute(p16), ReferenceAttention.Compute(p16));
                }
            }

        void Check<T>(string what, AttentionResult<T> r, double[] reference) where T : unmanaged, System.Numerics.INumberBase<T>
        {
            double err = TestData.MaxAbsDiff<T>(r.Output, reference), bound = r.Certificate.ErrorBound;
            output.WriteLine($"{what,-45} measured {err:E3}  bound {bound:E3}  ratio {bound / err:G3}");
            Assert.True(double.IsFinite(bound) && bound > 0, $"{what}: bound {bound}");
            Assert.True(err <= bound, $"{what}: measured {err:E3} exceeds the certificate {bound:E3}");
        }
    }

    [Fact]
    public void The_bound_is_within_a_few_thousand_times_the_error_on_random_inputs_and_tight_on_huge_logits()
    {
        // Random inputs: the bound is a worst-case one (errors aligned, γ_d growth), measured errors are random walks:
        // today ≈ 10³ at d = 64. Huge logits: the bound is nearly attained.
        var alg = new FlashAttention();
        int n = 256, m = 256, d = 64;
        var p = new AttentionProblem<float>(TestData.ToFloat(TestData.Uniform(n * d, 1, 1)), TestData.ToFloat(TestData.Uniform(m * d, 1, 2)),
            TestData.ToFloat(TestData.Uniform(m * d, 1, 3)), n, m, d, d);
        var r = alg.Compute(p);
        double ratio = r.Certificate.ErrorBound / TestData.MaxAbsDiff<float>(r.Output, ReferenceAttention.Compute(p));
        output.WriteLine($"random f32 d = 64: bound / measured = {ratio:G4}");
        Assert.InRange(ratio, 1, 4000);
        var (_, hn, hm, _, hq, hk, hv, _) = Inputs().First(x => x.Name == "logits near 1e6 differing by O(1)");
        var huge = new AttentionProblem<float>(TestData.ToFloat(hq), TestData.ToFloat(hk), TestData.ToFloat(hv), hn, hm, 1, 1, scale: 1);
        var rh = alg.Compute(huge);
        double ratioHuge = rh.Certificate.ErrorBound / TestData.MaxAbsDiff<float>(rh.Output, ReferenceAttention.Compute(huge));
        output.WriteLine($"logits near 1e6 f32: measured {TestData.MaxAbsDiff<float>(rh.Output, ReferenceAttention.Compute(huge)):E3}, bound / measured = {ratioHuge:G4}");
        Assert.InRange(ratioHuge, 1, 100);
    }

    [SimdTheory(8)]
    [InlineData(20000)]
    public void The_vector256_exp2_is_within_its_stated_relative_error(int samples) =>
        Exp2Errors<Vector256<float>, Simd256F, Vector256<double>, Simd256D>(samples, "Vector256");

    [SimdTheory(4)]
    [InlineData(20000)]
    public void The_vector128_exp2_is_within_its_stated_relative_error(int samples) =>
        Exp2Errors<Vector128<float>, Simd128F, Vector128<double>, Simd128D>(samples, "Vector128");

    [SimdTheory(16)]
    [InlineData(20000)]
    public void The_vector512_exp2_is_within_its_stated_relative_error(int samples) =>
        Exp2Errors<Vector512<float>, Simd512F, Vector512<double>, Simd512D>(samples, "Vector512");

    /// <summary>Against a reference accurate far below the stated error: float via float64 Math.Pow, double via a decimal
    /// Taylor series; and below the smallest normal the kernel flushes to 0, as the bound's flush term assumes.</summary>
    private void Exp2Errors<TVF, TSF, TVD, TSD>(int samples, string width)
        where TVF : unmanaged where TSF : struct, ISimd<float, TVF>
        where TVD : unmanaged where TSD : struct, ISimd<double, TVD>
    {
        double worst32 = 0, worst64 = 0;
        var rng = new Random(5);
        var bufF = new float[16]; var bufD = new double[16]; // a whole vector is stored; lane 0 is read
        for (int t = 0; t < samples; t++)
        {
            double x = t < samples / 2 ? -126.0 * t / (samples / 2) : -(rng.NextDouble() * 126);
            float xf = (float)x;
            TSF.Store(TSF.Exp2(TSF.Broadcast(xf)), ref bufF[0]);
            float got = bufF[0];
            worst32 = Math.Max(worst32, Math.Abs(got - Math.Pow(2, xf)) / Math.Pow(2, xf));
            TSF.Store(TSF.Exp2Clamped(TSF.Broadcast(xf)), ref bufF[0]); // the small-d path's variant (visible logits only)
            worst32 = Math.Max(worst32, Math.Abs(bufF[0] - Math.Pow(2, xf)) / Math.Pow(2, xf));
            TSD.Store(TSD.Exp2(TSD.Broadcast(x)), ref bufD[0]);
            double got64 = bufD[0];
            int e = (int)Math.Round(x);
            decimal mantissa = Exactly(Math.ScaleB(got64, -e)), exact = Exp2Fraction(x - e); // 2ˣ = 2ᵉ·2^(x − e), scaling exact
            worst64 = Math.Max(worst64, (double)Math.Abs((mantissa - exact) / exact));
        }
        output.WriteLine($"{width} exp2 relative error: float {worst32 / U32:G3} u, double {worst64 / U64:G3} u");
        Assert.InRange(worst32, 0, ExactRoundingBound.Exp2Error(f64: false));
        Assert.InRange(worst64, 0, ExactRoundingBound.Exp2Error(f64: true));
        TSF.Store(TSF.Exp2(TSF.Broadcast(-126.5f)), ref bufF[0]);
        Assert.Equal(0f, bufF[0]);
        TSF.Store(TSF.Exp2(TSF.Broadcast(float.NegativeInfinity)), ref bufF[0]);
        Assert.Equal(0f, bufF[0]);
    }

    /// <summary>2^f for |f| ≤ 1/2 to about 27 digits: e^{f·ln 2} by its Taylor series in decimal.</summary>
    private static decimal Exp2Fraction(double f)
    {
        decimal y = Exactly(f) * 0.6931471805599453094172321215m, term = 1, sum = 1;
        for (int k = 1; k < 30; k++) { term = term * y / k; sum += term; }
        return sum;
    }

    /// <summary>A double as decimal to 17 significant digits (the cast keeps only 15).</summary>
    private static decimal Exactly(double x) => decimal.Parse(x.ToString("E16", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The bound's K/V statistics (one vectorised pass, split over threads, cached per K/V head) equal a direct
    /// scalar computation for every SIMD remainder of d and dv, in float32 and float64, with grouped-query heads and key
    /// lengths (padding rows hold values that would change the result if they were read).</summary>
    [Theory]
    [InlineData(1)] [InlineData(3)] [InlineData(7)] [InlineData(8)] [InlineData(9)] [InlineData(31)] [InlineData(32)]
    [InlineData(33)] [InlineData(40)] [InlineData(63)] [InlineData(64)] [InlineData(65)] [InlineData(100)]
    public void Key_statistics_match_a_direct_computation(int width)
    {
        Check<float>(width, 2); Check<float>(width, 1); Check<double>(width, 2);

        static void Check<T>(int d, int threads) where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T>
        {
            int m = 3000, kvHeads = 2, heads = 4, batch = 2, n = 3;
            int[] lengths = [2999, 1234];
            var k = TestData.Uniform(kvHeads * m * d, 3, 40 + d).Select(T.CreateTruncating).ToArray();
            var v = TestData.Uniform(kvHeads * m * d, 5, 80 + d).Select(T.CreateTruncating).ToArray();
            // Padding rows (past each batch's length): extreme values the statistics must not see.
            for (int g = 0; g < kvHeads; g++)
                for (int j = lengths[g]; j < m; j++)
                    for (int c = 0; c < d; c++) { k[(g * m + j) * d + c] = T.CreateTruncating(1e4); v[(g * m + j) * d + c] = T.CreateTruncating(-1e4); }
            var q = TestData.Uniform(heads * n * d, 1, 7).Select(T.CreateTruncating).ToArray();
            var p = new AttentionProblem<T>(q, k, v, n, m, d, d, heads, mask: new AttentionMask { KeyLengths = lengths }, kvHeads: kvHeads, batch: batch);
            for (int h = 0; h < heads; h++)
            {
                var head = p.Head(h);
                var got = ExactRoundingBound.Statistics(head, threads);
                int g = head.KvIndex, len = lengths[g];
                double kn = 0, vMax = 0, half = 0;
                for (int j = 0; j < len; j++)
                {
                    double s2 = 0;
                    for (int c = 0; c < d; c++) { double e = double.CreateTruncating(k[(g * m + j) * d + c]); s2 += e * e; }
                    kn = Math.Max(kn, s2);
                }
                for (int c = 0; c < d; c++)
                {
                    double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
                    for (int j = 0; j < len; j++) { double e = double.CreateTruncating(v[(g * m + j) * d + c]); lo = Math.Min(lo, e); hi = Math.Max(hi, e); }
                    vMax = Math.Max(vMax, Math.Max(-lo, hi)); half = Math.Max(half, 0.5 * (hi - lo));
                }
                Assert.Equal(vMax, got.VMax);
                Assert.Equal(half, got.HalfRange);
                // The norm is rounded up: at least the exact one, and no more than the inflation above it.
                Assert.InRange(got.KNorm, Math.Sqrt(kn) * (1 - 1e-12), Math.Sqrt(kn) * (1 + 1e-12 + 4e-16 * (d + 8)));
            }
        }
    }
}
