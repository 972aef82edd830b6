using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

public class RangeEdgeCaseTests
{
    public static TheoryData<string, int> Algorithms() => new()
    {
        { "vector", 1 }, { "rounding", 1 }, { "range", 1 }, { "range", 2 }, { "range", 3 }, { "lowrank", 3 },
    };

    [Theory]
    [MemberData(nameof(Algorithms))]
    public void Single_key_and_single_query(string name, int d)
    {
        var alg = AttentionAlgorithms.Create(name);
        RangeTestData.Check(alg, RangeTestData.Uniform(1, 1, d, 2, 50, 3, 1), 1e-6);
        RangeTestData.Check(alg, RangeTestData.Uniform(7, 1, d, 1, 50, 4, 1), 1e-6);
        RangeTestData.Check(alg, RangeTestData.Uniform(1, 90, d, 1, 50, 5, 1), 1e-6);
    }

    [Theory]
    [MemberData(nameof(Algorithms))]
    public void All_keys_identical(string name, int d)
    {
        int n = 30, m = 200;
        var k = new double[m * d];
        for (int i = 0; i < k.Length; i++) k[i] = 42.5 - i % d;
        var v = TestData.Uniform(m * 2, 3, 6);
        var p = RangeTestData.Problem(TestData.Uniform(n * d, 100, 7), k, v, n, m, d, 2, 1);
        var r = RangeTestData.Check(AttentionAlgorithms.Create(name), p, 1e-6);
        Assert.True(r <= 1e-6);
    }

    [Theory]
    [InlineData(3, 0, -1, false)] // queries zero in coordinate 0 (the d = 3 strip's queries)
    [InlineData(3, -1, 2, false)] // keys zero in coordinate 2
    [InlineData(4, 1, 3, true)]   // one of each, causal
    [InlineData(3, 0, -1, true, true)] // tied keys (duplicates), causal
    public void Coordinates_zero_in_every_query_or_every_key_are_dropped_exactly(int d, int zeroInQ, int zeroInK, bool causal, bool ties = false)
    {
        // Large entries (logits up to ±3·10⁴): a wrongly dropped coordinate, or a kept one mis-copied, moves the row
        // maxima by far more than ε.
        int n = 300, m = 2500, dv = 2;
        var q = TestData.Uniform(n * d, 100, 21); var k = TestData.Uniform(m * d, 100, 22);
        for (int i = 0; i < n && zeroInQ >= 0; i++) q[i * d + zeroInQ] = i % 2 == 0 ? 0.0 : -0.0;
        for (int j = 0; j < m && zeroInK >= 0; j++) k[j * d + zeroInK] = 0;
        if (ties) for (int j = 0; j < m; j++) if (j % 3 != 0) for (int c = 0; c < d; c++) k[j * d + c] = k[(j - j % 3) * d + c]; // triples of one key
        var v = TestData.Uniform(m * dv, 3, 23);
        var p = new AttentionProblem<double>(q, k, v, n, m, d, dv, 1, 1.0, causal);
        var alg = (RangeSearchFamily)AttentionAlgorithms.Create("range");
        alg.AllowExactPlan = false;
        var r = alg.Compute(p, new AttentionSettings { Epsilon = 1e-5, Threads = 2 });
        Assert.True(TestData.MaxAbsDiff(r.Output, RangeTestData.Reference(p)) <= 1e-5);
        Assert.True(r.Certificate.ErrorBound <= 1e-5);
        int dropped = (zeroInQ >= 0 ? 1 : 0) + (zeroInK >= 0 ? 1 : 0);
        Assert.Equal(d - dropped, RangeTestData.P(r).SearchDimension);
        RangeTestData.Check(AttentionAlgorithms.Create("range"), p, 1e-5);
    }

    [Fact]
    public void Queries_zero_in_every_coordinate_keep_one_and_average_the_values()
    {
        int n = 40, m = 700, d = 3, dv = 2;
        var v = TestData.Uniform(m * dv, 5, 24);
        var p = new AttentionProblem<double>(new double[n * d], TestData.Uniform(m * d, 100, 25), v, n, m, d, dv, 1, 1.0);
        var alg = (RangeSearchFamily)AttentionAlgorithms.Create("range");
        alg.AllowExactPlan = false;
        var r = alg.Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        Assert.Equal(1, RangeTestData.P(r).SearchDimension);
        for (int c = 0; c < dv; c++)
        {
            double mean = 0;
            for (int j = 0; j < m; j++) mean += v[j * dv + c] / m;
            for (int i = 0; i < n; i++) Assert.True(Math.Abs(r.Output[i * dv + c] - mean) <= 1e-6);
        }
    }

    [Fact]
    public void No_coordinate_is_dropped_when_each_is_nonzero_somewhere()
    {
        // Every coordinate is zero in all but one query and all but one key: both must be kept.
        int n = 50, m = 400, d = 3;
        var q = new double[n * d]; var k = new double[m * d];
        for (int c = 0; c < d; c++) { q[(7 + c) * d + c] = 50; k[(100 + c) * d + c] = 50; }
        var (_, _, kept) = RangeEngine.DropZeroCoordinates(q, k, n, m, d);
        Assert.Equal(d, kept);
        var p = new AttentionProblem<double>(q, k, TestData.Uniform(m, 1, 26), n, m, d, 1, 1, 1.0);
        var r = AttentionAlgorithms.Create("range").Compute(p, new AttentionSettings { Epsilon = 1e-6, Threads = 1 });
        Assert.Null(RangeTestData.P(r).SearchDimension);
        Assert.True(TestData.MaxAbsDiff(r.Output, RangeTestData.Reference(p)) <= 1e-6);
    }

    [Fact]
    public void Float32_range_search_in_two_dimensions()
    {
        int n = 120, m = 300, d = 2;
        var q = TestData.ToFloat(TestData.Uniform(n * d, 100, 8));
        var k = TestData.ToFloat(TestData.Uniform(m * d, 100, 9));
        var v = TestData.ToFloat(TestData.Uniform(m, 1, 10));
        var pf = new AttentionProblem<float>(q, k, v, n, m, d, 1, 1, 1.0);
        var result = new RangeSearchAttention().Compute(pf, new AttentionSettings { Epsilon = 1e-4, Threads = 1 });
        var reference = RangeTestData.Reference(new AttentionProblem<double>(TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v), n, m, d, 1, 1, 1.0));
        Assert.True(TestData.MaxAbsDiff(result.Output, reference) <= 1e-4);
        Assert.True(result.Certificate.ErrorBound <= 1e-4);
    }

    [Fact]
    public void Zero_values_give_zero_output_with_a_zero_bound()
    {
        var p = RangeTestData.Problem(TestData.Uniform(20, 10, 1), TestData.Uniform(30, 10, 2), new double[30], 20, 30, 1, 1, 1);
        foreach (var name in new[] { "vector", "rounding", "range" })
        {
            var r = AttentionAlgorithms.Create(name).Compute(p, new AttentionSettings { Epsilon = 1e-6 });
            Assert.All(r.Output, x => Assert.Equal(0.0, x));
            Assert.Equal(0.0, r.Certificate.ErrorBound);
        }
    }
}
