using FastAttention.Gradient;
using FastAttention.Tests.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Gradient;

/// <summary>The backward pass under every mask feature and grouped-query heads, against the float64 reference
/// backward (which applies the same semantics pair by pair), in float64, float32 and float16.</summary>
public class MaskedBackwardTests
{
    private static void AssertClose(ReadOnlySpan<double> reference, ReadOnlySpan<double> actual, double relative, string what)
    {
        double err = TestData.MaxAbsDiff(actual, reference);
        // Relative to the largest gradient; a gradient that is exactly 0 (a row seeing one key) is measured against
        // a floor of 10⁻² of the natural scale |dO|·|V| = 1 of these inputs.
        double scale = Math.Max(GradientTestData.MaxAbs(reference), 1e-2);
        Assert.True(err <= relative * scale, $"{what}: max error {err:E3} > {relative:E1}·{scale:E3}");
    }

    private static double[] D<T>(ReadOnlyMemory<T> x) where T : unmanaged, System.Numerics.INumberBase<T> =>
        Array.ConvertAll(x.ToArray(), v => double.CreateTruncating(v));

    [Theory]
    [MemberData(nameof(MaskedAttentionTests.Features), MemberType = typeof(MaskedAttentionTests))]
    public void Each_feature_matches_the_reference_backward_in_float64_float32_and_float16(string feature)
    {
        foreach (var (n, m) in new[] { (37, 53), (70, 29), (1, 90) })
            foreach (int d in new[] { 3, 16 })
            {
                int dv = d == 3 ? 5 : 16, seed = n * 7 + m + d;
                var (batch, hq, hkv, causal, mask) = MaskedAttentionTests.Case(feature, n, m, seed);
                string at = $"{feature} n={n} m={m} d={d}";
                var dO = TestData.Uniform(batch * hq * n * dv, 1, seed + 3);

                var p64 = MaskedData.Problem<double>(batch, hq, hkv, n, m, d, dv, seed, causal, mask, bound: 1.5);
                var (rq, rk, rv) = BackwardReference.Compute(p64, dO);
                var g64 = AttentionBackward.Compute(p64, dO, threads: 2);
                AssertClose(rq, g64.DQ.Span, 1e-11, $"{at} f64 dQ");
                AssertClose(rk, g64.DK.Span, 1e-11, $"{at} f64 dK");
                AssertClose(rv, g64.DV.Span, 1e-11, $"{at} f64 dV");

                // float32 and float16: the reference on the rounded inputs, so only the kernel's arithmetic is measured.
                var p32 = MaskedData.Problem<float>(batch, hq, hkv, n, m, d, dv, seed, causal, mask, bound: 1.5);
                var dO32 = TestData.ToFloat(dO);
                var (sq, sk, sv) = BackwardReference.Compute(p32, dO32);
                var g32 = AttentionBackward.Compute(p32, dO32, threads: 2);
                AssertClose(sq, D(g32.DQ), 1e-4, $"{at} f32 dQ");
                AssertClose(sk, D(g32.DK), 1e-4, $"{at} f32 dK");
                AssertClose(sv, D(g32.DV), 1e-4, $"{at} f32 dV");

                var p16 = MaskedData.Problem<Half>(batch, hq, hkv, n, m, d, dv, seed, causal, mask, bound: 1.5);
                var dO16 = MaskedData.Convert<Half>(dO);
                var (hq16, hk16, hv16) = BackwardReference.Compute(p16, dO16);
                var g16 = AttentionBackward.Compute(p16, dO16, threads: 2);
                // float32 accumulation, one rounding to float16 (2⁻¹¹ relative) at the end.
                AssertClose(hq16, D(g16.DQ), 1e-3, $"{at} f16 dQ");
                AssertClose(hk16, D(g16.DK), 1e-3, $"{at} f16 dK");
                AssertClose(hv16, D(g16.DV), 1e-3, $"{at} f16 dV");
            }
    }

    [SimdTheory(16)]
    [InlineData(true)]
    public void Vector512_backward_applies_the_mask(bool wide) => AppliesTheMask(16, wide);

    [SimdTheory(8)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector256_backward_applies_the_mask(bool wide) => AppliesTheMask(8, wide);

    [SimdTheory(4)]
    [InlineData(false)]
    public void Vector128_backward_applies_the_mask(bool wide) => AppliesTheMask(4, wide);

    [Theory]
    [InlineData(false)]
    public void Scalar_backward_applies_the_mask(bool wide) => AppliesTheMask(1, wide);

    private static void AppliesTheMask(int lanes, bool wide)
    {
        var (batch, hq, hkv, causal, mask) = MaskedAttentionTests.Case("everything", 45, 140, 1);
        var p = MaskedData.Problem<double>(batch, hq, hkv, 45, 140, 9, 6, 4, causal, mask);
        var dO = TestData.Uniform((int)p.OutputLength, 1, 5);
        var forward = AttentionForward.Compute(p);
        var g = AttentionBackward.ComputeWithLanes(p, dO, forward, threads: 2, lanes, out int bits, wide);
        Assert.Equal(lanes == 1 ? 64 : lanes * 32, bits); // float64 runs half the lanes of the same width
        var (rq, rk, rv) = BackwardReference.Compute(p, dO);
        AssertClose(rq, g.DQ.Span, 1e-11, $"lanes {lanes} wide {wide} dQ");
        AssertClose(rk, g.DK.Span, 1e-11, $"lanes {lanes} wide {wide} dK");
        AssertClose(rv, g.DV.Span, 1e-11, $"lanes {lanes} wide {wide} dV");
    }

    [Fact]
    public void Grouped_query_dk_dv_are_the_sums_over_the_replicated_heads()
    {
        var mask = new AttentionMask { KeyLengths = new[] { 50, 31 }, CausalAlignment = CausalAlignment.BottomRight };
        var gqa = MaskedData.Problem<double>(2, 6, 2, 40, 50, 7, 5, seed: 11, causal: true, mask: mask);
        var mha = MaskedData.Replicated(gqa);
        var dO = TestData.Uniform((int)gqa.OutputLength, 1, 12);
        var a = AttentionBackward.Compute(gqa, dO, threads: 2);
        var b = AttentionBackward.Compute(mha, dO, threads: 2);
        AssertClose(b.DQ.ToArray(), a.DQ.Span, 1e-14, "dQ");
        int group = gqa.GroupSize, m = gqa.M;
        foreach (var (x, y, width) in new[] { (a.DK, b.DK, gqa.D), (a.DV, b.DV, gqa.Dv) })
        {
            var summed = new double[gqa.KvHeads * m * width];
            for (int h = 0; h < gqa.Heads; h++)
                for (int t = 0; t < m * width; t++) summed[h / group * m * width + t] += y.Span[h * m * width + t];
            AssertClose(summed, x.Span, 1e-13, "dK/dV");
        }
        // Keys past a key length get no gradient.
        for (int j = 31; j < 50; j++)
            for (int c = 0; c < gqa.D; c++) Assert.Equal(0.0, a.DK.Span[(2 * 50 + j) * gqa.D + c]);
    }
}
