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
