using FastAttention.Exact;
using FastAttention.Polynomial;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Polynomial;

public class PolynomialAttentionTests
{
    public static readonly double[] Bounds = [0.25, 0.5, 1, 1.5, 2];
    public static readonly int[] Dims = [1, 2, 4, 8];
    public static readonly double[] Epsilons = [1e-2, 1e-4, 1e-8];

    public static TheoryData<double, int, double, bool, bool> Grid()
    {
        var data = new TheoryData<double, int, double, bool, bool>();
        foreach (double b in Bounds)
            foreach (int d in Dims)
                foreach (double e in Epsilons)
                    foreach (bool causal in new[] { false, true })
                        foreach (bool f32 in new[] { false, true })
                            data.Add(b, d, e, causal, f32);
        return data;
    }

    /// <summary>Grid instance: n ≠ m for half of them, the paper's scale s = 1/d, entries uniform in [−B, B].</summary>
    private static (double[] Q, double[] K, double[] V, int N, int M) Instance(double b, int d, bool causal, int seed)
    {
        int n = causal ? 96 : 80, m = causal ? 72 : 112;
        return (TestData.Uniform(n * d, b, seed), TestData.Uniform(m * d, b, seed + 1), TestData.Uniform(m * d, b, seed + 2), n, m);
    }

    [Theory]
    [MemberData(nameof(Grid))]
    public void Guarantee_holds_on_the_grid_or_the_refusal_is_specific(double b, int d, double eps, bool causal, bool f32)
    {
        var (q, k, v, n, m) = Instance(b, d, causal, (int)(b * 100) + 10 * d);
        var alg = new PolynomialAttention();
        var settings = new AttentionSettings { Epsilon = eps, Threads = 1 };
        try
        {
            double err, bound;
            if (f32)
            {
                var p = new AttentionProblem<float>(TestData.ToFloat(q), TestData.ToFloat(k), TestData.ToFloat(v), n, m, d, d, 1, 1.0 / d, causal);
                var res = alg.Compute(p, settings);
                err = TestData.MaxAbsDiff(res.Output, ReferenceAttention.Compute(p));
                bound = res.Certificate.ErrorBound;
            }
            else
            {
                var p = new AttentionProblem<double>(q, k, v, n, m, d, d, 1, 1.0 / d, causal);
                var res = alg.Compute(p, settings);
                err = TestData.MaxAbsDiff(res.Output, ReferenceAttention.Compute(p));
                bound = res.Certificate.ErrorBound;
            }
            Assert.True(bound <= eps, $"certificate {bound:E3} > ε = {eps:E3}");
            Assert.True(err <= bound, $"measured error {err:E3} exceeds the certified bound {bound:E3} (ε = {eps:E3}, B = {b}, d = {d}, causal = {causal}, f32 = {f32})");
        }
        catch (AttentionRefusedException e)
        {
            AssertLegitimateRefusal(e, eps, f32, d);
        }
    }

    /// <summary>A grid refusal must be one of the specific, checkable reasons.</summary>
    private static void AssertLegitimateRefusal(AttentionRefusedException e, double eps, bool f32, int d)
    {
        Assert.Equal("polynomial", e.Algorithm);
        if (e.Message.Contains("float32 output rounding", StringComparison.Ordinal))
        {
            Assert.True(f32, e.Message);
            Assert.True(eps < 1e-7, e.Message); // 2⁻²⁴·‖V‖∞ ≥ 1.5e-8 here, above ε/2 only for ε = 1e-8
            return;
        }
        Assert.Contains("exceeds the rank budget 8192", e.Message);
        Assert.True(d >= 4, $"d = {d} should never need rank > 8192 with B ≤ 2, s = 1/d: {e.Message}");
    }

    [Fact]
    public void Most_of_the_grid_runs_rather_than_refusing()
    {
        int runs = 0, total = 0;
        foreach (double b in Bounds)
            foreach (int d in Dims)
                foreach (double e in Epsilons)
                    foreach (bool causal in new[] { false, true })
                    {
                        var (q, k, v, n, m) = Instance(b, d, causal, (int)(b * 100) + 10 * d);
                        var p = new AttentionProblem<double>(q, k, v, n, m, d, d, 1, 1.0 / d, causal);
                        total++;
                        try { PolynomialPlan.Create(HeadStats.Measure(p.Head(0)), e, PolynomialAttention.DefaultMaxRank); runs++; }
                        catch (AttentionRefusedException) { }
                    }
        Assert.True(runs >= 0.75 * total, $"only {runs} of {total} float64 grid instances run");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Identical_keys_at_the_corner(bool causal)
    {
        const int n = 90, m = 70, d = 4;
        var k = new double[m * d];
        Array.Fill(k, 1.5);
        var p = new AttentionProblem<double>(TestData.Uniform(n * d, 1.5, 3), k, TestData.Uniform(m * 3, 1, 4), n, m, d, 3, 1, 0.25, causal);
        TestData.AssertWithinEpsilon(new PolynomialAttention(), p, 1e-6);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Keys_at_plus_minus_B_and_values_with_alternating_signs(bool causal)
    {
        const int n = 128, m = 128, d = 2, dv = 3;
        var rng = new Random(5);
        var k = new double[m * d];
        for (int i = 0; i < k.Length; i++) k[i] = rng.Next(2) == 0 ? -2 : 2;
        var v = new double[m * dv];
        for (int j = 0; j < m; j++)
            for (int c = 0; c < dv; c++) v[j * dv + c] = (j % 2 == 0 ? 1 : -1) * (c + 1) * 0.5;
        var q = TestData.Uniform(n * d, 2, 6);
        var p = new AttentionProblem<double>(q, k, v, n, m, d, dv, 1, 0.5, causal);
        TestData.AssertWithinEpsilon(new PolynomialAttention(), p, 1e-8);
    }

    [Theory]
    [InlineData(200, 50, false)]
    [InlineData(200, 50, true)]
    [InlineData(50, 200, false)]
    [InlineData(50, 200, true)]
    public void More_queries_than_keys_and_the_reverse(int n, int m, bool causal)
    {
        var p = TestData.Problem(n, m, 3, 2, 1, 21, 1.0 / 3, causal);
        TestData.AssertWithinEpsilon(new PolynomialAttention(), p, 1e-5);
    }

    [Fact]
    public void Negative_and_zero_scales_and_zero_queries()
    {
        var p = TestData.Problem(64, 64, 2, 2, 1, 31, -0.7);
        TestData.AssertWithinEpsilon(new PolynomialAttention(), p, 1e-6);
        var zero = TestData.Problem(64, 48, 2, 2, 1, 32, 0.0, causal: true);
        TestData.AssertWithinEpsilon(new PolynomialAttention(), zero, 1e-9);
        var zq = new AttentionProblem<double>(new double[40 * 3], TestData.Uniform(30 * 3, 1, 33), TestData.Uniform(30 * 2, 1, 34), 40, 30, 3, 2);
        TestData.AssertWithinEpsilon(new PolynomialAttention(), zq, 1e-9);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Several_blocks_match_the_reference_on_sampled_rows_and_do_not_depend_on_threads(bool causal)
    {
        // n, m above the 4096-row block: exercises the block sums, the causal prefix and n ≠ m at the block edges.
        const int n = 9000, m = 8500, d = 2, dv = 2;
        var p = TestData.Problem(n, m, d, dv, 1, 41, 0.5, causal);
        var alg = new PolynomialAttention();
        var one = alg.Compute(p, new AttentionSettings { Epsilon = 1e-7, Threads = 1 });
        var two = alg.Compute(p, new AttentionSettings { Epsilon = 1e-7, Threads = 2 });
        Assert.Equal(one.Output, two.Output); // fixed blocks, fixed summation order
        int[] rows = [0, 1, 4095, 4096, 4097, 8191, 8192, 8499, 8500, 8501, 8999, 123, 5000, 7777];
        var reference = ReferenceAttention.ComputeRows(p, 0, rows);
        double err = 0;
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < dv; c++) err = Math.Max(err, Math.Abs(one.Output[rows[r] * dv + c] - reference[r * dv + c]));
        Assert.True(err <= one.Certificate.ErrorBound, $"error {err:E3} > bound {one.Certificate.ErrorBound:E3}");
        Assert.True(one.Certificate.ErrorBound <= 1e-7);
    }

    [Fact]
    public void Multiple_heads_each_meet_epsilon()
    {
        var p = TestData.Problem(60, 50, 3, 4, 1.2, 51, 1.0 / 3, causal: false, heads: 3);
        TestData.AssertWithinEpsilon(new PolynomialAttention(), p, 1e-6);
    }

    [Fact]
    public void Certificate_reports_degree_rank_and_a_valid_interval()
    {
        const int n = 100, d = 4;
        var p = TestData.Problem(n, n, d, d, 1, 61, 0.25);
        var c = new PolynomialAttention().Compute(p, new AttentionSettings { Epsilon = 1e-4 }).Certificate;
        string[] keys = ["degree", "rank", "rankPaperBound", "r", "epsA", "theoryDegree", "monomialCondition", "approximationBound", "roundingBound", "predictedFlops", "predictedBytes"];
        Assert.Equal(keys, c.Parameters!.Describe().Take(keys.Length).Select(kv => kv.Key).ToArray());
        var pp = c.ParametersOf<PolynomialParameters>();
        int g = pp.Degree, r = pp.Rank;
        Assert.Equal(LowRankFactors.Binomial(g + d, d), r);
        Assert.True(pp.RankPaperBound > r);
        double rr = pp.R;
        // R bounds every logit (Cauchy–Schwarz) and is no worse than Lemma 3.3's s·d·B².
        var (q, k, _) = p.Head(0).ToDouble();
        double maxLogit = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double x = 0;
                for (int t = 0; t < d; t++) x += q[i * d + t] * k[j * d + t];
                maxLogit = Math.Max(maxLogit, Math.Abs(0.25 * x));
            }
        Assert.InRange(rr, maxLogit, 0.25 * d * p.EntryBound * p.EntryBound);
        Assert.True(pp.EpsA < 1e-4);
        Assert.True(c.ErrorBound <= 1e-4 && c.ErrorBound > 0);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-1e-3)]
    [InlineData(double.NaN)]
    public void Refuses_non_positive_epsilon(double eps)
    {
        var p = TestData.Problem(16, 16, 2, 2, 1, 71);
        var outcome = new PolynomialAttention().TryPlan(p, new AttentionSettings { Epsilon = eps });
        Assert.False(outcome.Succeeded);
        Assert.Equal(RefusalReason.EpsilonInvalid, outcome.Refusal!.Reason);
        var e = Assert.Throws<AttentionRefusedException>(() => new PolynomialAttention().Compute(p, new AttentionSettings { Epsilon = eps }));
        Assert.Equal(RefusalReason.EpsilonInvalid, e.Reason);
    }

    [Fact]
    public void Refuses_a_missing_epsilon_instead_of_a_silent_default()
    {
        var p = TestData.Problem(16, 16, 2, 2, 1, 72);
        var outcome = new PolynomialAttention().TryPlan(p, new AttentionSettings());
        Assert.Equal(RefusalReason.EpsilonMissing, outcome.Refusal!.Reason);
        Assert.Contains("exact", outcome.Refusal.Alternatives);
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    public void Refuses_epsilon_of_one_or_more(double eps)
    {
        var p = TestData.Problem(16, 16, 2, 2, 1, 72);
        var e = Assert.Throws<AttentionRefusedException>(() => new PolynomialAttention().Compute(p, new AttentionSettings { Epsilon = eps }));
        Assert.Contains("≥ 1 is refused", e.Message);
    }

    [Fact]
    public void Refuses_a_rank_over_the_budget()
    {
        var p = TestData.Problem(64, 64, 4, 4, 1, 73, 0.25);
        var e = Assert.Throws<AttentionRefusedException>(() => new PolynomialAttention { MaxRank = 20 }.Compute(p, new AttentionSettings { Epsilon = 1e-4 }));
        Assert.Contains("exceeds the rank budget 20", e.Message);
        Assert.Contains("'range'", e.Message);
        // The same instance runs with the default budget.
        TestData.AssertWithinEpsilon(new PolynomialAttention(), p, 1e-4);
    }

    [Theory]
    [InlineData(6.0, 1e-6, "exp polynomial itself is out of reach")]  // R = 36: below float64's Chebyshev floor
    [InlineData(3.5, 1e-8, "exp polynomial itself is out of reach")]  // R ≈ 12: 2⁻⁵³·e^{2R} > ε
    [InlineData(3.75, 1e-2, "float64 rounding bound")]                // R ≈ 14: the interpolant exists, its monomial form is too ill-conditioned
    public void Refuses_an_interval_beyond_float64(double b, double eps, string detail)
    {
        var q = new double[8]; var k = new double[8];
        Array.Fill(q, b); Array.Fill(k, b);
        q[1] = -b; k[3] = -b;
        var p = new AttentionProblem<double>(q, k, TestData.Uniform(8, 1, 74), 8, 8, 1, 1, 1, 1.0);
        var e = Assert.Throws<AttentionRefusedException>(() => new PolynomialAttention().Compute(p, new AttentionSettings { Epsilon = eps }));
        Assert.Contains("beyond a certified float64 evaluation", e.Message);
        Assert.True(e.Message.Contains(detail, StringComparison.Ordinal), e.Message);
        Assert.Contains("range-search algorithm ('range')", e.Message);
    }

    [Fact]
    public void Refuses_float32_output_below_its_resolution()
    {
        var p = TestData.Problem(16, 16, 2, 2, 1, 75);
        var pf = new AttentionProblem<float>(TestData.ToFloat(p.Q.ToArray()), TestData.ToFloat(p.K.ToArray()), TestData.ToFloat(p.V.ToArray()), 16, 16, 2, 2);
        var e = Assert.Throws<AttentionRefusedException>(() => new PolynomialAttention().Compute(pf, new AttentionSettings { Epsilon = 1e-9 }));
        Assert.Contains("float32 output rounding", e.Message);
    }

    [Fact]
    public void Is_registered_as_polynomial()
    {
        Assert.Contains("polynomial", AttentionAlgorithms.Names);
        Assert.IsType<PolynomialAttention>(AttentionAlgorithms.Create("polynomial"));
    }
}
