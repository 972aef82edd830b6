using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

public class MaxIpViaAttentionTests
{
    private static long[] BruteForce(VectorSet a, VectorSet b) =>
        Enumerable.Range(0, a.Count).Select(i => Enumerable.Range(0, b.Count).Max(j => (long)VectorSet.Dot(a[i], b[j]))).ToArray();

    private static VectorSet Integers(Random rng, int count, int d, int bound, string name)
    {
        var data = new double[count * d];
        for (int i = 0; i < data.Length; i++) data[i] = rng.Next(-bound, bound + 1);
        return new VectorSet(data, count, d, name);
    }

    [Fact]
    public void Two_hundred_random_instances_match_brute_force_exactly()
    {
        int planted = 0;
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(5000 + s);
            int n = rng.Next(1, 11), m = rng.Next(1, 11), d = rng.Next(1, 7), bound = new[] { 1, 2, 5, 20 }[s % 4];
            var a = Integers(rng, n, d, bound, "A");
            var b = Integers(rng, m, d, bound, "B");
            if (s % 2 == 0)
            {
                // Plant a unique large inner product: b_j = a_i scaled to the bound's sign pattern.
                int i = rng.Next(n), j = rng.Next(m);
                for (int l = 0; l < d; l++) b.Data[j * d + l] = a.Data[i * d + l] >= 0 ? bound : -bound;
                planted++;
            }
            var oracle = ReductionData.Exact();
            var r = MaxIpViaAttention.Solve(a, b, oracle);
            Assert.Equal(BruteForce(a, b), r.Maxima);
            Assert.Equal(oracle.Calls, r.OracleCalls);
        }
        Assert.Equal(100, planted);
    }

    [Fact]
    public void Negative_maxima_and_single_key()
    {
        var a = new VectorSet([1.0, 1.0, -2.0, 3.0], 2, 2, "A");
        var b = new VectorSet([-3.0, -1.0], 1, 2, "B");
        Assert.Equal(new long[] { -4, 3 }, MaxIpViaAttention.Solve(a, b, ReductionData.Exact()).Maxima);
    }

    [Fact]
    public void Non_integer_input_is_rejected()
    {
        var a = new VectorSet([1.5], 1, 1, "A");
        Assert.Equal("A", Assert.Throws<ArgumentException>(() => MaxIpViaAttention.Solve(a, a, ReductionData.Exact())).ParamName);
    }

    [Fact]
    public void Entries_beyond_float64_are_refused_with_the_limit()
    {
        var big = new VectorSet([1e7, 1e7, -1e7, 1e7], 2, 2, "A");
        var e = Assert.Throws<AttentionRefusedException>(() => MaxIpViaAttention.Solve(big, big, ReductionData.Exact()));
        Assert.Contains("which float64 cannot certify", e.Message);
        Assert.Contains("use entries |x| ≤", e.Message);
    }
}
