using FastAttention.Reductions;
using Xunit.Abstractions;

namespace FastAttention.Tests.Reductions;

/// <summary>
/// The reductions with other registered oracles: the second exact one ("reference") and the approximate ones
/// ("polynomial", "range") once other engineers register them. An approximate oracle may refuse an instance whose ε′
/// it cannot certify (then the reduction refuses cleanly, naming itself); whenever it answers, the reduction must agree
/// with brute force on every instance. Unregistered names are skipped.
/// </summary>
public class OtherOraclesTests(ITestOutputHelper output)
{
    public static TheoryData<string> Names => new() { "reference", "polynomial", "range", "vector", "rounding", "lowrank" };

    private bool TryCreate(string name, out AttentionOracle oracle)
    {
        oracle = null!;
        if (!AttentionAlgorithms.Names.Contains(name, StringComparer.OrdinalIgnoreCase))
        {
            output.WriteLine($"skipped: no algorithm '{name}' is registered.");
            return false;
        }
        oracle = AttentionOracle.Create(name, threads: 1);
        return true;
    }

    /// <summary>Runs <paramref name="body"/>; a refusal must be the reduction's clean refusal, which is counted.</summary>
    private static bool Answered(Action body, ref int refused)
    {
        try { body(); return true; }
        catch (AttentionRefusedException e)
        {
            Assert.True(e.Message.Contains("cannot serve this reduction") || e.Message.Contains("float64 cannot certify"), e.Message);
            refused++;
            return false;
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Orthogonal_vectors_large_d(string name)
    {
        if (!TryCreate(name, out var oracle)) return;
        int answered = 0, refused = 0;
        for (int s = 0; s < 200; s++)
        {
            var (a, b) = ReductionData.OvInstance(7000 + s, plant: s % 2 == 0, maxN: 16, maxD: 10);
            if (Answered(() => Assert.Equal(ReductionData.HasOrthogonalPair(a, b), OrthogonalVectorsLargeD.Solve(a, b, oracle).Found), ref refused)) answered++;
        }
        output.WriteLine($"{name}: {answered} answered, {refused} refused");
        if (!oracle.Algorithm.IsExact) return;
        Assert.Equal(200, answered);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Row_sums_and_max_ip(string name)
    {
        if (!TryCreate(name, out var oracle)) return;
        int answered = 0, refused = 0;
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(100 + s);
            int n = rng.Next(1, 9), m = rng.Next(1, 9), d = rng.Next(1, 6);
            var q = new VectorSet(TestSupport.TestData.Uniform(n * d, 1, 3 * s), n, d, "Q");
            var k = new VectorSet(TestSupport.TestData.Uniform(m * d, 1, 3 * s + 1), m, d, "K");
            if (Answered(() =>
            {
                var r = RowSumsViaAttention.Estimate(q, k, 0.1, oracle);
                for (int i = 0; i < n; i++)
                {
                    double truth = Math.Log(Enumerable.Range(0, m).Sum(j => Math.Exp(VectorSet.Dot(q[i], k[j]))));
                    Assert.True(Math.Abs(r.LogEstimates[i] - truth) <= Math.Log(1.1) * (1 + 1e-9));
                }
                var ia = new VectorSet(Array.ConvertAll(q.Data, x => Math.Round(3 * x)), n, d, "A");
                var ib = new VectorSet(Array.ConvertAll(k.Data, x => Math.Round(3 * x)), m, d, "B");
                var mx = MaxIpViaAttention.Solve(ia, ib, oracle);
                for (int i = 0; i < n; i++)
                    Assert.Equal((long)Enumerable.Range(0, m).Max(j => VectorSet.Dot(ia[i], ib[j])), mx.Maxima[i]);
            }, ref refused)) answered++;
        }
        output.WriteLine($"{name}: {answered} answered, {refused} refused");
        if (oracle.Algorithm.IsExact) Assert.Equal(200, answered);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Orthogonal_vectors_log_two(string name)
    {
        if (!TryCreate(name, out var oracle)) return;
        int answered = 0, refused = 0;
        for (int s = 0; s < 200; s++)
        {
            var (a, b) = ReductionData.OvInstance(9000 + s, plant: s % 2 == 0, maxN: 8, maxD: 6);
            if (Answered(() => Assert.Equal(ReductionData.HasOrthogonalPair(a, b), OrthogonalVectorsLogTwo.Solve(a, b, oracle, seed: s, samples: 20).Found), ref refused)) answered++;
        }
        output.WriteLine($"{name}: {answered} answered, {refused} refused");
        if (oracle.Algorithm.IsExact) Assert.Equal(200, answered);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Approximate_nearest_neighbour(string name)
    {
        if (!TryCreate(name, out var oracle)) return;
        int answered = 0, refused = 0;
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(4000 + s);
            int n = rng.Next(1, 9), m = rng.Next(1, 9), d = rng.Next(2, 9);
            var a = ReductionData.Binary(rng, n, d, 0.5, "A");
            var b = ReductionData.Binary(rng, m, d, 0.5, "B");
            int best = Enumerable.Range(0, n).Min(i => Enumerable.Range(0, m).Min(j => VectorSet.Hamming(a[i], b[j])));
            double eps = new[] { 0.5, 1.0, 2.0 }[s % 3];
            if (Answered(() => Assert.True(new GapNearestNeighbour(a, b, oracle).Solve(eps).Distance <= (1 + eps) * best), ref refused)) answered++;
        }
        output.WriteLine($"{name}: {answered} answered, {refused} refused");
        if (oracle.Algorithm.IsExact) Assert.Equal(200, answered);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Sat_chain(string name)
    {
        if (!TryCreate(name, out var oracle)) return;
        int answered = 0, refused = 0;
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(900 + s);
            int v = rng.Next(3, 11);
            var f = ReductionData.Random3Cnf(rng, v, (int)(v * (3 + 3 * rng.NextDouble())));
            if (Answered(() => Assert.Equal(f.BruteForce() is not null, SatViaOrthogonalVectors.Solve(f, oracle).Satisfiable), ref refused)) answered++;
        }
        output.WriteLine($"{name}: {answered} answered, {refused} refused");
        if (oracle.Algorithm.IsExact) Assert.Equal(200, answered);
    }
}
