using CsCheck;
using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Exact;

public class FlashAttentionTests
{
    private static readonly int[] Sizes = [1, 2, 7, 63, 64, 65, 1000];
    private const double U32 = 5.96e-8; // 2⁻²⁴

    public static TheoryData<int, int> SizePairs()
    {
        var data = new TheoryData<int, int>();
        foreach (int n in Sizes) foreach (int m in Sizes) data.Add(n, m);
        return data;
    }

    /// <summary>float32 tolerance from the precision: logit rounding (∝ max |logit|) plus √m-scaled accumulation.</summary>
    internal static double Float32Tolerance(double maxAbsLogit, int m, double vMax) => vMax * U32 * (32 + 4 * maxAbsLogit + 8 * Math.Sqrt(m));

    [Theory]
    [MemberData(nameof(SizePairs))]
    public void Matches_the_reference_across_shapes_causal_and_precisions(int n, int m)
    {
        foreach (int d in new[] { 1, 3, 8, 64, 128 })
        {
            int dv = (n + m + d) % 2 == 0 ? d : d + 3; // both d_v = d (direct V) and d_v ≠ d (padded V)
            foreach (bool causal in new[] { false, true })
            {
                var p = TestData.Problem(n, m, d, dv, 1.0, seed: n * 7919 + m * 31 + d, causal: causal);
                var reference = ReferenceAttention.Compute(p);
                var o64 = new FlashAttention().Compute(p, new AttentionSettings { Threads = 2 }).Output;
                double e64 = TestData.MaxAbsDiff(o64, reference);
                Assert.True(e64 <= 1e-12 * p.VMax, $"f64 n={n} m={m} d={d} dv={dv} causal={causal}: error {e64:E3}");

                var p32 = new AttentionProblem<float>(TestData.ToFloat(p.Q.ToArray()), TestData.ToFloat(p.K.ToArray()), TestData.ToFloat(p.V.ToArray()), n, m, d, dv, 1, null, causal);
                var ref32 = ReferenceAttention.Compute(p32); // reference on the float32-rounded inputs
                var o32 = new FlashAttention().Compute(p32, new AttentionSettings { Threads = 2 }).Output;
                double e32 = TestData.MaxAbsDiff(o32, ref32);
                double tol = Float32Tolerance(p.Scale * d, m, p32.VMax);
                Assert.True(e32 <= tol, $"f32 n={n} m={m} d={d} dv={dv} causal={causal}: error {e32:E3} > {tol:E3}");
            }
        }
    }

    [Theory]
    [InlineData(16, false)]
    [InlineData(16, true)]
    [InlineData(8, false)]
    [InlineData(8, true)]
    [InlineData(1, false)]
    public void Every_simd_width_handles_every_remainder_length(int lanes, bool narrow)
    {
        // Key counts and value widths sweep every remainder modulo the key block, the register block (4·W or 2·W)
        // and the vector (W), with both register blockings (4×4, and 4×2 for 16-register CPUs).
        var alg = new FlashAttention { ForcedFloat32Lanes = lanes, ForcedNarrowBlocks = narrow };
        for (int m = 1; m <= 70; m += 3)
            for (int dv = 1; dv <= 35; dv += 2)
            {
                int n = 1 + (m * 5 + dv) % 11, d = 1 + (m + dv) % 9;
                bool causal = (m + dv) % 3 == 0;
                var p = TestData.Problem(n, m, d, dv, 1.5, seed: m * 100 + dv, causal: causal);
                var reference = ReferenceAttention.Compute(p);
                double e = TestData.MaxAbsDiff(alg.Compute(p, new AttentionSettings { Threads = 1 }).Output, reference);
                Assert.True(e <= 1e-12 * p.VMax, $"lanes={lanes} narrow={narrow} n={n} m={m} d={d} dv={dv} causal={causal}: f64 error {e:E3}");
                var p32 = new AttentionProblem<float>(TestData.ToFloat(p.Q.ToArray()), TestData.ToFloat(p.K.ToArray()), TestData.ToFloat(p.V.ToArray()), n, m, d, dv, 1, null, causal);
                double e32 = TestData.MaxAbsDiff(alg.Compute(p32, new AttentionSettings { Threads = 1 }).Output, ReferenceAttention.Compute(p32));
                Assert.True(e32 <= Float32Tolerance(1.5 * 1.5 * d, m, p32.VMax), $"lanes={lanes} n={n} m={m} d={d} dv={dv}: f32 error {e32:E3}");
            }
        // Key counts straddling key-block boundaries, for both block sizes (d ≤ 16: 32 vectors; d > 16: 8 vectors).
        foreach (int d in new[] { 2, 20 })
            foreach (int m in new[] { 127, 128, 129, 255, 256, 257, 511, 512, 513, 1025 })
                foreach (int dv in new[] { 1, 7, 16, 17, 33 })
                {
                    int n = 1 + (m + dv) % 9;
                    bool causal = (m + dv + d) % 2 == 0;
                    var p = TestData.Problem(n + (causal ? m : 0), m, d, dv, 1.0, seed: m * 7 + dv + d, causal: causal);
                    double e = TestData.MaxAbsDiff(alg.Compute(p, new AttentionSettings { Threads = 2 }).Output, ReferenceAttention.Compute(p));
                    Assert.True(e <= 1e-12 * p.VMax, $"lanes={lanes} narrow={narrow} n={p.N} m={m} d={d} dv={dv} causal={causal}: f64 error {e:E3}");
                }
    }

    [Theory]
    [InlineData(1e4)]
    [InlineData(1e6)]
    [InlineData(1e12)]
    public void Extreme_logits_give_the_near_one_hot_result_without_nan(double logit)
    {
        // Keys at logits L, L − 1, −L and a far key; the exact answer weights the first two e : 1.
        double a = Math.Sqrt(logit);
        double[] q = [a, 0], k = [a, 0, a - 1 / a, 0, -a, 0, 0, a], v = [1, 2, 3, 4];
        var p = new AttentionProblem<double>(q, k, v, 1, 4, 2, 1, scale: 1);
        var reference = ReferenceAttention.Compute(p);
        var o = new FlashAttention().Compute(p).Output;
        Assert.All(o, x => Assert.True(double.IsFinite(x)));
        Assert.True(Math.Abs(o[0] - reference[0]) <= 1e-12 * 4 * Math.Max(1, logit * 1e-4), $"{o[0]} vs {reference[0]}");
        Assert.InRange(reference[0], 1.26, 1.27); // (1·e + 2·1)/(e + 1)
        var p32 = new AttentionProblem<float>(TestData.ToFloat(q), TestData.ToFloat(k), TestData.ToFloat(v), 1, 4, 2, 1, scale: 1);
        var o32 = new FlashAttention().Compute(p32).Output;
        Assert.True(float.IsFinite(o32[0]));
        Assert.True(Math.Abs(o32[0] - ReferenceAttention.Compute(p32)[0]) <= 4 * U32 * (32 + 4 * logit), $"f32 {o32[0]}");
    }

    [Fact]
    public void Float32_logits_beyond_the_type_range_fall_back_to_float64()
    {
        // s·q·k = 1e40 overflows float32; the row must still be the one-hot answer.
        float[] q = [1e20f], k = [1e20f, -1e20f], v = [5, 7];
        var p = new AttentionProblem<float>(q, k, v, 1, 2, 1, 1, scale: 1);
        var o = new FlashAttention().Compute(p).Output;
        Assert.Equal(5f, o[0]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Log_sum_exp_matches_the_reference_per_row(bool causal)
    {
        var p = TestData.Problem(45, 131, 7, 5, 3, seed: 21, causal: causal, heads: 2);
        var (output, lse) = new FlashAttention().ComputeWithLogSumExp(p, threads: 2);
        Assert.True(TestData.MaxAbsDiff(output, ReferenceAttention.Compute(p)) <= 1e-12 * p.VMax);
        var row = new double[p.Dv];
        for (int h = 0; h < 2; h++)
        {
            var (q, k, v) = p.Head(h).ToDouble();
            for (int i = 0; i < p.N; i++)
            {
                double expected = ReferenceAttention.Row(q, k, v, p.M, p.D, p.Dv, p.Scale, causal, i, row);
                Assert.True(Math.Abs(lse[h * p.N + i] - expected) <= 1e-12 * (1 + Math.Abs(expected)), $"head {h} row {i}: {lse[h * p.N + i]} vs {expected}");
            }
        }
    }

    [Fact]
    public void Multi_head_and_batched_inputs_run_head_by_head()
    {
        var p = TestData.Problem(37, 29, 8, 6, 1, seed: 3, heads: 6);
        var reference = ReferenceAttention.Compute(p);
        var o = new FlashAttention().Compute(p, new AttentionSettings { Threads = 2 }).Output;
        Assert.True(TestData.MaxAbsDiff(o, reference) <= 1e-12);
    }

    [Fact]
    public void Ties_duplicate_keys_and_zero_queries_match_the_reference()
    {
        int n = 9, m = 70, d = 4;
        var q = TestData.Uniform(n * d, 3, 1);
        Array.Clear(q, 0, d); // query 0 is zero: uniform attention
        var k = new double[m * d];
        for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) k[j * d + c] = j % 3 == 0 ? 2.0 : -1.0 + c; // duplicates, ties
        var v = TestData.Uniform(m * 3, 1, 2);
        var p = new AttentionProblem<double>(q, k, v, n, m, d, 3, scale: 1);
        Assert.True(TestData.MaxAbsDiff(new FlashAttention().Compute(p).Output, ReferenceAttention.Compute(p)) <= 1e-12);
    }

    [Fact]
    public void Property_random_shapes_and_values_match_the_reference()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Int[1, 40], Gen.Int[1, 20], Gen.Int[1, 20], Gen.Double[0.01, 4], Gen.Bool, Gen.Int)
            .Sample((n, m, d, dv, bound, causal, seed) =>
            {
                var p = TestData.Problem(n, m, d, dv, bound, seed, scale: 1.0 / d, causal: causal);
                double e = TestData.MaxAbsDiff(new FlashAttention().Compute(p, new AttentionSettings { Threads = 1 }).Output, ReferenceAttention.Compute(p));
                return e <= 1e-12 * Math.Max(p.VMax, 1e-300);
            }, iter: 300);
    }
}
