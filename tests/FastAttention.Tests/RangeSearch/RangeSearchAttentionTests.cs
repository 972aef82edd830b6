using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class RangeSearchAttentionTests
{
    public static TheoryData<int, double, double, bool> Grid()
    {
        var data = new TheoryData<int, double, double, bool>();
        foreach (int d in new[] { 1, 2, 3 })
            foreach (double b in new[] { 1.0, 10, 100, 1000 })
                foreach (double eps in new[] { 1e-3, 1e-6 })
                    foreach (bool unitScale in new[] { true, false })
                        data.Add(d, b, eps, unitScale);
        return data;
    }

    [Theory]
    [MemberData(nameof(Grid))]
    public void Meets_epsilon_against_the_reference(int d, double bound, double epsilon, bool unitScale)
    {
        double scale = unitScale ? 1 : 1 / Math.Sqrt(d);
        var p = RangeTestData.Uniform(150, 220, d, 2, bound, d * 1000 + (int)bound, scale);
        RangeTestData.Check(new RangeSearchAttention(), p, epsilon);
    }

    [Theory]
    [InlineData(2, 1.0, 1.0)]
    [InlineData(2, 5.0, 0.2)]
    [InlineData(3, 3.0, 0.3)]
    public void Node_expansions_are_used_and_accurate_on_deep_trees(int d, double bound, double scale)
    {
        var p = RangeTestData.Uniform(40, 5000, d, 2, bound, 31 + d, scale);
        RangeTestData.Check(new RangeSearchAttention(), p, 1e-6);
        var r = new RangeSearchAttention().Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 2 });
        Assert.True(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().ExpansionsPerQuery!.Value >= 1);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Keys_on_a_diagonal_line_duplicates_and_ties(int d)
    {
        int n = 120, m = 300;
        var q = TestData.Uniform(n * d, 100, 40 + d);
        // Every other query orthogonal to the line (all keys tie at the maximum), and zero queries (uniform attention).
        for (int i = 0; i < n; i += 4) { for (int c = 0; c < d; c++) q[i * d + c] = 0; q[i * d] = 7; q[i * d + 1] = -7; }
        for (int i = 2; i < n; i += 4) for (int c = 0; c < d; c++) q[i * d + c] = 0;
        var k = RangeTestData.LineKeys(m, d, 100, 50 + d);
        for (int j = 0; j < 30; j++) Array.Copy(k, 0, k, (j + 1) * d, d); // duplicate keys
        var p = RangeTestData.Problem(q, k, RangeTestData.Alternating(m, 2, 100), n, m, d, 2, 1);
        RangeTestData.Check(new RangeSearchAttention(), p, 1e-6);
    }

    [Theory]
    [InlineData(2, 100.0, 1e-6)]
    [InlineData(3, 100.0, 1e-4)]
    [InlineData(2, 1000.0, 1e-6)]
    public void Diagonal_keys_with_orthogonal_queries_use_oriented_nodes(int d, double bound, double epsilon)
    {
        // The kd-tree's worst case: every key ties, every axis-aligned box straddles the boundary. Principal-axis
        // frames make the thin nodes' expansions well conditioned, so far fewer keys are summed directly.
        int n = 40, m = 4000;
        var q = TestData.Uniform(n * d, bound, 80 + d);
        for (int i = 0; i < n; i++)
        {
            double mean = 0;
            for (int c = 0; c < d; c++) mean += q[i * d + c] / d;
            // Half the queries keep a small component along the line, so the oriented expansions see logits that
            // vary across the node (|a·(k − κ)| up to ≈ 1.5), not only ties.
            double along = i % 2 == 0 ? 0 : (2.0 * ((i * 37) % 17) / 16 - 1) * 1.5 / (d * bound);
            for (int c = 0; c < d; c++) q[i * d + c] += along - mean;
        }
        var k = RangeTestData.LineKeys(m, d, bound, 90 + d);
        var p = RangeTestData.Problem(q, k, TestData.Uniform(m * 2, 1, 91), n, m, d, 2, 1);
        RangeTestData.Check(new RangeSearchAttention(), p, epsilon);
        var r = new RangeSearchAttention().Compute(p, new AttentionSettings { Epsilon = epsilon, Threads = 1 });
        Assert.True(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().OrientedNodes!.Value > 0);
        if (bound <= 100) Assert.True(r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>().DirectKeysPerQuery!.Value < m / 4.0);
    }

    [Fact]
    public void All_keys_irrelevant_but_one_in_two_dimensions()
    {
        int n = 60, m = 400, d = 2;
        var q = new double[n * d];
        for (int i = 0; i < n; i++) { q[i * d] = 5 + i; q[i * d + 1] = 5 + 0.5 * i; }
        var k = TestData.Uniform(m * d, 10, 60);
        k[77 * d] = 100; k[77 * d + 1] = 100;
        var v = TestData.Uniform(m, 1, 61);
        var p = RangeTestData.Problem(q, k, v, n, m, d, 1, 1);
        var r = new RangeSearchAttention().Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        for (int i = 0; i < n; i++) Assert.Equal(v[77], r.Output[i], 1e-6);
        RangeTestData.Check(new RangeSearchAttention(), p, 1e-6);
    }

    [Fact]
    public void Clustered_keys_and_several_heads_with_threads()
    {
        var p = TestData.Problem(200, 260, 2, 3, 100, 70, 1.0, heads: 2);
        var r = new RangeSearchAttention().Compute(p, new AttentionSettings { Epsilon = 1e-4, Threads = 2 });
        Assert.True(TestData.MaxAbsDiff(r.Output, RangeTestData.Reference(p)) <= 1e-4);
        int m = 500, d = 3;
        var k = new double[m * d];
        var rng = new Random(71);
        for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) k[j * d + c] = (j % 4) * 20 - 30 + 0.01 * rng.NextDouble();
        RangeTestData.Check(new RangeSearchAttention(), RangeTestData.Problem(TestData.Uniform(100 * d, 10, 72), k, TestData.Uniform(m, 1, 73), 100, m, d, 1, 1), 1e-6);
    }

    [Theory]
    [InlineData(1.0, 0.5, 1e-6)]
    [InlineData(30.0, 1.0, 1e-4)]
    public void Four_dimensions_the_documented_limit(double bound, double scale, double epsilon)
    {
        var p = RangeTestData.Uniform(80, 700, 4, 2, bound, 95, scale);
        RangeTestData.Check(new RangeSearchAttention(), p, epsilon);
    }

    [Fact]
    public void Refuses_high_dimension_and_causal()
    {
        var alg = new RangeSearchAttention();
        var e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(10, 10, 5, 1, 1, 1), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("d ≤ 4", e.Message);
        e = Assert.Throws<AttentionRefusedException>(() => alg.Compute(TestData.Problem(10, 10, 2, 1, 1, 1, causal: true), new AttentionSettings { Epsilon = 1e-3 }));
        Assert.Contains("causal", e.Message);
    }
}
