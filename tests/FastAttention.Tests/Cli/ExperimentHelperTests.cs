using FastAttention.Cli.Commands;
using FastAttention.Cli.Infrastructure;
using FastAttention.Cli.Rendering;

namespace FastAttention.Tests.Cli;

/// <summary>The experiments' fit, bisection, spread, CSV and statistics helpers against data with known answers.</summary>
public class ExperimentHelperTests
{
    [Fact]
    public void Line_fit_matches_the_hand_computed_slope_standard_error_and_interval()
    {
        // x = 0..3, y = 0, 1, 1, 3: b = 4.5/5 = 0.9, a = 1.25 − 1.35 = −0.1, residuals 0.1, 0.2, −0.7, 0.4 (SS = 0.7),
        // σ = √(0.7/2), SE(b) = σ/√5, t(0.975, 2) = 4.302652729911275.
        var fit = Fit.Line([0, 1, 2, 3], [0, 1, 1, 3]);
        Assert.Equal(0.9, fit.Slope, 12);
        Assert.Equal(-0.1, fit.Intercept, 12);
        Assert.Equal(Math.Sqrt(0.35), fit.ResidualStd, 12);
        Assert.Equal(Math.Sqrt(0.35) / Math.Sqrt(5), fit.SlopeStdError, 12);
        var (lo, hi) = fit.SlopeInterval();
        Assert.Equal(0.9 - 4.302652729911275 * Math.Sqrt(0.07), lo, 9);
        Assert.Equal(0.9 + 4.302652729911275 * Math.Sqrt(0.07), hi, 9);
        Assert.Equal(4, fit.Count);
    }

    [Fact]
    public void Power_law_recovers_a_known_exponent_and_its_interval_covers_it_under_noise()
    {
        var n = new double[] { 1024, 2048, 4096, 8192, 16384 };
        var exact = Fit.PowerLaw(n, n.Select(x => 3e-9 * Math.Pow(x, 1.5)).ToArray());
        Assert.Equal(1.5, exact.Slope, 9);
        Assert.Equal(0, exact.SlopeStdError, 9);
        // ±5 % multiplicative noise, alternating: the 95 % interval must contain 1.25 and be narrower than ±0.2.
        var noisy = Fit.PowerLaw(n, n.Select((x, i) => 2e-8 * Math.Pow(x, 1.25) * (i % 2 == 0 ? 1.05 : 0.95)).ToArray());
        var (lo, hi) = noisy.SlopeInterval();
        Assert.InRange(1.25, lo, hi);
        Assert.True(hi - lo < 0.4, $"interval [{lo}, {hi}]");
        Assert.Throws<ArgumentException>(() => Fit.PowerLaw([1, 2], [1, 0]));
    }

    [Fact]
    public void Proportional_fit_through_the_origin_reports_its_residuals()
    {
        var fit = Fit.Proportional([1, 2, 3], [0.7, 1.4, 2.1]);
        Assert.Equal(0.7, fit.Coefficient, 12);
        Assert.Equal(0, fit.RmsResidual, 12);
        // y = x + (0, 0, 1.4): c = (1 + 4 + 9·(1 + 1.4/3))/14, residuals y − c·x.
        var off = Fit.Proportional([1, 2, 3], [1, 2, 4.4]);
        double c = (1 + 4 + 3 * 4.4) / 14;
        Assert.Equal(c, off.Coefficient, 12);
        Assert.Equal(4.4 - 3 * c, off.Residuals[2], 12);
    }

    [Fact]
    public void Bisection_brackets_the_edge_of_a_monotone_predicate()
    {
        int calls = 0;
        var edge = Bisection.LargestTrue(x => { calls++; return x <= 1.3; }, 0, 4, 10);
        Assert.InRange(1.3, edge.Lower, edge.Upper);
        Assert.Equal(4.0 / 1024, edge.Upper - edge.Lower, 12);
        Assert.True(edge.TrueSomewhere);
        Assert.False(edge.TrueAtHi);
        Assert.Equal(11, calls);
        Assert.Equal(11, edge.Evaluations);

        var always = Bisection.LargestTrue(_ => true, 0, 4, 10);
        Assert.True(always.TrueAtHi);
        Assert.Equal(4, always.Lower);
        Assert.Equal(1, always.Evaluations);

        var never = Bisection.LargestTrue(_ => false, 0, 4, 5);
        Assert.False(never.TrueSomewhere);
        Assert.Equal(0, never.Lower);
        Assert.Equal(4.0 / 32, never.Upper, 12);
    }

    [Fact]
    public void Spread_is_the_median_and_range()
    {
        var odd = Spread.Of([3, 1, 2]);
        Assert.Equal((2.0, 1.0, 3.0, 3), (odd.Median, odd.Min, odd.Max, odd.Count));
        var even = Spread.Of([4, 1, 3, 2, double.NaN]);
        Assert.Equal((2.5, 1.0, 4.0, 4), (even.Median, even.Min, even.Max, even.Count));
        Assert.Equal(5.0, even.Times(2).Median);
    }

    [Fact]
    public void Transition_analysis_recognises_sqrt_log_growth_and_non_monotone_data()
    {
        var cfg = new TransitionExperimentCommand.Config(8, 14, 4, 4, 7, 16384);
        List<TransitionExperimentCommand.Trial> Trials(Func<int, int, double> bstar) =>
            [.. from k in Enumerable.Range(8, 7) from r in Enumerable.Range(0, 3)
                select new TransitionExperimentCommand.Trial(k, r, r, 1, 0, bstar(k, r), bstar(k, r) + cfg.Resolution, "time", 0.1, 5, 100, 1)];
        // B* = 0.5·√(ln n) ± 0.01 (repeat r shifts it by (r − 1)·0.01): the fit is c = 0.5 and lies in every spread.
        var grows = TransitionExperimentCommand.Analyse(Trials((k, r) => 0.5 * Math.Sqrt(k * Math.Log(2)) + (r - 1) * 0.01), cfg);
        Assert.NotNull(grows.Fit);
        Assert.Equal(0.5, grows.Fit!.Coefficient, 9);
        Assert.True(grows.Monotone);
        Assert.True(grows.GrowsLikeSqrtLog);
        Assert.Contains("grows like √log n within the measured spread", grows.Verdict);
        // B* = 0.3·k: grows linearly in log n, far outside the spread of a √log n fit; still monotone.
        var linear = TransitionExperimentCommand.Analyse(Trials((k, _) => 0.3 * k), cfg);
        Assert.True(linear.Monotone);
        Assert.False(linear.GrowsLikeSqrtLog);
        Assert.Contains("does NOT grow like √log n", linear.Verdict);
        // A drop at k = 12 larger than the spread and the resolution: not monotone.
        var drop = TransitionExperimentCommand.Analyse(Trials((k, _) => k == 12 ? 0.5 : 2.0), cfg);
        Assert.False(drop.Monotone);
        Assert.Contains("NOT monotone", drop.Verdict);
    }

    [Fact]
    public void Scaling_fits_recover_the_exponents_of_synthetic_sizes()
    {
        var sizes = Enumerable.Range(10, 6).Select(k =>
        {
            int n = 1 << k;
            var samples = Enumerable.Range(0, 3).Select(r => new ScalingExperimentCommand.Sample(n, r, 1e-8 * Math.Pow(n, 1.2) * (1 + 0.01 * (r - 1)),
                5e-9 * Math.Pow(n, 1.1), 0, 1e-8 * n, 1e-9 * Math.Pow(n, 1.3), 20, 10, 5)).ToList();
            return new ScalingExperimentCommand.Size(n, samples, new Spread(1e-10 * n * (double)n, 1e-10 * n * (double)n, 1e-10 * n * (double)n, 3), true, 0, 0);
        }).ToList();
        var fits = ScalingExperimentCommand.Fits(sizes).ToDictionary(f => f.Series);
        Assert.InRange(1.2, fits["seconds"].Interval.Lo, fits["seconds"].Interval.Hi);
        Assert.Equal(1.2, fits["seconds"].Fit.Slope, 2);
        Assert.Equal(1.1, fits["cpu seconds"].Fit.Slope, 9);
        Assert.Equal(1.0, fits["build"].Fit.Slope, 9);
        Assert.Equal(1.3, fits["query"].Fit.Slope, 9);
        Assert.Equal(2.0, fits["exact"].Fit.Slope, 9);
        Assert.Equal(18, fits["seconds"].Fit.Count);
    }

    [Fact]
    public void Csv_quotes_what_needs_quoting_and_reads_back()
    {
        string dir = CliRunner.TempDir(), path = Path.Combine(dir, "t.csv");
        var t = new CsvTable("a", "b", "c", "d");
        t.Add(1.5, double.NaN, "x, \"y\"", true);
        t.Add(-2, null, "plain", false);
        Assert.Throws<ArgumentException>(() => t.Add(1, 2));
        t.Write(path);
        Assert.Equal("a,b,c,d\n1.5,,\"x, \"\"y\"\"\",true\n-2,,plain,false\n", File.ReadAllText(path));
        var (header, rows) = CsvReader.Read(path);
        Assert.Equal(["a", "b", "c", "d"], header);
        Assert.Equal(["1.5", "", "x, \"y\"", "true"], rows[0]);
        Assert.Equal(2, rows.Count);
    }

    [Fact]
    public void Head_statistics_have_known_values_on_constructed_heads()
    {
        // Q = 0: every logit is 0, attention is uniform (entropy ln m, normalised 1); K of rank 1 (k_j = j·(1, 2, 0)).
        int n = 8, m = 16, d = 3;
        var q = new double[n * d];
        var k = new double[m * d];
        for (int j = 0; j < m; j++) { k[j * d] = j; k[j * d + 1] = 2 * j; }
        var v = Enumerable.Range(0, m).Select(j => (double)j).ToArray();
        var p = new AttentionProblem<double>(q, k, v, n, m, d, 1, 1, 0.5);
        var s = HeadsExperimentCommand.Statistics(p, 1e-3, 100, 1); // ranks at ε = 1e-3
        Assert.Equal(0, s.LargestLogit);
        Assert.Equal(Math.Log(m), s.Entropy, 12);
        Assert.Equal(1, s.NormalizedEntropy, 12);
        // Ranks at ε (the low-rank method's criterion): with Q = 0 no logit depends on K, so both truncate to rank 0.
        Assert.Equal(0, s.RankQ);
        Assert.Equal(0, s.RankK);
        Assert.Equal(30, s.KMax);
        Assert.Equal(n, s.StatsRows);
        // One query q = (1, 0, 0) against those keys at s = 0.5: the largest logit is 0.5·15, the row's range 7.5.
        q[0] = 1;
        var s2 = HeadsExperimentCommand.Statistics(new AttentionProblem<double>(q, k, v, n, m, d, 1, 1, 0.5), 1e-3, 100, 1);
        Assert.Equal(7.5, s2.LargestLogit, 12);
        Assert.Equal(7.5 / n, s2.MeanRowLogitRange, 12);
        Assert.Equal(1, s2.RankQ);
        Assert.Equal(1, s2.RankK);
        Assert.Equal(0.5 * 1 * Math.Sqrt(15 * 15 + 30 * 30), s2.LogitBound, 9);
    }

    [Fact]
    public void Regime_axes_place_grid_values_on_their_cells_and_interpolate_between()
    {
        var axes = new RegimeAxes([1, 2, 4, 16], [0.5, 3, 100]);
        Assert.Equal(0, axes.X(1), 12);
        Assert.Equal(2, axes.X(4), 12);
        Assert.Equal(2.5, axes.X(8), 12);   // log 8 is halfway between log 4 and log 16
        Assert.Equal(3.5, axes.X(1000), 12); // clamped half a cell beyond the end
        Assert.Equal(1, axes.Y(3), 12);
        Assert.Equal(-0.5, axes.Y(1e-9), 12);
        Assert.Equal(4, RegimeMap.LogStar(65536));
        Assert.Equal(3, RegimeMap.LogStar(16));
    }
}
