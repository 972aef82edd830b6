using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class LowRankAttentionTests
{
    /// <summary>rows×d matrix of rank r: (rows×r coefficients) · (r×d random basis), scaled to entries ≤ bound.</summary>
    private static double[] LowRank(int rows, int d, int r, double bound, int seed, double[]? basis = null)
    {
        basis ??= TestData.Uniform(r * d, 1, seed + 100);
        var coef = TestData.Uniform(rows * r, 1, seed);
        var a = new double[rows * d];
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < d; c++)
            {
                double x = 0;
                for (int t = 0; t < r; t++) x += coef[i * r + t] * basis[t * d + c];
                a[i * d + c] = x;
            }
        double mx = a.Max(Math.Abs);
        for (int i = 0; i < a.Length; i++) a[i] *= bound / mx;
        return a;
    }

    [Theory]
    [InlineData(1, 16, 10.0, 1e-6)]
    [InlineData(2, 16, 10.0, 1e-3)]
    [InlineData(3, 16, 3.0, 1e-6)]
    [InlineData(2, 64, 10.0, 1e-6)]
    [InlineData(3, 64, 5.0, 1e-3)]
    public void Rank_r_inputs_embedded_in_d_dimensions(int r, int d, double bound, double epsilon)
    {
        int n = 150, m = 180;
        var basis = TestData.Uniform(r * d, 1, 7 * r + d);
        var q = LowRank(n, d, r, bound, 1, basis);
        var k = LowRank(m, d, r, bound, 2, basis);
        var p = RangeTestData.Problem(q, k, TestData.Uniform(m * 2, 1, 3), n, m, d, 2, 1 / Math.Sqrt(d));
        RangeTestData.Check(new LowRankAttention(), p, epsilon);
        var res = new LowRankAttention().Compute(p, new AttentionSettings { Epsilon = epsilon, Threads = 1 });
        Assert.Equal(r, res.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().Rank!.Value);
    }

    [Fact]
    public void Uses_the_lower_rank_side_when_only_K_is_low_rank()
    {
        int n = 120, m = 150, d = 16;
        var q = TestData.Uniform(n * d, 3, 4);                   // full rank
        var k = LowRank(m, d, 2, 3, 5);
        var p = RangeTestData.Problem(q, k, RangeTestData.Alternating(m, 1, 2), n, m, d, 1, 1);
        RangeTestData.Check(new LowRankAttention(), p, 1e-6);
        var res = new LowRankAttention().Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        Assert.Equal("K", res.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().Projected);
        Assert.Equal(2, res.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().Rank!.Value);
    }

    [Fact]
    public void Nearly_low_rank_inputs_charge_the_truncation_to_the_budget()
    {
        int n = 100, m = 100, d = 16;
        var basis = TestData.Uniform(2 * d, 1, 9);
        var q = LowRank(n, d, 2, 5, 10, basis);
        var noise = TestData.Uniform(n * d, 1e-9, 11);
        for (int i = 0; i < q.Length; i++) q[i] += noise[i];
        var k = LowRank(m, d, 2, 5, 12, basis);
        var p = RangeTestData.Problem(q, k, TestData.Uniform(m, 1, 13), n, m, d, 1, 1);
        RangeTestData.Check(new LowRankAttention(), p, 1e-4);
        var res = new LowRankAttention().Compute(p, new AttentionSettings { Epsilon = 1e-4, Threads = 1 });
        Assert.True(res.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().TruncationError!.Value > 0);
    }

    [Fact]
    public void Refuses_full_rank_and_causal()
    {
        var alg = new LowRankAttention();
        var e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(40, 40, 16, 1, 1, 1), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("rank", e.Message);
        e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(40, 40, 16, 1, 1, 1, causal: true), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("causal", e.Message);
    }

    /// <summary>The sampled rank screen is a true lower bound of the full numerical rank (never refuses a head the full
    /// computation would accept) on exact low-rank, low-rank + noise at and around the tolerance, and full-rank data;
    /// and it does refuse full-rank heads (the fast path exists).</summary>
    [Theory]
    [InlineData(1, 16, 0.0)] [InlineData(3, 16, 1e-9)] [InlineData(2, 64, 1e-6)] [InlineData(4, 64, 1e-4)]
    [InlineData(5, 32, 0.0)] [InlineData(16, 16, 0.0)] [InlineData(64, 64, 0.0)]
    public void Sampled_rank_screen_is_a_lower_bound(int r, int d, double noise)
    {
        int n = 2000, m = 1500;
        var basis = TestData.Uniform(r * d, 1, 11 * r + d);
        var q = LowRank(n, d, r, 3, 5, basis);
        var k = LowRank(m, d, r, 3, 6, basis);
        var nq = TestData.Uniform(n * d, noise, 7); var nk = TestData.Uniform(m * d, noise, 8);
        for (int i = 0; i < q.Length; i++) q[i] += nq[i];
        for (int i = 0; i < k.Length; i++) k[i] += nk[i];
        var v = TestData.Uniform(m * 2, 1, 9);
        var p = RangeTestData.Problem(q, k, v, n, m, d, 2, 1 / Math.Sqrt(d));
        foreach (double eps in new[] { 1e-2, 1e-4, 1e-7 })
        {
            var (lq, lk) = LowRankAttention.RankLowerBoundFromSample(p.Head(0), eps, v.Max(Math.Abs));
            var (rq, rk) = LowRankAttention.NumericalRanks(q, n, k, m, d, 1 / Math.Sqrt(d), eps, v.Max(Math.Abs));
            Assert.InRange(lq, 0, rq);
            Assert.InRange(lk, 0, rk);
            if (r == d && noise == 0) Assert.Equal(d, Math.Min(lq, lk)); // full rank is seen from the sample
        }
    }
}
