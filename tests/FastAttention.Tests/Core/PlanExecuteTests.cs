using FastAttention.Exact;
using FastAttention.Polynomial;
using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Core;

/// <summary>The plan → execute → certificate contract every algorithm shares.</summary>
public class PlanExecuteTests
{
    public static TheoryData<string> Approximate => ["polynomial", "vector", "rounding", "range", "lowrank"];

    [Theory]
    [MemberData(nameof(Approximate))]
    public void Approximate_algorithms_refuse_without_epsilon_with_a_reason_code(string name)
    {
        var p = TestData.Problem(32, 32, 1, 1, 1, 3);
        var outcome = AttentionAlgorithms.Create(name).TryPlan(p, new AttentionSettings());
        Assert.False(outcome.Succeeded);
        Assert.Equal(RefusalReason.EpsilonMissing, outcome.Refusal!.Reason);
        var e = Assert.Throws<AttentionRefusedException>(() => AttentionAlgorithms.Create(name).Compute(p));
        Assert.Equal(RefusalReason.EpsilonMissing, e.Reason);
    }

    [Fact]
    public void Heads_are_planned_independently_and_a_refused_head_is_a_typed_refusal_not_an_AggregateException()
    {
        // Head 1's V is 10¹² times head 0's: ε = 1e-3 is within float64's reach for head 0 only.
        const int n = 64, d = 1, heads = 2;
        var q = TestData.Uniform(heads * n * d, 2, 11);
        var k = TestData.Uniform(heads * n * d, 2, 12);
        var v = TestData.Uniform(heads * n * d, 1, 13);
        for (int j = n; j < 2 * n; j++) v[j] *= 1e12;
        var p = new AttentionProblem<double>(q, k, v, n, n, d, d, heads);
        foreach (int threads in new[] { 1, 2 })
        {
            var outcome = new VectorAttention().TryPlan(p, new AttentionSettings { Epsilon = 1e-3, Threads = threads });
            Assert.False(outcome.Succeeded);
            Assert.Equal(1, outcome.Refusal!.Head);
            Assert.Equal(RefusalReason.Float64Reach, outcome.Refusal.Reason);
            var e = Assert.Throws<AttentionRefusedException>(() => new VectorAttention().Compute(p, new AttentionSettings { Epsilon = 1e-3, Threads = threads }));
            Assert.Equal(RefusalReason.Float64Reach, e.Reason);
        }
    }

    [Fact]
    public void Every_head_is_certified_with_its_own_parameters_and_the_terms_add_up_to_the_bound()
    {
        const int n = 200, d = 2, heads = 3;
        var q = TestData.Uniform(heads * n * d, 1, 21);
        for (int i = 2 * n * d; i < 3 * n * d; i++) q[i] *= 0.1; // head 2 has much smaller logits: a lower degree
        var p = new AttentionProblem<double>(q, TestData.Uniform(heads * n * d, 1, 22), TestData.Uniform(heads * n * d, 1, 23), n, n, d, d, heads);
        var result = new PolynomialAttention().Compute(p, new AttentionSettings { Epsilon = 1e-4, Threads = 2 });
        var c = result.Certificate;
        Assert.Equal(heads, c.Heads.Count);
        Assert.True(c.ParametersOf<PolynomialParameters>(2).Degree < c.ParametersOf<PolynomialParameters>(0).Degree);
        foreach (var h in c.Heads)
        {
            Assert.NotEmpty(h.Budget);
            Assert.Equal(ErrorTerms.Sum(h.Budget), h.ErrorBound);
            Assert.True(h.ErrorBound <= 1e-4);
        }
        Assert.Equal(c.Heads.Max(h => h.ErrorBound), c.ErrorBound);
        Assert.Equal(ErrorTerms.Sum(c.Budget), c.ErrorBound);
        double err = TestData.MaxAbsDiff<double>(result.Output, ReferenceAttention.Compute(p));
        Assert.True(err <= c.ErrorBound, $"error {err} above the bound {c.ErrorBound}");
    }

    [Fact]
    public void Plans_are_deterministic_and_execute_into_the_callers_buffer()
    {
        var p = TestData.Problem(300, 300, 2, 3, 1, 31);
        var alg = new PolynomialAttention();
        var settings = new AttentionSettings { Epsilon = 1e-5, Threads = 2 };
        var a = alg.Plan(p, settings);
        var b = alg.Plan(p, settings);
        Assert.Equal(a.Heads[0].Parameters, b.Heads[0].Parameters);
        Assert.Equal(a.Heads[0].Budget, b.Heads[0].Budget);
        Assert.Equal(a.Heads[0].PredictedSeconds, b.Heads[0].PredictedSeconds);
        var buffer = new double[p.OutputLength];
        var cert = a.Execute(buffer);
        Assert.Equal(a.Execute().Output, buffer);
        Assert.True(cert.ErrorBound <= 1e-5);
        Assert.Throws<ArgumentException>(() => a.Execute(new double[p.OutputLength - 1]));
    }

    [Theory]
    [InlineData("vector")]
    [InlineData("range")]
    [InlineData("lowrank")]
    [InlineData("rounding")]
    [InlineData("exact")]
    [InlineData("reference")]
    public void Values_near_the_float64_limit_are_rescaled_not_turned_into_NaN(string name)
    {
        // Issue 13: V = ±8·10³⁰⁷ (finite), m = 1000, ε = 10³⁰³ gave NaN in every entry with exit 0.
        const int n = 40, m = 1000;
        var q = TestData.Uniform(n, 1, 41);
        var k = TestData.Uniform(m, 1, 42);
        var v = TestData.Uniform(m, 1, 43);
        for (int j = 0; j < m; j++) v[j] = v[j] >= 0 ? 8e307 : -8e307;
        v[0] = 8e307;
        var p = new AttentionProblem<double>(q, k, v, n, m, 1, 1);
        var result = AttentionAlgorithms.Create(name).Compute(p, new AttentionSettings { Epsilon = 1e303, Threads = 1 });
        Assert.All(result.Output, x => Assert.True(double.IsFinite(x)));
        var reference = ReferenceAttention.Compute(p);
        Assert.All(reference, x => Assert.True(double.IsFinite(x)));
        double err = TestData.MaxAbsDiff<double>(result.Output, reference);
        if (!AttentionAlgorithms.Create(name).IsExact)
        {
            Assert.True(result.Certificate.ErrorBound <= 1e303);
            Assert.True(err <= result.Certificate.ErrorBound, $"{name}: error {err:E3} above its bound {result.Certificate.ErrorBound:E3}");
        }
        else Assert.True(err <= 1e-10 * 8e307, $"{name}: error {err:E3}");
        Assert.Contains(result.Certificate.Notes, s => s.Contains("scaled", StringComparison.Ordinal));
    }

    [Fact]
    public void Cancellation_stops_planning_and_execution()
    {
        var p = TestData.Problem(64, 64, 2, 2, 1, 51, heads: 4);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => new FlashAttention().Compute(p, new AttentionSettings { Cancellation = cts.Token }));
        var plan = new PolynomialAttention().Plan(p, new AttentionSettings { Epsilon = 1e-3 });
        var cancelled = new AttentionSettings { Epsilon = 1e-3, Cancellation = cts.Token };
        Assert.ThrowsAny<OperationCanceledException>(() => new PolynomialAttention().Plan(p, cancelled).Execute());
        Assert.True(plan.Execute().Certificate.ErrorBound <= 1e-3);
    }

    [Fact]
    public void A_disposed_plan_refuses_to_execute_and_a_second_dispose_is_harmless()
    {
        // d = 1, B = 100: a range-search plan (not the exact fallback), whose moments live in pooled memory.
        var p = TestData.Problem(4000, 4000, 1, 2, 100, 81);
        var settings = new AttentionSettings { Epsilon = 1e-6, Threads = 2 };
        var plan = new RangeSearchAttention().Plan(p, settings);
        var first = plan.Execute();
        Assert.Equal("range search", first.Certificate.ParametersOf<RangeFamilyParameters>(0).Plan);
        var again = plan.Execute(); // a plan runs more than once, on the moments of its first run
        Assert.Equal(first.Output, again.Output);
        Assert.True(TestData.MaxAbsDiff<double>(first.Output, ReferenceAttention.Compute(p)) <= 1e-6);
        plan.Dispose();
        plan.Dispose();
        Assert.Throws<ObjectDisposedException>(() => plan.Execute());
        Assert.Throws<ObjectDisposedException>(() => plan.Execute(new double[p.OutputLength]));
        // A new plan on the released memory is again within ε.
        Assert.True(TestData.MaxAbsDiff<double>(new RangeSearchAttention().Compute(p, settings).Output, ReferenceAttention.Compute(p)) <= 1e-6);
    }

    [Fact]
    public void Threads_above_the_processor_count_are_clamped_and_said()
    {
        var p = TestData.Problem(16, 16, 2, 2, 1, 61);
        var c = new FlashAttention().Compute(p, new AttentionSettings { Threads = 1000 }).Certificate;
        Assert.Equal(Environment.ProcessorCount, c.Threads);
        Assert.Contains(c.Notes, s => s.Contains("1000 asked", StringComparison.Ordinal));
    }

    [Fact]
    public void Progress_reaches_one_over_all_heads()
    {
        var p = TestData.Problem(64, 64, 2, 2, 1, 71, heads: 3);
        var seen = new List<double>();
        var sink = new SyncProgress(seen);
        new ReferenceAttention().Compute(p, new AttentionSettings { Progress = sink, Threads = 1 });
        Assert.NotEmpty(seen);
        Assert.Equal(1.0, seen[^1], 12);
        for (int i = 1; i < seen.Count; i++) Assert.True(seen[i] >= seen[i - 1]);
    }

    private sealed class SyncProgress(List<double> seen) : IProgress<double>
    {
        public void Report(double value) { lock (seen) seen.Add(value); }
    }
}
