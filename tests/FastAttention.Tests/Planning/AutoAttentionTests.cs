using FastAttention.Cli.Commands;
using FastAttention.Exact;
using FastAttention.Planning;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Planning;

/// <summary>The planner: per head, the cheapest plan that certifies ε, with every alternative recorded.</summary>
public class AutoAttentionTests
{
    private static readonly AttentionSettings Fixed = new() { Threads = 1, Rates = MachineRates.Default };

    [Fact]
    public void Without_epsilon_auto_runs_exact()
    {
        var p = TestData.Problem(50, 40, 3, 2, 1, 1);
        var r = new AutoAttention().Compute(p, Fixed);
        Assert.Equal("exact", r.Certificate.Heads[0].Algorithm);
        Assert.True(TestData.MaxAbsDiff<double>(r.Output, ReferenceAttention.Compute(p)) < 1e-12);
    }

    [Theory]
    [InlineData("small-entry d=4", "polynomial")]
    [InlineData("large-entry d=1", "vector")]
    [InlineData("large-entry d=2", "range")]
    [InlineData("large-entry d=4", "range")]
    [InlineData("rank-2 keys d=16", "lowrank")]
    [InlineData("d=64 normal", "exact")]
    [InlineData("causal small-entry d=4", "polynomial")]
    public void The_planner_picks_the_algorithm_that_wins_each_family(string family, string expected)
    {
        var f = BenchPlannerCommand.Families.Single(x => x.Name == family);
        int n = f.D >= 32 ? 1024 : 16384;
        var p = BenchPlannerCommand.Make(f, n);
        var settings = Fixed with { Epsilon = f.Epsilon };
        var plan = new AutoAttention().Plan(p, settings);
        var head = plan.Heads[0];
        Assert.True(expected == head.Algorithm,
            $"{family}: chose {head.Algorithm}; candidates: {string.Join("; ", head.Candidates.Select(c => $"{c.Algorithm} {(c.Refusal is null ? c.PredictedSeconds.ToString("G3") : c.Refusal.Reason.ToString())}"))}");
        Assert.Equal(AutoAttention.CandidateNames, head.Candidates.Select(c => c.Algorithm));
        // Deterministic for a given problem and rates.
        var again = new AutoAttention().Plan(p, settings).Heads[0];
        Assert.Equal(head.Algorithm, again.Algorithm);
        Assert.Equal(head.PredictedSeconds, again.PredictedSeconds);
        var result = plan.Execute();
        var rows = Enumerable.Range(0, 64).Select(i => i * (n / 64)).ToArray();
        var reference = ReferenceAttention.ComputeRows(p, 0, rows);
        double err = 0;
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < p.Dv; c++) err = Math.Max(err, Math.Abs(result.Output[rows[r] * p.Dv + c] - reference[r * p.Dv + c]));
        Assert.True(err <= f.Epsilon, $"{family}: error {err:E3} > ε");
        Assert.True(result.Certificate.ErrorBound <= f.Epsilon);
    }

    [Fact]
    public void Heads_get_different_algorithms_and_a_head_nothing_can_certify_is_refused()
    {
        // Head 0: small entries (polynomial); head 1: large entries (range); head 2: V so large that ε = 1e-3 is below
        // float64's reach for every approximation — and below the exact kernel's certified rounding bound too (the exact
        // certificate carries its rounding bound, ≈ 2.5·10⁻¹³·‖V‖∞ here), so no candidate certifies ε and auto refuses.
        const int n = 4096, d = 2, heads = 3;
        var q = new double[heads * n * d];
        var k = new double[heads * n * d];
        var v = new double[heads * n * d];
        TestData.Uniform(n * d, 0.5, 1).CopyTo(q, 0); TestData.Uniform(n * d, 0.5, 2).CopyTo(k, 0);
        TestData.Uniform(n * d, 100, 3).CopyTo(q, n * d); TestData.Uniform(n * d, 100, 4).CopyTo(k, n * d);
        TestData.Uniform(n * d, 1, 5).CopyTo(q, 2 * n * d); TestData.Uniform(n * d, 1, 6).CopyTo(k, 2 * n * d);
        TestData.Uniform(2 * n * d, 1, 7).CopyTo(v, 0);
        var big = TestData.Uniform(n * d, 1e12, 8);
        big.CopyTo(v, 2 * n * d);
        var two = new AttentionProblem<double>(q.AsMemory(0, 2 * n * d), k.AsMemory(0, 2 * n * d), v.AsMemory(0, 2 * n * d), n, n, d, d, 2, scale: 1);
        var result = new AutoAttention().Compute(two, Fixed with { Epsilon = 1e-3, Threads = 2 });
        var c = result.Certificate;
        Assert.Equal("polynomial", c.Heads[0].Algorithm);
        Assert.Equal("range", c.Heads[1].Algorithm);
        for (int h = 0; h < 2; h++)
        {
            var rows = Enumerable.Range(0, 32).Select(i => i * 128).ToArray();
            var reference = ReferenceAttention.ComputeRows(two, h, rows);
            for (int r = 0; r < rows.Length; r++)
                for (int col = 0; col < d; col++)
                    Assert.True(Math.Abs(result.Output[(h * n + rows[r]) * d + col] - reference[r * d + col]) <= 1e-3);
        }
        var p = new AttentionProblem<double>(q, k, v, n, n, d, d, heads, scale: 1);
        var outcome = new AutoAttention().TryPlan(p, Fixed with { Epsilon = 1e-3, Threads = 2 });
        Assert.False(outcome.Succeeded);
        Assert.Equal(2, outcome.Refusal!.Head);
        Assert.Contains("below float64's reach", outcome.Refusal.Detail); // the approximations
        Assert.Contains("exact kernel's floating-point rounding bound", outcome.Refusal.Detail); // and exact
    }

    [Fact]
    public void Every_refused_candidate_carries_a_reason_code()
    {
        var p = TestData.Problem(256, 256, 8, 8, 3, 9);
        var plan = new AutoAttention().Plan(p, Fixed with { Epsilon = 1e-6 });
        var byName = plan.Heads[0].Candidates.ToDictionary(c => c.Algorithm);
        Assert.Equal(RefusalReason.HeadDimension, byName["vector"].Refusal!.Reason);
        Assert.Equal(RefusalReason.HeadDimension, byName["rounding"].Refusal!.Reason);
        Assert.Equal(RefusalReason.HeadDimension, byName["range"].Refusal!.Reason);
        Assert.True(byName["exact"].Certifiable);
    }
}
