using FastAttention.RangeSearch;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

/// <summary>
/// The working band T′ &lt; T (Lemma 3.2 checked a posteriori): a query first keeps only the keys within T′ of its
/// maximum, bounds the mass of the rest from the pruned nodes, and is answered again with T when that bound exceeds the
/// dropped-keys share. Every output is checked against the float64 reference.
/// </summary>
public class WorkingBandTests
{
    /// <summary>One key at the maximum (value 0) and a cluster of <paramref name="cluster"/> keys <paramref name="below"/>
    /// logits lower (value 1, many of them duplicates): the cluster lies inside the band T but outside a band of half of
    /// it, and weighs ≈ cluster·e^{−below} — far more than ε — so dropping it moves every output by that much.</summary>
    private static AttentionProblem<double> ClusterBelowTheMaximum(int n, int cluster, double below, bool causal)
    {
        int m = cluster + 1, d = 2, dv = 2;
        var q = new double[n * d];
        for (int i = 0; i < n; i++) { q[i * d] = 10; q[i * d + 1] = 0.01 * (i % 11 - 5); }
        var k = new double[m * d];
        var v = new double[m * dv];
        k[0] = 10; k[1] = 0; // logit 100 for every query
        for (int j = 1; j < m; j++)
        {
            k[j * d] = 10 - below / 10;                  // logit 100 − below (± 0.05·|y|)
            k[j * d + 1] = j % 3 == 0 ? 0.5 : 0.5 * ((j * 7919 % 1000) / 1000.0 - 0.5); // a third of them one point
            v[j * dv] = 1; v[j * dv + 1] = -1;
        }
        return new AttentionProblem<double>(q, k, v, n, m, d, dv, 1, 1.0, causal);
    }

    [Fact]
    public void A_cluster_just_outside_the_working_band_sends_every_query_back_to_T()
    {
        // m = 3001, ε = 1e−4: T ≈ 19.3, so the cluster 12 below the maximum is inside T and outside T′ = T/2; its mass
        // 3000·e^{−12} ≈ 0.018 moves the outputs by ≈ 0.018 if it were dropped.
        var par = RunWithinEpsilon(ClusterBelowTheMaximum(64, 3000, 12, causal: false), 0.5, 1e-4);
        Assert.True(par.ThresholdT > 12 && par.WorkingThreshold < 12, $"T = {par.ThresholdT}, T′ = {par.WorkingThreshold}");
        Assert.Equal(64, par.WidenedQueries);
    }

    /// <summary>'range' with the working band forced to <paramref name="fraction"/>·T (range plan only): asserts the output
    /// within ε of the float64 reference and the certificate within ε; returns the parameters.</summary>
    private static RangeFamilyParameters RunWithinEpsilon(AttentionProblem<double> p, double fraction, double eps)
    {
        var alg = (RangeSearchFamily)AttentionAlgorithms.Create("range");
        alg.AllowExactPlan = false;
        alg.WidthFraction = fraction;
        var r = alg.Compute(p, new AttentionSettings { Epsilon = eps, Threads = 2 });
        Assert.True(TestData.MaxAbsDiff(r.Output, RangeTestData.Reference(p)) <= eps);
        Assert.True(r.Certificate.ErrorBound <= eps);
        return RangeTestData.P(r);
    }

    [Fact]
    public void Causal_prefixes_widen_only_where_the_cluster_they_see_is_heavy()
    {
        // Query i sees the maximum key and i cluster keys (mass ≈ i·e^{−12}): the short prefixes keep T′, the long ones
        // exceed the share and are answered with T — through several position trees and the direct tail.
        var par = RunWithinEpsilon(ClusterBelowTheMaximum(3001, 3000, 12, causal: true), 0.5, 1e-4);
        Assert.True(par.WidenedQueries > 1000 && par.WidenedQueries < 3001, $"widened {par.WidenedQueries}");
    }

    [Theory]
    [InlineData(1, 10.0, false, 0.55)]
    [InlineData(1, 100.0, true, 0.3)]
    [InlineData(2, 1.0, false, 0.55)]
    [InlineData(2, 10.0, false, 0.55)]
    [InlineData(2, 100.0, true, 0.55)]
    [InlineData(2, 1e4, false, 0.3)]
    [InlineData(3, 10.0, true, 0.3)]
    [InlineData(3, 30.0, false, 0.55)]
    public void Narrow_working_bands_stay_within_epsilon(int d, double bound, bool causal, double fraction)
    {
        int n = 700, m = 900, dv = 2;
        var q = TestData.Uniform(n * d, bound, 31); var k = TestData.Uniform(m * d, bound, 32);
        for (int j = 0; j < m; j += 5) for (int c = 0; c < d; c++) k[(j + 1 < m ? j + 1 : j) * d + c] = k[j * d + c]; // duplicate pairs
        var v = TestData.Uniform(m * dv, 1e6, 33); // huge V: every dropped weight shows
        var p = new AttentionProblem<double>(q, k, v, n, m, d, dv, 1, 1.0, causal);
        var par = RunWithinEpsilon(p, fraction, 1e-2); // ε = 1e−8 relative to ‖V‖∞
        Assert.Equal(fraction * par.ThresholdT, par.WorkingThreshold!.Value, 12);
    }

    [Fact]
    public void The_planner_narrows_the_band_at_moderate_temperatures_and_the_work_drops()
    {
        // d = 2, B = 10, uniform: the keys below M − 0.75T weigh far less than m·e^{−T} assumes, so the band narrows, and
        // the counted work (expansions and keys summed directly) is below T's on the same problem.
        int n = 16384, d = 2;
        var p = RangeTestData.Uniform(n, n, d, 2, 10, 41, 1);
        var settings = new AttentionSettings { Epsilon = 1e-4, Threads = 2 };
        var auto = (RangeSearchFamily)AttentionAlgorithms.Create("range");
        auto.AllowExactPlan = false;
        var ra = auto.Compute(p, settings);
        var pa = RangeTestData.P(ra);
        Assert.True(pa.WorkingThreshold < pa.ThresholdT, $"T′ = {pa.WorkingThreshold}, T = {pa.ThresholdT}");
        Assert.True(TestData.MaxAbsDiff(ra.Output, RangeTestData.Reference(p)) <= 1e-4);
        var full = (RangeSearchFamily)AttentionAlgorithms.Create("range");
        full.AllowExactPlan = false;
        full.WidthFraction = 1;
        full.ForcedHalfWidth = pa.HalfWidthH;
        var narrow = (RangeSearchFamily)AttentionAlgorithms.Create("range");
        narrow.AllowExactPlan = false;
        narrow.WidthFraction = pa.WorkingThreshold / pa.ThresholdT;
        narrow.ForcedHalfWidth = pa.HalfWidthH;
        var pf = RangeTestData.P(full.Compute(p, settings));
        var pn = RangeTestData.P(narrow.Compute(p, settings));
        Assert.Null(pf.WorkingThreshold);
        double workFull = pf.ExpansionsPerQuery!.Value * pf.Monomials!.Value + pf.DirectKeysPerQuery!.Value;
        double workNarrow = pn.ExpansionsPerQuery!.Value * pn.Monomials!.Value + pn.DirectKeysPerQuery!.Value;
        Assert.True(workNarrow < 0.95 * workFull, $"narrow {workNarrow:G4}, full {workFull:G4}");
    }
}
