using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

public class OrthogonalVectorsTests
{
    [Fact]
    public void LargeD_agrees_with_brute_force_on_two_hundred_instances_with_one_call_each()
    {
        int yes = 0, no = 0;
        for (int s = 0; s < 200; s++)
        {
            var (a, b) = ReductionData.OvInstance(7000 + s, plant: s % 2 == 0, maxN: 16, maxD: 10);
            var oracle = ReductionData.Exact();
            var r = OrthogonalVectorsLargeD.Solve(a, b, oracle);
            bool truth = ReductionData.HasOrthogonalPair(a, b);
            Assert.Equal(truth, r.Found);
            Assert.Equal(1, r.OracleCalls);
            Assert.Equal(0, r.FailureProbability);
            if (r.Pair is { } p) Assert.Equal(0, VectorSet.Dot(a[p.I], b[p.J]));
            if (truth) yes++; else no++;
            var inst = r.Instance!;
            Assert.Equal(a.Count + 1, inst.N);
            Assert.Equal(a.Dimension + 1, inst.D);
            Assert.Equal(OrthogonalVectorsLargeD.DefaultOracleEpsilon, inst.Epsilon, 12);
            Assert.Equal(Math.Max(1, Math.Sqrt(-Math.Log(Math.Pow(0.8 / 1.2, 2) / b.Count))), inst.Bound, 12);
        }
        Assert.True(yes >= 60 && no >= 40, $"yes {yes}, no {no}");
    }

    [Fact]
    public void LargeD_scaling_is_ln_k_with_k_from_the_oracle_error()
    {
        // η = 0.1: γ = 0.8/1.2, k = γ²/m; B′ = max(√|ln k|, |ln γ|, 1).
        var (a, b) = ReductionData.OvInstance(11, plant: true);
        var r = OrthogonalVectorsLargeD.Solve(a, b, ReductionData.Exact(), 0.1);
        double gamma = 0.8 / 1.2;
        double expected = Math.Max(1, Math.Sqrt(-Math.Log(gamma * gamma / b.Count)));
        Assert.Equal(expected, r.Instance!.Bound, 12);
    }

    [Fact]
    public void LogTwo_agrees_with_brute_force_on_two_hundred_instances()
    {
        int yes = 0, no = 0;
        for (int s = 0; s < 200; s++)
        {
            var (a, b) = ReductionData.OvInstance(9000 + s, plant: s % 2 == 0, maxN: 12, maxD: 8);
            var oracle = ReductionData.Exact();
            var r = OrthogonalVectorsLogTwo.Solve(a, b, oracle, seed: s, samples: 24);
            bool truth = ReductionData.HasOrthogonalPair(a, b);
            Assert.Equal(truth, r.Found);
            if (r.Pair is { } p) Assert.Equal(0, VectorSet.Dot(a[p.I], b[p.J]));
            if (!truth) Assert.Equal(Math.Pow(2, -24), r.FailureProbability);
            if (truth) yes++; else no++;
        }
        Assert.True(yes >= 60 && no >= 40, $"yes {yes}, no {no}");
    }

    [Fact]
    public void LogTwo_is_reproducible_for_a_seed()
    {
        var (a, b) = ReductionData.OvInstance(123, plant: true);
        var r1 = OrthogonalVectorsLogTwo.Solve(a, b, ReductionData.Exact(), seed: 5);
        var r2 = OrthogonalVectorsLogTwo.Solve(a, b, ReductionData.Exact(), seed: 5);
        Assert.Equal(r1.Pair, r2.Pair);
        Assert.Equal(r1.OracleCalls, r2.OracleCalls);
        Assert.Equal(r1.Samples, r2.Samples);
    }

    [Fact]
    public void LogTwo_even_number_of_orthogonal_partners_is_still_found_by_sampling()
    {
        // a = e1 is orthogonal to both b's: the unsampled row sum 1 + 1 = 2 is even; sampling isolates one.
        var a = new VectorSet([1.0, 0.0], 1, 2, "A");
        var b = new VectorSet([0.0, 1.0, 0.0, 1.0], 2, 2, "B");
        var r = OrthogonalVectorsLogTwo.Solve(a, b, ReductionData.Exact(), seed: 3);
        Assert.True(r.Found);
        Assert.True(r.OracleCalls > 0);
    }

    [Fact]
    public void LogTwo_zero_vector_is_answered_directly()
    {
        var a = new VectorSet([1.0, 1.0, 0.0, 0.0], 2, 2, "A");
        var b = new VectorSet([1.0, 1.0], 1, 2, "B");
        var r = OrthogonalVectorsLogTwo.Solve(a, b, ReductionData.Exact());
        Assert.Equal((1, 0), r.Pair);
        Assert.Equal(0, r.OracleCalls);
    }

    [Fact]
    public void LogTwo_beyond_float64_is_refused_with_the_limits()
    {
        var rng = new Random(3);
        var a = ReductionData.Binary(rng, 4, 60, 1.0, "A");
        var b = ReductionData.Binary(rng, 4, 60, 1.0, "B");
        var e = Assert.Throws<AttentionRefusedException>(() => OrthogonalVectorsLogTwo.Solve(a, b, ReductionData.Exact()));
        Assert.Contains("this instance needs ε = ", e.Message);
        Assert.Contains("which float64 cannot certify", e.Message);
        Assert.Matches(@"use .*n ≤ \d+|d ≤ \d+", e.Message);
    }

    [Fact]
    public void Non_binary_input_is_rejected_with_the_parameter()
    {
        var a = new VectorSet([2.0], 1, 1, "A");
        var b = new VectorSet([1.0], 1, 1, "B");
        Assert.Equal("A", Assert.Throws<ArgumentException>(() => OrthogonalVectorsLargeD.Solve(a, b, ReductionData.Exact())).ParamName);
        Assert.Equal("A", Assert.Throws<ArgumentException>(() => OrthogonalVectorsLogTwo.Solve(a, b, ReductionData.Exact())).ParamName);
        Assert.Equal("oracleEpsilon", Assert.Throws<ArgumentOutOfRangeException>(() => OrthogonalVectorsLargeD.Solve(b, b, ReductionData.Exact(), 0.5)).ParamName);
    }
}
