using System.Numerics;
using FastAttention.Exact;
using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

/// <summary>
/// An approximate "oracle" that uses all of the error it certifies: every output is the float64 reference moved by
/// ±0.999·ε (seeded random signs). The exact oracle never lands in a reduction's fuzzy zone; this one does, so these
/// tests check that each reduction asks for an ε′ that really suffices and thresholds correctly.
/// </summary>
internal sealed class AdversarialAttention(int seed) : AttentionAlgorithm
{
    private readonly Random _rng = new(seed);
    public override string Name => "adversarial";
    public override bool IsExact => false;

    protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context) =>
        Planned(head, context, new TrivialParameters("adversarial"), [new ErrorTerm("adversarial", context.Epsilon)], CostEstimate.Zero);

    protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
    {
        var (q, k, v) = head.ToDouble();
        var row = new double[head.Dv];
        for (int i = 0; i < head.N; i++)
        {
            ReferenceAttention.Row(q, k, v, head.M, head.D, head.Dv, head.Scale, head.Causal, i, row);
            for (int c = 0; c < head.Dv; c++)
                output[i * head.Dv + c] = T.CreateTruncating(row[c] + (_rng.Next(2) == 0 ? 0.999 : -0.999) * context.Epsilon);
        }
        return new HeadExecution([new ErrorTerm("adversarial", context.Epsilon * (1 - 1e-15))], plan.Parameters);
    }
}

public class AdversarialOracleTests
{
    private static AttentionOracle Adversary(int seed) => new(new AdversarialAttention(seed), threads: 1);

    [Fact]
    public void Row_sums_stay_within_one_plus_epsilon()
    {
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(1000 + s);
            int n = rng.Next(1, 13), m = rng.Next(1, 13), d = rng.Next(1, 9);
            double bound = new[] { 0.5, 2, 8, 40 }[s % 4];
            double eps = new[] { 0.5, 0.1, 0.01, 1e-4 }[(s / 4) % 4];
            var q = new VectorSet(TestSupport.TestData.Uniform(n * d, bound, 2 * s), n, d, "Q");
            var k = new VectorSet(TestSupport.TestData.Uniform(m * d, bound, 2 * s + 1), m, d, "K");
            var r = RowSumsViaAttention.Estimate(q, k, eps, Adversary(s));
            for (int i = 0; i < n; i++)
            {
                var l = Enumerable.Range(0, m).Select(j => VectorSet.Dot(q[i], k[j])).ToArray();
                double max = l.Max(), truth = max + Math.Log(l.Sum(x => Math.Exp(x - max)));
                Assert.True(Math.Abs(r.LogEstimates[i] - truth) <= Math.Log(1 + eps) * (1 + 1e-9),
                    $"instance {s} row {i}: ln Ŝ = {r.LogEstimates[i]}, ln S = {truth}, ε = {eps}");
            }
        }
    }

    [Fact]
    public void Max_ip_is_exact()
    {
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(5000 + s);
            int n = rng.Next(1, 11), m = rng.Next(1, 11), d = rng.Next(1, 7), bound = new[] { 1, 2, 5, 20 }[s % 4];
            var a = new VectorSet(Enumerable.Range(0, n * d).Select(_ => (double)rng.Next(-bound, bound + 1)).ToArray(), n, d, "A");
            var b = new VectorSet(Enumerable.Range(0, m * d).Select(_ => (double)rng.Next(-bound, bound + 1)).ToArray(), m, d, "B");
            var r = MaxIpViaAttention.Solve(a, b, Adversary(s));
            for (int i = 0; i < n; i++)
                Assert.Equal((long)Enumerable.Range(0, m).Max(j => VectorSet.Dot(a[i], b[j])), r.Maxima[i]);
        }
    }

    [Fact]
    public void Orthogonal_vectors_both_lemmas()
    {
        for (int s = 0; s < 200; s++)
        {
            var (a, b) = ReductionData.OvInstance(7000 + s, plant: s % 2 == 0, maxN: 12, maxD: 8);
            bool truth = ReductionData.HasOrthogonalPair(a, b);
            Assert.Equal(truth, OrthogonalVectorsLargeD.Solve(a, b, Adversary(s), 0.05 + 0.4 * (s % 5) / 5.0).Found);
            Assert.Equal(truth, OrthogonalVectorsLogTwo.Solve(a, b, Adversary(s), seed: s, samples: 24).Found);
        }
    }

    [Fact]
    public void Gap_ann_decisions_and_the_ann_pair()
    {
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(3000 + s);
            int n = rng.Next(1, 9), m = rng.Next(1, 9), d = rng.Next(2, 9);
            var a = ReductionData.Binary(rng, n, d, 0.5, "A");
            var b = ReductionData.Binary(rng, m, d, 0.5, "B");
            if (s % 2 == 0) { int i0 = rng.Next(n), j0 = rng.Next(m); for (int l = 0; l < d; l++) b.Data[j0 * d + l] = a.Data[i0 * d + l]; }
            double eps = new[] { 0.25, 0.5, 1.0 }[s % 3];
            var min = Enumerable.Range(0, n).Select(i => Enumerable.Range(0, m).Min(j => VectorSet.Hamming(a[i], b[j]))).ToArray();
            var gap = new GapNearestNeighbour(a, b, Adversary(s)) { BruteForceExponent = double.NegativeInfinity };
            for (int t = 0; t < d; t++)
            {
                var rows = gap.Gap(t, eps);
                for (int i = 0; i < n; i++)
                {
                    if (min[i] <= t) Assert.True(rows[i]);
                    if (min[i] > (1 + eps) * t) Assert.False(rows[i]);
                }
            }
            var r = new GapNearestNeighbour(a, b, Adversary(s)) { BruteForceExponent = double.NegativeInfinity }.Solve(eps);
            Assert.True(r.Distance <= (1 + eps) * min.Min());
        }
    }

    [Fact]
    public void Sat_chain()
    {
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(600 + s);
            int v = rng.Next(3, 13);
            var f = ReductionData.Random3Cnf(rng, v, (int)Math.Round(v * (3.0 + 3.0 * rng.NextDouble())));
            Assert.Equal(f.BruteForce() is not null, SatViaOrthogonalVectors.Solve(f, Adversary(s)).Satisfiable);
        }
    }
}
