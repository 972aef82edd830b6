using FastAttention.Gradient;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Gradient;

public class AttentionLossGradientTests
{
    [Theory]
    [InlineData(8, 8, 2, 1.0, 1.0, 11)]
    [InlineData(12, 7, 3, 0.8, 1.0, 12)]
    [InlineData(9, 16, 4, 0.7, 0.5, 13)]
    public void Reference_gradient_matches_central_finite_differences(int n, int m, int d, double bound, double scale, int seed)
    {
        var p = GradientTestData.Problem(n, m, d, bound, seed, scale);
        var g = AttentionLossReference.Gradient(p, 1);
        var fd = GradientTestData.FiniteDifferenceGradient(p, 1e-5);
        double err = TestData.MaxAbsDiff(g, fd);
        // Central differences: truncation O(h²·L''') plus rounding O(u·L/h); 1e-6 relative is far above both here.
        Assert.True(err <= 1e-6 * Math.Max(1, GradientTestData.MaxAbs(fd)), $"reference vs finite differences: {err:E3} (max |g| {GradientTestData.MaxAbs(fd):E3})");
    }

    [Fact]
    public void Loss_of_a_hand_computed_example()
    {
        // n = m = 2, d = 1, X = [1], Y = [1], s = 1: A₁ = (0, 0) makes every row of f uniform, so f·h = mean(A₃).
        var p = new AttentionLossProblem(new(new[] { 0.0, 0.0 }, 2, 1), new(new[] { 1.0, 2.0 }, 2, 1), new(new[] { 1.0, 3.0 }, 2, 1),
            new(new[] { 0.5, 4.0 }, 2, 1), new(new[] { 1.0 }, 1, 1), new(new[] { 1.0 }, 1, 1));
        // f·h = (2, 2); c = (1.5, −2); L = ½(2.25 + 4) = 3.125.
        Assert.Equal(3.125, AttentionLossReference.Loss(p), 14);
    }

    [Theory]
    [InlineData(16, 16, 4, 1.0, 1.0, 21)]
    [InlineData(24, 40, 3, 1.5, 0.7, 22)]
    [InlineData(64, 32, 8, 0.5, 1.0, 23)]
    public void Reduction_with_the_exact_oracle_matches_the_reference(int n, int m, int d, double bound, double scale, int seed)
    {
        var p = GradientTestData.Problem(n, m, d, bound, seed, scale);
        var reference = AttentionLossReference.Gradient(p);
        var result = AttentionLossGradient.Compute(p, AttentionAlgorithms.Create("exact"), 1e-3);
        double err = TestData.MaxAbsDiff(result.Gradient.Span, reference);
        Assert.True(err <= 1e-9 * GradientTestData.MaxAbs(reference), $"reduction vs reference: {err:E3} (max |g| {GradientTestData.MaxAbs(reference):E3})");
        Assert.Equal(d + 2, result.OracleCalls);
        Assert.True(result.OracleCalls <= 2 * d + 4);
        // The exact oracle certifies its float64 rounding (no longer 0): the propagated bound covers the measured
        // error and stays at rounding level.
        Assert.InRange(result.GuaranteedBound, err, 1e-9 * GradientTestData.MaxAbs(reference));
        Assert.True(result.OracleIsExact);
    }

    [Fact]
    public void Reduction_with_the_reference_oracle_matches_the_reference()
    {
        var p = GradientTestData.Problem(20, 20, 5, 1.0, 31);
        var reference = AttentionLossReference.Gradient(p);
        var result = AttentionLossGradient.Compute(p, AttentionAlgorithms.Create("reference"), 1e-3);
        Assert.True(TestData.MaxAbsDiff(result.Gradient.Span, reference) <= 1e-9 * GradientTestData.MaxAbs(reference));
    }

    [Fact]
    public void The_appendix_literal_B3_is_not_the_gradient_but_the_corrected_one_is()
    {
        // Gupta et al. App. B.2 prints B₃ = f·diag[f·c·hᵀ]·A₂; Alman–Song's p₂ is diag(δ)·f. Finite differences decide.
        var p = GradientTestData.Problem(10, 10, 3, 1.0, 41);
        var fd = GradientTestData.FiniteDifferenceGradient(p, 1e-5);
        double scaleG = GradientTestData.MaxAbs(fd);
        var exact = AttentionAlgorithms.Create("reference");
        var corrected = AttentionLossGradient.Compute(p, exact, 1e-3, 1, paperLiteralB3: false);
        var literal = AttentionLossGradient.Compute(p, exact, 1e-3, 1, paperLiteralB3: true);
        Assert.True(TestData.MaxAbsDiff(corrected.Gradient.Span, fd) <= 1e-6 * scaleG);
        Assert.True(TestData.MaxAbsDiff(literal.Gradient.Span, fd) > 1e-2 * scaleG,
            "the appendix's literal B₃ matched finite differences; the erratum note in AttentionLossGradient is wrong");
    }

    [Theory]
    [InlineData(1e-2, 51)]
    [InlineData(1e-4, 52)]
    [InlineData(1e-6, 53)]
    public void Reduction_with_an_adversarial_approximate_oracle_stays_within_epsilon(double epsilon, int seed)
    {
        var p = GradientTestData.Problem(32, 24, 4, 1.0, seed);
        var reference = AttentionLossReference.Gradient(p);
        var oracle = new AdversarialOracle(seed);
        var result = AttentionLossGradient.Compute(p, oracle, epsilon);
        double err = TestData.MaxAbsDiff(result.Gradient.Span, reference);
        Assert.True(result.AprioriBound <= epsilon, $"a priori bound {result.AprioriBound:E3} > ε {epsilon:E3}");
        Assert.True(result.GuaranteedBound <= epsilon, $"guaranteed bound {result.GuaranteedBound:E3} > ε {epsilon:E3}");
        Assert.True(err <= result.GuaranteedBound, $"measured {err:E3} > guaranteed {result.GuaranteedBound:E3}");
        Assert.True(oracle.Calls == 4 + 2 && result.OracleCalls == oracle.Calls);
        Assert.False(result.OracleIsExact);
        // The oracle's errors really reach the output: the approximate gradient is not the exact one.
        Assert.True(err > 0);
        // The split spends the budget: the a priori bound is within 1% of ε (only the quadratic terms are given up).
        Assert.True(result.AprioriBound >= 0.99 * epsilon, $"a priori bound {result.AprioriBound:E3} wastes the budget ε = {epsilon:E3}");
    }

    [Fact]
    public void Registered_approximate_oracles_stay_within_epsilon()
    {
        // "polynomial" and "range" register themselves when their branches are merged; each must keep the promise.
        var p = GradientTestData.Problem(32, 32, 2, 1.0, 61);
        var reference = AttentionLossReference.Gradient(p);
        double epsilon = 1e-2;
        foreach (var name in AttentionAlgorithms.Names)
        {
            var oracle = AttentionAlgorithms.Create(name);
            if (oracle.IsExact) continue;
            AttentionLossGradientResult result;
            try { result = AttentionLossGradient.Compute(p, oracle, epsilon); }
            catch (AttentionRefusedException) { continue; } // refusing is allowed; a wrong answer is not
            double err = TestData.MaxAbsDiff(result.Gradient.Span, reference);
            Assert.True(err <= epsilon, $"{name}: {err:E3} > ε {epsilon:E3}");
            Assert.True(result.GuaranteedBound <= epsilon);
        }
    }

    [Fact]
    public void Zero_A1_gives_a_zero_gradient_and_a_zero_bound()
    {
        var p = GradientTestData.Problem(8, 8, 2, 1.0, 71);
        var zero = new AttentionLossProblem(new DenseMatrix(new double[16], 8, 2), p.A2, p.A3, p.E, p.X, p.Y);
        var result = AttentionLossGradient.Compute(zero, new AdversarialOracle(1), 1e-3);
        Assert.All(result.Gradient.ToArray(), v => Assert.Equal(0.0, v));
        Assert.Equal(0, result.GuaranteedBound);
    }

    [Theory]
    [InlineData("a2")]
    [InlineData("a3")]
    [InlineData("e")]
    [InlineData("x")]
    [InlineData("y")]
    public void Shape_mismatches_name_the_argument(string bad)
    {
        int n = 6, d = 3;
        var a1 = GradientTestData.M(n, d, 1, 1);
        var a2 = bad == "a2" ? GradientTestData.M(n, d + 1, 1, 2) : GradientTestData.M(n, d, 1, 2);
        var a3 = bad == "a3" ? GradientTestData.M(n + 1, d, 1, 3) : GradientTestData.M(n, d, 1, 3);
        var e = bad == "e" ? GradientTestData.M(n - 1, d, 1, 4) : GradientTestData.M(n, d, 1, 4);
        var x = bad == "x" ? GradientTestData.M(d, d + 1, 1, 5) : GradientTestData.M(d, d, 1, 5);
        var y = bad == "y" ? GradientTestData.M(d + 1, d + 1, 1, 6) : GradientTestData.M(d, d, 1, 6);
        var ex = Assert.ThrowsAny<ArgumentException>(() => new AttentionLossProblem(a1, a2, a3, e, x, y));
        Assert.Equal(bad, ex.ParamName);
    }

    [Fact]
    public void Default_matrices_are_refused_by_name()
    {
        var ok = GradientTestData.M(4, 2, 1, 1);
        Assert.Equal("a1", Assert.Throws<ArgumentException>(() => new AttentionLossProblem(default, ok, ok, ok, GradientTestData.M(2, 2, 1, 2), GradientTestData.M(2, 2, 1, 3))).ParamName);
        Assert.Equal("rows", Assert.ThrowsAny<ArgumentException>(() => new DenseMatrix(new double[6], 0, 6)).ParamName);
        Assert.Equal("data", Assert.Throws<ArgumentException>(() => new DenseMatrix(new double[5], 2, 3)).ParamName);
    }

    [Fact]
    public void Non_square_x_says_so()
    {
        var ex = Assert.Throws<ArgumentException>(() => new AttentionLossProblem(GradientTestData.M(4, 2, 1, 1), GradientTestData.M(4, 2, 1, 2),
            GradientTestData.M(4, 2, 1, 3), GradientTestData.M(4, 2, 1, 4), GradientTestData.M(2, 3, 1, 5), GradientTestData.M(2, 2, 1, 6)));
        Assert.Equal("x", ex.ParamName);
        Assert.Contains("square", ex.Message);
    }

    [Fact]
    public void Bad_epsilon_and_threads_are_refused_by_name()
    {
        var p = GradientTestData.Problem(4, 4, 2, 1, 1);
        var exact = AttentionAlgorithms.Create("exact");
        Assert.Equal("epsilon", Assert.ThrowsAny<ArgumentException>(() => AttentionLossGradient.Compute(p, exact, 0)).ParamName);
        Assert.Equal("epsilon", Assert.ThrowsAny<ArgumentException>(() => AttentionLossGradient.Compute(p, exact, double.NaN)).ParamName);
        Assert.Equal("threads", Assert.ThrowsAny<ArgumentException>(() => AttentionLossGradient.Compute(p, exact, 1e-3, -1)).ParamName);
    }

    /// <summary>An approximate oracle that errs as much as it may: the float64 reference plus ±0.999·ε per entry
    /// (sign pattern seeded), certifying ε. It makes the error budget of the reduction do real work.</summary>
    private sealed class AdversarialOracle(int seed) : AttentionAlgorithm
    {
        private int _calls;
        public int Calls => _calls;
        public override string Name => "adversarial";
        public override bool IsExact => false;

        protected override HeadPlan PlanHead<T>(AttentionHead<T> head, PlanningContext context) =>
            Planned(head, context, new TrivialParameters("adversarial"), [new ErrorTerm("adversarial", context.Epsilon)], CostEstimate.Zero);

        protected override HeadExecution ExecuteHead<T>(HeadPlan plan, AttentionHead<T> head, Span<T> output, ExecutionContext context)
        {
            int call = Interlocked.Increment(ref _calls);
            var exact = FastAttention.Exact.ReferenceAttention.ComputeRows(head.Problem, head.Index, Enumerable.Range(0, head.N).ToArray());
            var rng = new Random(seed * 1000 + call);
            double eps = context.Epsilon * 0.999;
            for (int t = 0; t < exact.Length; t++)
                output[t] = T.CreateTruncating(exact[t] + (rng.Next(2) == 0 ? -eps : eps));
            return new HeadExecution([new ErrorTerm("adversarial", context.Epsilon * (1 - 1e-15))], plan.Parameters);
        }
    }
}
