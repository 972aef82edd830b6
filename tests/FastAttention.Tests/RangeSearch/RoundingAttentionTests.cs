using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class RoundingAttentionTests
{
    [Theory]
    [MemberData(nameof(VectorAttentionTests.Grid), MemberType = typeof(VectorAttentionTests))]
    public void Meets_epsilon_against_the_reference(double bound, double epsilon, double scale)
    {
        var p = RangeTestData.Uniform(200, 300, 1, 2, bound, (int)bound + 17, scale);
        RangeTestData.Check(new RoundingAttention(), p, epsilon);
    }

    [Fact]
    public void Adversarial_inputs_duplicates_ties_zero_queries_alternating_values()
    {
        int n = 100, m = 240;
        var q = TestData.Uniform(n, 100, 1);
        for (int i = 0; i < n; i += 3) q[i] = 0;
        var k = new double[m];
        for (int j = 0; j < m; j++) k[j] = (j % 3) switch { 0 => 100, 1 => -37.5, _ => 99.999 };
        RangeTestData.Check(new RoundingAttention(), RangeTestData.Problem(q, k, RangeTestData.Alternating(m, 2, 100), n, m, 1, 2, 1), 1e-6);
        var k2 = new double[m];
        for (int j = 0; j < m; j++) k2[j] = -10 + 0.001 * j;
        k2[17] = 50;
        var q2 = new double[n];
        for (int i = 0; i < n; i++) q2[i] = 1 + i;
        var v = TestData.Uniform(m, 1, 2);
        var r = new RoundingAttention().Compute(RangeTestData.Problem(q2, k2, v, n, m, 1, 1, 1), new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        for (int i = 0; i < n; i++) Assert.Equal(v[17], r.Output[i], 1e-6);
    }

    [Fact]
    public void Groups_keys_into_buckets_when_epsilon_is_coarse()
    {
        // 4000 keys in [−1, 1], s = 0.01: logits span ≤ 0.02, bucket width log(1 + ε′) ≈ 1e-4 ⇒ far fewer buckets than keys.
        var p = RangeTestData.Uniform(50, 4000, 1, 1, 1, 5, 0.01);
        RangeTestData.Check(new RoundingAttention(), p, 1e-3);
        var r = new RoundingAttention().Compute(p, new AttentionSettings { Epsilon = 1e-3, Threads = 2 });
        Assert.True(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().BucketsPerQuery!.Value < r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().RelevantKeysPerQuery!.Value / 2);
    }

    [Fact]
    public void Refuses_other_dimensions_and_causal()
    {
        var alg = new RoundingAttention();
        var e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(10, 10, 3, 1, 1, 1), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("d = 1", e.Message);
        e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(10, 10, 1, 1, 1, 1, causal: true), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("causal", e.Message);
    }
}
