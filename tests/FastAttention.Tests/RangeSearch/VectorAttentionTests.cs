using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class VectorAttentionTests
{
    public static TheoryData<double, double, double> Grid()
    {
        var data = new TheoryData<double, double, double>();
        foreach (double b in new[] { 1.0, 10, 100, 1000 })
            foreach (double eps in new[] { 1e-3, 1e-6 })
                foreach (double s in new[] { 1.0, 0.1 })
                    data.Add(b, eps, s);
        return data;
    }

    [Theory]
    [MemberData(nameof(Grid))]
    public void Meets_epsilon_against_the_reference(double bound, double epsilon, double scale)
    {
        var p = RangeTestData.Uniform(200, 300, 1, 2, bound, (int)bound + 7, scale);
        var err = RangeTestData.Check(new VectorAttention(), p, epsilon);
        Assert.True(double.IsFinite(err));
    }

    [Fact]
    public void Float32_inputs_and_outputs_stay_within_epsilon()
    {
        int n = 150, m = 170;
        var q = TestData.ToFloat(TestData.Uniform(n, 100, 3));
        var k = TestData.ToFloat(TestData.Uniform(m, 100, 4));
        var v = TestData.ToFloat(TestData.Uniform(m * 3, 1, 5));
        var pf = new AttentionProblem<float>(q, k, v, n, m, 1, 3, 1, 1.0);
        var result = new VectorAttention().Compute(pf, new AttentionSettings { Epsilon = 1e-5, Threads = 1 });
        var reference = RangeTestData.Reference(new AttentionProblem<double>(TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v), n, m, 1, 3, 1, 1.0));
        Assert.True(TestData.MaxAbsDiff(result.Output, reference) <= 1e-5);
        // With ‖V‖∞ = 100 the float32 output's own rounding (≈ 6e-6) leaves no room for ε = 1e-5: refused, not violated.
        var big = new AttentionProblem<float>(q, k, TestData.ToFloat(TestData.Uniform(m * 3, 100, 5)), n, m, 1, 3, 1, 1.0);
        var e = Assert.Throws<AttentionRefusedException>(() => new VectorAttention().Compute(big, new AttentionSettings { Epsilon = 1e-5 }));
        Assert.Contains("output type", e.Message);
    }

    [Fact]
    public void Duplicate_keys_and_ties_at_the_maximum()
    {
        int n = 120, m = 240;
        var q = TestData.Uniform(n, 100, 1);
        var k = new double[m];
        for (int j = 0; j < m; j++) k[j] = (j % 3) switch { 0 => 100, 1 => -37.5, _ => 99.999 };
        var v = TestData.Uniform(m * 2, 1, 2);
        RangeTestData.Check(new VectorAttention(), RangeTestData.Problem(q, k, v, n, m, 1, 2, 1), 1e-6);
    }

    [Fact]
    public void Zero_query_rows_give_the_uniform_average()
    {
        int n = 40, m = 300;
        var q = TestData.Uniform(n, 50, 3);
        for (int i = 0; i < n; i += 2) q[i] = 0;
        var k = TestData.Uniform(m, 1000, 4);
        var v = TestData.Uniform(m, 5, 5);
        var p = RangeTestData.Problem(q, k, v, n, m, 1, 1, 1);
        RangeTestData.Check(new VectorAttention(), p, 1e-6);
        var r = new VectorAttention().Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        Assert.Equal(v.Average(), r.Output[0], 1e-9);
    }

    [Fact]
    public void Alternating_values_at_large_entries()
    {
        int n = 200, m = 333;
        var p = RangeTestData.Problem(TestData.Uniform(n, 1000, 6), TestData.Uniform(m, 1000, 7), RangeTestData.Alternating(m, 2, 1000), n, m, 1, 2, 1);
        RangeTestData.Check(new VectorAttention(), p, 1e-3);
        RangeTestData.Check(new VectorAttention(), p, 1e-6);
    }

    [Fact]
    public void All_keys_irrelevant_but_one()
    {
        int n = 50, m = 400;
        var q = new double[n];
        for (int i = 0; i < n; i++) q[i] = 10 + i;
        var k = new double[m];
        for (int j = 0; j < m; j++) k[j] = -10 + 0.001 * j;
        k[123] = 10;
        var v = TestData.Uniform(m, 1, 8);
        var p = RangeTestData.Problem(q, k, v, n, m, 1, 1, 1);
        var r = new VectorAttention().Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        for (int i = 0; i < n; i++) Assert.Equal(v[123], r.Output[i], 1e-6);
        RangeTestData.Check(new VectorAttention(), p, 1e-6);
    }

    [Fact]
    public void Several_heads_and_threads_match_the_reference()
    {
        var p = TestData.Problem(300, 257, 1, 2, 100, 9, 1.0, heads: 3);
        var r = new VectorAttention().Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 2 });
        Assert.True(TestData.MaxAbsDiff(r.Output, RangeTestData.Reference(p)) <= 1e-6);
        var single = TestData.Problem(700, 500, 1, 1, 100, 10, 1.0);
        var r1 = new VectorAttention().Compute(single, new AttentionSettings { Epsilon = 1e-6, Threads = 2 });
        Assert.True(TestData.MaxAbsDiff(r1.Output, RangeTestData.Reference(single)) <= 1e-6);
    }

    [Fact]
    public void Certificate_reports_degree_threshold_and_work()
    {
        var p = RangeTestData.Uniform(100, 100, 1, 1, 100, 11, 1);
        var r = new VectorAttention().Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        Assert.True(r.Certificate.ErrorBound is > 0 and <= 1e-6);
        Assert.True(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().Degree!.Value >= 5);
        Assert.True(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().ThresholdT > Math.Log(100 / 1e-6));
        Assert.NotNull(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().NodesVisitedPerQuery);
    }

    [Fact]
    public void Refuses_other_dimensions_causal_and_unreachable_epsilon()
    {
        var alg = new VectorAttention();
        var e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(10, 10, 2, 1, 1, 1), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("d = 1", e.Message);
        e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(10, 10, 1, 1, 1, 1, causal: true), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("causal", e.Message);
        e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(10, 10, 1, 1, 1000, 1), new AttentionSettings { Epsilon = 1e-14 }));
        Assert.Contains("float64", e.Message);
    }
}

public class VectorAttentionExpansionTests
{
    [Theory]
    [InlineData(1.0, 1.0, 1e-6)]
    [InlineData(10.0, 0.3, 1e-6)]
    [InlineData(30.0, 0.05, 1e-3)]
    public void Block_moments_are_used_and_accurate_on_deep_trees(double bound, double scale, double epsilon)
    {
        // m = 4000 keys: a 9-level tree; small |a|·w so most of the relevant mass comes from block expansions.
        var p = RangeTestData.Uniform(60, 4000, 1, 2, bound, 21, scale);
        RangeTestData.Check(new VectorAttention(), p, epsilon);
        var r = new VectorAttention().Compute(p, new AttentionSettings { Epsilon = epsilon, Threads = 1 });
        Assert.True(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().ExpansionsPerQuery!.Value >= 1);
    }
}
