using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

public class RowSumsViaAttentionTests
{
    private static double LogSumExp(VectorSet q, VectorSet k, int i)
    {
        var l = new double[k.Count];
        for (int j = 0; j < k.Count; j++) l[j] = VectorSet.Dot(q[i], k[j]);
        double max = l.Max();
        return max + Math.Log(l.Sum(x => Math.Exp(x - max)));
    }

    [Fact]
    public void Two_hundred_random_instances_are_within_one_plus_epsilon()
    {
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(1000 + s);
            int n = rng.Next(1, 13), m = rng.Next(1, 13), d = rng.Next(1, 9);
            double bound = new[] { 0.5, 2, 8, 40 }[s % 4];
            double eps = new[] { 0.5, 0.1, 0.01, 1e-4 }[(s / 4) % 4];
            var q = new VectorSet(TestSupport.TestData.Uniform(n * d, bound, 2 * s), n, d, "Q");
            var k = new VectorSet(TestSupport.TestData.Uniform(m * d, bound, 2 * s + 1), m, d, "K");
            var oracle = ReductionData.Exact();
            var r = RowSumsViaAttention.Estimate(q, k, eps, oracle);
            Assert.Equal(r.OracleCalls, oracle.Calls);
            Assert.True(r.OracleCalls <= r.Rounds);
            for (int i = 0; i < n; i++)
            {
                double truth = LogSumExp(q, k, i);
                Assert.True(Math.Abs(r.LogEstimates[i] - truth) <= Math.Log(1 + eps) * (1 + 1e-9),
                    $"instance {s} row {i}: ln Ŝ = {r.LogEstimates[i]}, ln S = {truth}, ε = {eps}");
            }
            if (r.Instance is { } inst)
            {
                Assert.Equal(n + 1, inst.N);
                Assert.Equal(d + 1, inst.D);
            }
        }
    }

    [Fact]
    public void Huge_logits_stay_in_the_log_domain()
    {
        // S = e^{2000}: far beyond float64, still estimated within (1 ± ε) in the log domain.
        var q = new VectorSet([40.0, 10.0], 2, 1, "Q");
        var k = new VectorSet([50.0, -50.0, 3.0], 3, 1, "K");
        var r = RowSumsViaAttention.Estimate(q, k, 0.05, ReductionData.Exact());
        Assert.True(Math.Abs(r.LogEstimates[0] - 2000) <= Math.Log(1.05));
        Assert.True(Math.Abs(r.LogEstimates[1] - (500 + Math.Log(1 + Math.Exp(-1000) + Math.Exp(-470)))) <= Math.Log(1.05));
        Assert.True(double.IsPositiveInfinity(r.Estimates[0]));
    }

    [Fact]
    public void Claim_C2_instance_has_the_row_sum_ratio_as_first_column()
    {
        var q = new[] { 0.3, -0.2, 1.0, 0.5 };
        var k = new[] { 0.1, 0.4, -0.7, 0.2, 0.0, 1.0 };
        var lnC = new[] { 0.25, -1.5 };
        var inst = RowSumsViaAttention.ClaimC2Instance(q, 2, k, 3, 2, lnC);
        var p = new AttentionProblem<double>(inst.Q, inst.K, inst.V, inst.N, inst.M, inst.D, 1, 1, 1.0);
        var o = FastAttention.Exact.ReferenceAttention.Compute(p);
        for (int i = 0; i < 2; i++)
        {
            double s = 0;
            for (int j = 0; j < 3; j++) s += Math.Exp(q[2 * i] * k[2 * j] + q[2 * i + 1] * k[2 * j + 1]);
            Assert.Equal(s / (Math.Exp(lnC[i]) + s), o[i], 14);
        }
    }

    [Fact]
    public void Rejects_bad_epsilon_and_mismatched_dimensions()
    {
        var q = new VectorSet([1.0, 2.0], 1, 2, "Q");
        var k = new VectorSet([1.0], 1, 1, "K");
        Assert.Equal("k", Assert.Throws<ArgumentException>(() => RowSumsViaAttention.Estimate(q, k, 0.1, ReductionData.Exact())).ParamName);
        Assert.Equal("epsilon", Assert.Throws<ArgumentOutOfRangeException>(() => RowSumsViaAttention.Estimate(q, q, 0, ReductionData.Exact())).ParamName);
    }

    [Fact]
    public void Tiny_epsilon_beyond_float64_is_refused_with_the_limit()
    {
        var q = new VectorSet([1.0, 2.0], 1, 2, "Q");
        var e = Assert.Throws<AttentionRefusedException>(() => RowSumsViaAttention.Estimate(q, q, 1e-15, ReductionData.Exact()));
        Assert.Contains("which float64 cannot certify", e.Message);
        Assert.Contains("use smaller entries or a larger ε", e.Message);
    }
}
