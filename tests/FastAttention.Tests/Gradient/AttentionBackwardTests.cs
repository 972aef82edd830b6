using FastAttention.Exact;
using FastAttention.Gradient;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Gradient;

public class AttentionBackwardTests
{
    private static double MaxAbs(ReadOnlySpan<double> a) => GradientTestData.MaxAbs(a);

    /// <summary>Central differences of ℓ = ⟨dO, Att(Q, K, V)⟩ with respect to every entry of one input.</summary>
    private static double[] FiniteDifferences(AttentionProblem<double> p, double[] dO, char which, double h)
    {
        var q = p.Q.ToArray(); var k = p.K.ToArray(); var v = p.V.ToArray();
        var target = which switch { 'q' => q, 'k' => k, _ => v };
        var g = new double[target.Length];
        for (int t = 0; t < target.Length; t++)
        {
            double keep = target[t];
            target[t] = keep + h;
            double plus = BackwardReference.Objective(new AttentionProblem<double>(q.ToArray(), k.ToArray(), v.ToArray(), p.N, p.M, p.D, p.Dv, p.Heads, p.Scale, p.Causal), dO);
            target[t] = keep - h;
            double minus = BackwardReference.Objective(new AttentionProblem<double>(q.ToArray(), k.ToArray(), v.ToArray(), p.N, p.M, p.D, p.Dv, p.Heads, p.Scale, p.Causal), dO);
            target[t] = keep;
            g[t] = (plus - minus) / (2 * h);
        }
        return g;
    }

    [Theory]
    [InlineData(5, 7, 3, 2, false, 1)]
    [InlineData(7, 5, 3, 4, true, 2)]
    [InlineData(6, 9, 2, 3, true, 3)]
    public void Reference_and_kernel_match_finite_differences(int n, int m, int d, int dv, bool causal, int seed)
    {
        var p = TestData.Problem(n, m, d, dv, 1.5, seed, causal: causal);
        var dO = TestData.Uniform(n * dv, 1, seed + 10);
        var (rq, rk, rv) = BackwardReference.Compute(p, dO);
        var kernel = AttentionBackward.Compute(p, dO, threads: 2);
        foreach (var (which, reference, fast) in new[] { ('q', rq, kernel.DQ), ('k', rk, kernel.DK), ('v', rv, kernel.DV) })
        {
            var fd = FiniteDifferences(p, dO, which, 1e-5);
            double tol = 1e-7 * Math.Max(1, MaxAbs(fd));
            Assert.True(TestData.MaxAbsDiff(reference, fd) <= tol, $"reference d{which} vs finite differences: {TestData.MaxAbsDiff(reference, fd):E3}");
            Assert.True(TestData.MaxAbsDiff(fast.Span, fd) <= tol, $"kernel d{which} vs finite differences: {TestData.MaxAbsDiff(fast.Span, fd):E3}");
        }
    }

    [Theory]
    [InlineData(37, 70, 5, 3, false, 1, 11)]
    [InlineData(37, 70, 5, 3, true, 1, 12)]
    [InlineData(70, 37, 16, 24, true, 1, 13)]
    [InlineData(64, 130, 8, 8, false, 2, 14)]
    [InlineData(100, 33, 9, 17, true, 2, 15)]
    [InlineData(40, 50, 7, 6, true, 4, 16)]
    public void Float64_kernel_matches_the_reference(int n, int m, int d, int dv, bool causal, int heads, int seed)
    {
        var p = TestData.Problem(n, m, d, dv, 2.0, seed, scale: 0.7, causal: causal, heads: heads);
        var dO = TestData.Uniform(heads * n * dv, 1, seed + 10);
        var (rq, rk, rv) = BackwardReference.Compute(p, dO);
        var g = AttentionBackward.Compute(p, dO, threads: 3);
        AssertClose(rq, g.DQ.Span, 1e-11, "dQ");
        AssertClose(rk, g.DK.Span, 1e-11, "dK");
        AssertClose(rv, g.DV.Span, 1e-11, "dV");
    }

    [Theory]
    [InlineData(50, 140, 16, 16, false, 21)]
    [InlineData(140, 90, 32, 8, true, 22)]
    public void Float32_kernel_matches_the_reference_to_float32_accuracy(int n, int m, int d, int dv, bool causal, int seed)
    {
        var p64 = TestData.Problem(n, m, d, dv, 1.0, seed, causal: causal);
        var p32 = new AttentionProblem<float>(TestData.ToFloat(p64.Q.ToArray()), TestData.ToFloat(p64.K.ToArray()), TestData.ToFloat(p64.V.ToArray()),
            n, m, d, dv, 1, p64.Scale, causal);
        var dO = TestData.Uniform(n * dv, 1, seed + 10);
        var dO32 = TestData.ToFloat(dO);
        // The reference on the float32-rounded inputs, so only the kernel's float32 arithmetic is measured.
        var p64r = new AttentionProblem<double>(TestData.ToDouble(p32.Q.ToArray()), TestData.ToDouble(p32.K.ToArray()), TestData.ToDouble(p32.V.ToArray()),
            n, m, d, dv, 1, p64.Scale, causal);
        var (rq, rk, rv) = BackwardReference.Compute(p64r, TestData.ToDouble(dO32));
        var g = AttentionBackward.Compute(p32, dO32, threads: 2);
        // float32: unit roundoff 6e-8, sums of ≤ 140 terms of dot products of length ≤ 32.
        AssertClose(rq, TestData.ToDouble(g.DQ.ToArray()), 1e-4, "dQ");
        AssertClose(rk, TestData.ToDouble(g.DK.ToArray()), 1e-4, "dK");
        AssertClose(rv, TestData.ToDouble(g.DV.ToArray()), 1e-4, "dV");
    }

    [SimdTheory(16)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector512_backward_handles_every_remainder_length(bool wideBlocks) => WidthSweep(16, wideBlocks);

    [SimdTheory(8)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector256_backward_handles_every_remainder_length(bool wideBlocks) => WidthSweep(8, wideBlocks);

    [SimdTheory(4)]
    [InlineData(true)]
    [InlineData(false)]
    public void Vector128_backward_handles_every_remainder_length(bool wideBlocks) => WidthSweep(4, wideBlocks, every: 3);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Scalar_backward_handles_every_remainder_length(bool wideBlocks) => WidthSweep(1, wideBlocks);

    /// <summary><paramref name="every"/> &gt; 1 runs every that-many-th case of the sweep (the Vector128 rung shares every
    /// line of the width-generic kernel with the others; it is checked on a third of the shapes to keep the suite fast).</summary>
    private static void WidthSweep(int lanes, bool wideBlocks, int every = 1)
    {
        // Key counts sweep every remainder modulo the vector (W) and the key block (4·W) and cross block boundaries;
        // d and dv sweep the remainders modulo W (padded copies of Q and dO); n crosses the 6-row micro-tile and the
        // 96-row query tile; threads 1 and 3 (one worker, and dQ gathered from several); 6×4- and 6×2-vector register blocks.
        int cases = 0;
        for (int m = 1; m <= 140; m += 5)
            for (int dv = 1; dv <= 34; dv += 3)
            {
                int n = 1 + (m * 7 + dv) % 70, d = 1 + (m + 3 * dv) % 33;
                bool causal = (m + dv) % 3 == 0;
                if (cases++ % every != 0) continue;
                CheckWidth(lanes, wideBlocks, n, m, d, dv, causal, threads: (m + dv) % 2 == 0 ? 1 : 3, seed: m * 100 + dv);
            }
        // Shapes with d, dv multiples of W (no column padding), n on and off the 6-row micro-tile, n past the 96-row tile.
        foreach (var (n, m, d, dv) in new[] { (8, 70, 16, 32), (64, 64, 32, 16), (68, 130, 16, 16), (4, 1, 8, 8), (132, 33, 8, 24) })
        {
            CheckWidth(lanes, wideBlocks, n, m, d, dv, causal: false, threads: 2, seed: n + m);
            CheckWidth(lanes, wideBlocks, n, m, d, dv, causal: true, threads: 3, seed: n + m + 1);
            cases += 2;
        }
        Assert.Equal(346, cases);
    }

    private static void CheckWidth(int lanes, bool wideBlocks, int n, int m, int d, int dv, bool causal, int threads, int seed)
    {
        string shape = $"lanes={lanes} wide={wideBlocks} n={n} m={m} d={d} dv={dv} causal={causal} threads={threads}";
        var p = TestData.Problem(n, m, d, dv, 1.0, seed, causal: causal);
        var dO = TestData.Uniform(n * dv, 1, seed + 10);
        var (rq, rk, rv) = BackwardReference.Compute(p, dO);
        var g = AttentionBackward.ComputeWithLanes(p, dO, AttentionForward.Compute(p, threads), threads, lanes, out int bits, wideBlocks);
        Assert.Equal(lanes == 1 ? 64 : lanes * 32, bits); // the width that really ran
        AssertNear(rq, g.DQ.Span, 1e-11, $"f64 dQ {shape}");
        AssertNear(rk, g.DK.Span, 1e-11, $"f64 dK {shape}");
        AssertNear(rv, g.DV.Span, 1e-11, $"f64 dV {shape}");
        var p32 = new AttentionProblem<float>(TestData.ToFloat(p.Q.ToArray()), TestData.ToFloat(p.K.ToArray()), TestData.ToFloat(p.V.ToArray()),
            n, m, d, dv, 1, p.Scale, causal);
        var dO32 = TestData.ToFloat(dO);
        var p64r = new AttentionProblem<double>(TestData.ToDouble(p32.Q.ToArray()), TestData.ToDouble(p32.K.ToArray()), TestData.ToDouble(p32.V.ToArray()),
            n, m, d, dv, 1, p.Scale, causal);
        var (sq, sk, sv) = BackwardReference.Compute(p64r, TestData.ToDouble(dO32));
        var g32 = AttentionBackward.ComputeWithLanes(p32, dO32, AttentionForward.Compute(p32, threads), threads, lanes, out int bits32, wideBlocks);
        Assert.Equal(lanes == 1 ? 32 : lanes * 32, bits32);
        AssertNear(sq, TestData.ToDouble(g32.DQ.ToArray()), 1e-4, $"f32 dQ {shape}");
        AssertNear(sk, TestData.ToDouble(g32.DK.ToArray()), 1e-4, $"f32 dK {shape}");
        AssertNear(sv, TestData.ToDouble(g32.DV.ToArray()), 1e-4, $"f32 dV {shape}");
    }

    /// <summary>Relative to max(1, max |reference|): with m = 1 or a single visible key dQ is exactly 0 and only rounding remains.</summary>
    private static void AssertNear(ReadOnlySpan<double> reference, ReadOnlySpan<double> actual, double relative, string what)
    {
        double err = TestData.MaxAbsDiff(actual, reference), scale = Math.Max(1, MaxAbs(reference));
        Assert.True(err <= relative * scale, $"{what}: max error {err:E3} > {relative:E1}·{scale:E3}");
    }

    [SimdTheory(16)] [InlineData(16, 1, 1, false)] [InlineData(16, 2, 2, true)] [InlineData(16, 4, 3, false)] [InlineData(16, 8, 8, true)]
    public void Narrow_heads_at_16_lanes_match_the_reference_at_large_entries_and_ties(int lanes, int d, int dv, bool causal) =>
        NarrowHeadsMatchTheReference(lanes, d, dv, causal);

    [SimdTheory(8)] [InlineData(8, 4, 4, true)] [InlineData(8, 2, 1, false)] [InlineData(8, 1, 2, true)]
    public void Narrow_heads_at_8_lanes_match_the_reference_at_large_entries_and_ties(int lanes, int d, int dv, bool causal) =>
        NarrowHeadsMatchTheReference(lanes, d, dv, causal);

    private static void NarrowHeadsMatchTheReference(int lanes, int d, int dv, bool causal)
    {
        // The keys-on-lanes path (d, dv ≤ W/2) at large entries (|q|, |k| ≤ 4: logits span ≈ 32·d, most weights tiny,
        // rows dominated by a few keys), duplicate keys (ties: a quarter of the keys are one key) and a huge V,
        // f64 and f32, against the float64 reference; m crosses several key blocks and leaves a partial one.
        int n = 130, m = 333;
        var q = TestData.Uniform(n * d, 4, 70 + d);
        var k = TestData.Uniform(m * d, 4, 80 + d);
        for (int j = 0; j < m; j += 4) Array.Copy(k, 0, k, j * d, d);
        var v = TestData.Uniform(m * dv, 1e4, 90 + dv);
        var dO = TestData.Uniform(n * dv, 1, 95);
        var p = new AttentionProblem<double>(q, k, v, n, m, d, dv, 1, 1.0, causal);
        var (rq, rk, rv) = BackwardReference.Compute(p, dO);
        var g = AttentionBackward.ComputeWithLanes(p, dO, AttentionForward.Compute(p, 2), 2, lanes, out _);
        AssertNear(rq, g.DQ.Span, 1e-10, $"f64 dQ lanes {lanes} d {d} dv {dv}");
        AssertNear(rk, g.DK.Span, 1e-10, $"f64 dK lanes {lanes} d {d} dv {dv}");
        AssertNear(rv, g.DV.Span, 1e-10, $"f64 dV lanes {lanes} d {d} dv {dv}");
        var p32 = new AttentionProblem<float>(TestData.ToFloat(q), TestData.ToFloat(k), TestData.ToFloat(v), n, m, d, dv, 1, 1.0, causal);
        var p64r = new AttentionProblem<double>(TestData.ToDouble(p32.Q.ToArray()), TestData.ToDouble(p32.K.ToArray()), TestData.ToDouble(p32.V.ToArray()), n, m, d, dv, 1, 1.0, causal);
        var dO32 = TestData.ToFloat(dO);
        var (sq, sk, sv) = BackwardReference.Compute(p64r, TestData.ToDouble(dO32));
        var g32 = AttentionBackward.ComputeWithLanes(p32, dO32, AttentionForward.Compute(p32, 2), 2, lanes, out _);
        AssertNear(sq, TestData.ToDouble(g32.DQ.ToArray()), 1e-4, $"f32 dQ lanes {lanes} d {d} dv {dv}");
        AssertNear(sk, TestData.ToDouble(g32.DK.ToArray()), 1e-4, $"f32 dK lanes {lanes} d {d} dv {dv}");
        AssertNear(sv, TestData.ToDouble(g32.DV.ToArray()), 1e-4, $"f32 dV lanes {lanes} d {d} dv {dv}");
    }

    [Theory]
    [InlineData(45, 77, 6, 5, false)]
    [InlineData(45, 77, 6, 5, true)]
    public void Forward_saves_the_output_and_the_log_sum_exp(int n, int m, int d, int dv, bool causal)
    {
        var p = TestData.Problem(n, m, d, dv, 2.0, 31, causal: causal);
        var f = AttentionForward.Compute(p, 2);
        AssertClose(ReferenceAttention.Compute(p), f.Output.Span, 1e-12, "O");
        var q = p.Q.Span; var k = p.K.Span;
        for (int i = 0; i < n; i++)
        {
            int visible = causal ? Math.Min(i + 1, m) : m;
            double sum = 0;
            for (int j = 0; j < visible; j++)
            {
                double dot = 0;
                for (int c = 0; c < d; c++) dot += q[i * d + c] * k[j * d + c];
                sum += Math.Exp(p.Scale * dot);
            }
            Assert.Equal(Math.Log(sum), f.LogSumExp.Span[i], 10);
        }
    }

    [Fact]
    public void Results_do_not_depend_on_scheduling()
    {
        // Workers own fixed key blocks and their dQ partials are added in worker order: repeated runs agree bitwise.
        var p64 = TestData.Problem(150, 300, 20, 12, 1.0, 61, causal: true);
        var p = new AttentionProblem<float>(TestData.ToFloat(p64.Q.ToArray()), TestData.ToFloat(p64.K.ToArray()), TestData.ToFloat(p64.V.ToArray()),
            150, 300, 20, 12, 1, p64.Scale, true);
        var dO = TestData.ToFloat(TestData.Uniform(150 * 12, 1, 62));
        var forward = AttentionForward.Compute(p, 3);
        var first = AttentionBackward.Compute(p, dO, forward, threads: 3);
        for (int run = 0; run < 5; run++)
        {
            var again = AttentionBackward.Compute(p, dO, forward, threads: 3);
            Assert.True(first.DQ.Span.SequenceEqual(again.DQ.Span) && first.DK.Span.SequenceEqual(again.DK.Span) && first.DV.Span.SequenceEqual(again.DV.Span));
        }
    }

    [Fact]
    public void Causal_keys_no_query_sees_get_zero_gradients()
    {
        var p = TestData.Problem(10, 80, 4, 4, 1.0, 41, causal: true);
        var g = AttentionBackward.Compute(p, TestData.Uniform(40, 1, 42), threads: 2);
        for (int t = 10 * 4; t < 80 * 4; t++) { Assert.Equal(0.0, g.DK.Span[t]); Assert.Equal(0.0, g.DV.Span[t]); }
        Assert.Contains(g.DK.ToArray().Take(40), x => x != 0);
    }

    [Fact]
    public void Bad_inputs_name_the_argument()
    {
        var p = TestData.Problem(6, 5, 3, 2, 1.0, 51);
        Assert.Equal("dO", Assert.Throws<ArgumentException>(() => AttentionBackward.Compute(p, new double[11])).ParamName);
        var nan = new double[12]; nan[3] = double.NaN;
        Assert.Equal("dO", Assert.Throws<ArgumentException>(() => AttentionBackward.Compute(p, nan)).ParamName);
        var wrongForward = new AttentionForwardResult<double>(new double[12], new double[5]);
        Assert.Equal("forward", Assert.Throws<ArgumentException>(() => AttentionBackward.Compute(p, new double[12], wrongForward)).ParamName);
        Assert.Equal("threads", Assert.ThrowsAny<ArgumentException>(() => AttentionBackward.Compute(p, new double[12], threads: -2)).ParamName);
    }

    private static void AssertClose(ReadOnlySpan<double> reference, ReadOnlySpan<double> actual, double relative, string what)
    {
        double err = TestData.MaxAbsDiff(actual, reference);
        double scale = Math.Max(MaxAbs(reference), 1e-300);
        Assert.True(err <= relative * scale, $"{what}: max error {err:E3} > {relative:E1}·{scale:E3}");
    }
}
