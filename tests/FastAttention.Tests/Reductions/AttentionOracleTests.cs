using FastAttention.Exact;
using FastAttention.Reductions;

namespace FastAttention.Tests.Reductions;

public class AttentionOracleTests
{
    /// <summary>An approximate algorithm that refuses every ε below its floor, as the library's approximate ones do.</summary>
    private sealed class Picky(double floor) : AttentionAlgorithm
    {
        public override string Name => "picky";
        public override bool IsExact => false;
        public int Computed { get; private set; }

        protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context)
        {
            if (context.Epsilon < floor) throw new AttentionRefusedException(Name, RefusalReason.Float64Reach, $"ε = {context.Epsilon:G3} is below my floor {floor:G3}.");
            return Planned(head, context, new TrivialParameters("picky"), [new ErrorTerm("picky", context.Epsilon * 0.5)], CostEstimate.Zero);
        }

        protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
        {
            Computed++;
            var (q, k, v) = head.ToDouble();
            var row = new double[head.Dv];
            for (int i = 0; i < head.N; i++)
            {
                ReferenceAttention.Row(q, k, v, head.M, head.D, head.Dv, head.Scale, head.Causal, i, row);
                for (int c = 0; c < head.Dv; c++) output[i * head.Dv + c] = T.CreateTruncating(row[c]);
            }
            return new HeadExecution([new ErrorTerm("picky", context.Epsilon * 0.5)], plan.Parameters);
        }
    }

    [Fact]
    public void An_oracle_whose_guarantee_cannot_meet_the_reduction_is_refused_clearly()
    {
        var (a, b) = ReductionData.OvInstance(5, plant: true);
        // Lemma C.6 built for η = 0.1 asks for ε′ ≈ 0.1: an oracle certifying only 0.2 must be refused, 0.05 accepted.
        var e = Assert.Throws<AttentionRefusedException>(() => OrthogonalVectorsLargeD.Solve(a, b, new AttentionOracle(new Picky(0.2))));
        Assert.Contains("the oracle 'picky' cannot serve this reduction", e.Message);
        Assert.Contains("below my floor 0.2", e.Message);
        Assert.Contains("ov (Lemma C.6)", e.Message);
        var ok = new Picky(0.05);
        Assert.True(OrthogonalVectorsLargeD.Solve(a, b, new AttentionOracle(ok)).Found);
        Assert.Equal(1, ok.Computed);
    }

    [Fact]
    public void Exact_kernels_agree_within_the_derived_relative_rounding_bound()
    {
        // The streaming kernel and the compensated reference round differently; both are within κ·u + α of the truth,
        // so they must be within 2(κ·u + α) of each other, also for outputs far below ‖V‖∞ = 1.
        int checkedTiny = 0;
        for (int s = 0; s < 200; s++)
        {
            var rng = new Random(s);
            int n = rng.Next(1, 9), m = rng.Next(1, 17), d = rng.Next(1, 11);
            double bound = new[] { 1.0, 10, 30, 100 }[s % 4];
            var q = TestSupport.TestData.Uniform(n * d, bound, 10 * s);
            var k = TestSupport.TestData.Uniform(m * d, bound, 10 * s + 1);
            var v = new double[m];
            for (int j = 0; j < m; j++) v[j] = rng.Next(2);
            var p = new AttentionProblem<double>(q, k, v, n, m, d, 1, 1, 1.0);
            var inst = new OracleInstance(q, k, v, n, m, d, 1.0);
            double kappa = AttentionOracle.RelativeRoundingBound(m, d, inst.Lambda());
            if (double.IsPositiveInfinity(kappa)) continue;
            double alpha = AttentionOracle.UnderflowBound(m);
            var fast = new FlashAttention().Compute(p, new AttentionSettings { Threads = 1 }).Output;
            var reference = ReferenceAttention.Compute(p);
            for (int i = 0; i < n; i++)
            {
                double u = Math.Max(fast[i], reference[i]);
                Assert.True(Math.Abs(fast[i] - reference[i]) <= 2 * (kappa * u + alpha),
                    $"instance {s} row {i}: {fast[i]:R} vs {reference[i]:R}, κ = {kappa:G3}");
                if (u > 0 && u < 1e-100) checkedTiny++;
            }
        }
        Assert.True(checkedTiny > 0);
    }

    [Fact]
    public void Counts_calls_and_records_the_largest_instance_and_smallest_epsilon()
    {
        var oracle = ReductionData.Exact();
        Assert.Null(oracle.Instance);
        var q = new VectorSet([0.5, -1.0, 2.0, 0.25], 2, 2, "Q");
        var r1 = RowSumsViaAttention.Estimate(q, q, 0.1, oracle);
        int calls = oracle.Calls;
        Assert.Equal(r1.OracleCalls, calls);
        var r2 = RowSumsViaAttention.Estimate(q, q, 0.01, oracle);
        Assert.Equal(calls + r2.OracleCalls, oracle.Calls);
        double eps0 = 0.01 / 2.01;
        Assert.Equal(eps0 / (4 - eps0 * eps0), oracle.Instance!.Epsilon, 15);
        Assert.Equal(3, oracle.Instance.N);
        Assert.Equal(3, oracle.Instance.Keys);
        Assert.Equal(3, oracle.Instance.D);
    }

    [Fact]
    public void Rounding_bound_grows_with_keys_dimension_and_logits_and_gives_up_beyond_reach()
    {
        double baseline = AttentionOracle.RelativeRoundingBound(16, 10, 10);
        Assert.True(AttentionOracle.RelativeRoundingBound(1024, 10, 10) > baseline);
        Assert.True(AttentionOracle.RelativeRoundingBound(16, 100, 10) > baseline);
        Assert.True(AttentionOracle.RelativeRoundingBound(16, 10, 1e6) > baseline);
        Assert.True(baseline > 16 * 1.1e-16);
        Assert.True(double.IsPositiveInfinity(AttentionOracle.RelativeRoundingBound(16, 10, 1e13)));
        Assert.True(AttentionOracle.RelativeRoundingBound(16, int.MaxValue, 1e3) > AttentionOracle.RelativeRoundingBound(16, 10, 1e3)); // no int overflow
    }
}
