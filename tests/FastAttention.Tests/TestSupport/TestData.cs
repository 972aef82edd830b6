using FastAttention.Exact;

namespace FastAttention.Tests.TestSupport;

/// <summary>Seeded random inputs and error measurement shared by all test classes.</summary>
public static class TestData
{
    public static double[] Uniform(int count, double bound, int seed)
    {
        var rng = new Random(seed);
        var a = new double[count];
        for (int i = 0; i < a.Length; i++) a[i] = (2 * rng.NextDouble() - 1) * bound;
        return a;
    }

    public static float[] ToFloat(double[] a) => Array.ConvertAll(a, x => (float)x);
    public static double[] ToDouble(float[] a) => Array.ConvertAll(a, x => (double)x);

    public static AttentionProblem<double> Problem(int n, int m, int d, int dv, double bound, int seed, double? scale = null, bool causal = false, int heads = 1) =>
        new(Uniform(heads * n * d, bound, seed), Uniform(heads * m * d, bound, seed + 1), Uniform(heads * m * dv, bound, seed + 2), n, m, d, dv, heads, scale, causal);

    /// <summary>max |a − b| over all entries (∞ if any difference is NaN); a may be float or double.</summary>
    public static double MaxAbsDiff<T>(ReadOnlySpan<T> a, ReadOnlySpan<double> b) where T : unmanaged, System.Numerics.INumberBase<T>
    {
        Assert.Equal(a.Length, b.Length);
        double e = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double diff = Math.Abs(double.CreateTruncating(a[i]) - b[i]);
            if (double.IsNaN(diff)) return double.PositiveInfinity;
            e = Math.Max(e, diff);
        }
        return e;
    }

    /// <summary>Asserts that an approximate algorithm met its ε against the float64 reference, and that its certificate is honest.</summary>
    public static double AssertWithinEpsilon(AttentionAlgorithm alg, AttentionProblem<double> p, double epsilon)
    {
        var result = alg.Compute(p, new AttentionSettings { Epsilon = epsilon, Threads = 1 });
        var reference = ReferenceAttention.Compute(p);
        double err = MaxAbsDiff(result.Output, reference);
        Assert.True(result.Certificate.ErrorBound <= epsilon, $"certificate {result.Certificate.ErrorBound} exceeds ε = {epsilon}");
        Assert.True(err <= epsilon, $"{alg.Name}: measured error {err:E3} exceeds ε = {epsilon:E3} (n={p.N}, m={p.M}, d={p.D}, B={p.EntryBound})");
        return err;
    }
}
