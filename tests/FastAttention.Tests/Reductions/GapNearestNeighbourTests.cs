using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

public class GapNearestNeighbourTests
{
    private static int[] MinDistances(VectorSet a, VectorSet b) =>
        Enumerable.Range(0, a.Count).Select(i => Enumerable.Range(0, b.Count).Min(j => VectorSet.Hamming(a[i], b[j]))).ToArray();

    /// <summary>A random instance with a planted close pair (b_j = a_i with a few flips) or none.</summary>
    private static (VectorSet A, VectorSet B) Instance(int seed, bool plant)
    {
        var rng = new Random(seed);
        int n = rng.Next(1, 11), m = rng.Next(1, 11), d = rng.Next(2, 11);
        var a = ReductionData.Binary(rng, n, d, 0.5, "A");
        var b = ReductionData.Binary(rng, m, d, 0.5, "B");
        if (plant)
        {
            int i = rng.Next(n), j = rng.Next(m), flips = rng.Next(0, 2);
            for (int l = 0; l < d; l++) b.Data[j * d + l] = a.Data[i * d + l];
            for (int f = 0; f < flips; f++) { int l = rng.Next(d); b.Data[j * d + l] = 1 - b.Data[j * d + l]; }
        }
        return (a, b);
    }

    [Theory]
    [InlineData(0.9)]                       // the default: brute force for small Hamming balls
    [InlineData(double.NegativeInfinity)]   // attention for every t, including t = 0
    public void Gap_decisions_are_certified_on_two_hundred_instances(double bruteExponent)
    {
        int decided = 0;
        for (int s = 0; s < 200; s++)
        {
            var (a, b) = Instance(3000 + s, s % 2 == 0);
            var min = MinDistances(a, b);
            double eps = new[] { 0.25, 0.5, 1.0 }[s % 3];
            var gap = new GapNearestNeighbour(a, b, ReductionData.Exact()) { BruteForceExponent = bruteExponent };
            for (int t = 0; t < a.Dimension; t++)
            {
                var rows = gap.Gap(t, eps);
                for (int i = 0; i < a.Count; i++)
                {
                    if (min[i] <= t) Assert.True(rows[i], $"instance {s}, t={t}, row {i}: min distance {min[i]} ≤ t but answered no");
                    if (min[i] > (1 + eps) * t) Assert.False(rows[i], $"instance {s}, t={t}, row {i}: min distance {min[i]} > (1+ε)t but answered yes");
                    decided++;
                }
            }
            if (double.IsNegativeInfinity(bruteExponent)) Assert.Equal(0, gap.BruteForceCalls);
        }
        Assert.True(decided > 1000);
    }

    [Fact]
    public void Ann_pair_is_within_one_plus_epsilon_of_the_nearest_on_two_hundred_instances()
    {
        int viaAttention = 0;
        for (int s = 0; s < 200; s++)
        {
            var (a, b) = Instance(4000 + s, s % 2 == 0);
            int best = MinDistances(a, b).Min();
            double eps = new[] { 0.1, 0.5, 1.0, 2.0 }[s % 4];
            var oracle = ReductionData.Exact();
            var r = new GapNearestNeighbour(a, b, oracle).Solve(eps);
            Assert.Equal(VectorSet.Hamming(a[r.I], b[r.J]), r.Distance);
            Assert.True(r.Distance <= (1 + eps) * best, $"instance {s}: distance {r.Distance} > (1+{eps})·{best}");
            Assert.True(r.LowerBound <= best, $"instance {s}: certified lower bound {r.LowerBound} > true minimum {best}");
            Assert.True(r.GapCalls <= (int)Math.Ceiling(Math.Log2(a.Dimension + 1)) + 1);
            Assert.Equal(oracle.Calls, r.OracleCalls);
            viaAttention += r.OracleCalls;
            if (r.Instance is { } inst)
            {
                Assert.Equal(a.Count + b.Count, inst.N);
                Assert.Equal(4 * a.Dimension, inst.D);
            }
        }
        Assert.True(viaAttention > 100);
    }

    [Fact]
    public void Large_dimension_is_refused_with_the_float64_limit()
    {
        var rng = new Random(1);
        var a = ReductionData.Binary(rng, 4, 400, 0.5, "A");
        var b = ReductionData.Binary(rng, 4, 400, 0.5, "B");
        var gap = new GapNearestNeighbour(a, b, ReductionData.Exact()) { BruteForceExponent = double.NegativeInfinity };
        var e = Assert.Throws<AttentionRefusedException>(() => gap.Gap(1, 0.1));
        Assert.Contains("which float64 cannot certify", e.Message);
        Assert.Matches(@"use d ≤ \d+ at n = 4", e.Message);
    }

    [Fact]
    public void Floor_times_is_exact_at_integer_boundaries()
    {
        // The double 0.3 is 0.29999999999999998889…, so ⌊0.3·10⌋ = 2 exactly, while the rounded product 0.3·10 is 3.0.
        Assert.Equal(3.0, 0.3 * 10);
        Assert.Equal(2, GapNearestNeighbour.FloorTimes(0.3, 10));
        Assert.Equal(2, GapNearestNeighbour.FloorTimes(0.5, 4));
        Assert.Equal(0, GapNearestNeighbour.FloorTimes(0.9, 1));
        Assert.Equal(24, GapNearestNeighbour.FloorTimes(3.0, 8));
    }
}
