using System.Globalization;
using FastAttention.Cli;
using FastAttention.Cli.Commands;
using FastAttention.Cli.Infrastructure;
using FastAttention.IO;

namespace FastAttention.Tests.Cli;

/// <summary>
/// Each experiment run end to end through the command line (in-process, like the other CLI tests) on tiny grids:
/// PNG and SVG written, CSVs with the documented columns and one row per point, progress on stderr, --out created,
/// bad options rejected with exit code 2. Timings are never asserted; what is asserted holds whatever the machine's load.
/// </summary>
public class ExperimentCommandTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static string NewOut() => Path.Combine(CliRunner.TempDir(), "not", "yet"); // created by the experiment

    private static void AssertFigure(string stem)
    {
        var png = File.ReadAllBytes(stem + ".png");
        Assert.True(png.Length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G', $"{stem}.png is not a PNG");
        string svg = File.ReadAllText(stem + ".svg");
        Assert.Contains("<svg", svg);
        Assert.EndsWith("</svg>", svg.TrimEnd());
    }

    private static (string[] Header, List<string[]> Rows) Csv(string path) => CsvReader.Read(path);

    private static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    [Fact]
    public void Transition_quick_run_writes_figure_csvs_and_a_verdict()
    {
        string dir = NewOut();
        var (code, stdout, stderr) = Run("experiment", "transition", "--quick", "--min-log-n", "6", "--max-log-n", "7", "--steps", "1", "--repeats", "2", "--threads", "1", "--out", dir);
        Assert.True(code == 0, stderr);
        Assert.Contains("verdict:", stdout);
        Assert.Contains("[transition", stderr);
        var (header, rows) = Csv(Path.Combine(dir, TransitionExperimentCommand.Csv));
        Assert.Equal(TransitionExperimentCommand.Columns, header);
        Assert.Equal(4, rows.Count); // 2 sizes × 2 repeats
        foreach (var r in rows)
        {
            double b = D(r[Array.IndexOf(header, "bStar")]), up = D(r[Array.IndexOf(header, "bUpper")]);
            Assert.InRange(b, 0, 4);
            Assert.True(up >= b);
        }
        var (sh, srows) = Csv(Path.Combine(dir, TransitionExperimentCommand.SummaryCsv));
        Assert.Equal(TransitionExperimentCommand.SummaryColumns, sh);
        Assert.Equal(2, srows.Count);
        foreach (var r in srows)
            Assert.InRange(D(r[Array.IndexOf(sh, "bStarMedian")]), D(r[Array.IndexOf(sh, "bStarMin")]), D(r[Array.IndexOf(sh, "bStarMax")]));
        Assert.Equal(["R", "epsilon", "degree", "lemma21Degree"], Csv(Path.Combine(dir, TransitionExperimentCommand.DegreeCsv)).Header);
        AssertFigure(Path.Combine(dir, TransitionExperimentCommand.FigureStem));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
    }

    [Fact]
    public void Scaling_quick_run_writes_every_repeat_the_fits_and_the_figure()
    {
        string dir = NewOut();
        var (code, stdout, stderr) = Run("experiment", "scaling", "--quick", "--algorithm", "vector", "--d", "1", "--min-log-n", "8", "--max-log-n", "9",
            "--repeats", "2", "--threads", "1", "--out", dir);
        Assert.True(code == 0, stderr);
        Assert.Contains("fitted exponent (seconds", stdout);
        Assert.Contains("[scaling", stderr);
        string stem = Path.Combine(dir, ScalingExperimentCommand.Stem("vector", 1, Distribution.Uniform));
        var (header, rows) = Csv(stem + ".csv");
        Assert.Equal(ScalingExperimentCommand.Columns, header);
        // 2 sizes, each timed --repeats times or, being cheap, up to 3× as often.
        var perSize = rows.GroupBy(r => r[0]).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(["256", "512"], perSize.Keys.Order());
        Assert.All(perSize.Values, c => Assert.InRange(c, 2, 6));
        foreach (var r in rows)
        {
            Assert.True(D(r[Array.IndexOf(header, "maxAbsError")]) <= 1e-6, "the error measured on sampled rows must be within ε = 1e-6");
            Assert.True(D(r[Array.IndexOf(header, "buildSeconds")]) > 0 && D(r[Array.IndexOf(header, "querySeconds")]) > 0);
            Assert.True(D(r[Array.IndexOf(header, "nodesVisitedPerQuery")]) > 0);
            Assert.Equal("false", r[Array.IndexOf(header, "exactExtrapolated")]); // n² ≤ 2^24: exact timed on all rows
        }
        var (fh, frows) = Csv(stem + "-fit.csv");
        Assert.Equal(ScalingExperimentCommand.FitColumns, fh);
        Assert.Contains(frows, r => r[0] == "seconds");
        Assert.Contains(frows, r => r[0] == "exact");
        AssertFigure(stem);
    }

    [Fact]
    public void Regimes_quick_run_writes_every_algorithm_per_cell_and_the_map()
    {
        string dir = NewOut();
        var (code, stdout, stderr) = Run("experiment", "regimes", "--quick", "--n", "256", "--d", "1,8", "--bounds", "0.5,1000", "--repeats", "1", "--threads", "1", "--out", dir);
        Assert.True(code == 0, stderr);
        Assert.Contains("[regimes", stderr);
        var (ch, cells) = Csv(Path.Combine(dir, RegimesExperimentCommand.CellsCsv));
        Assert.Equal(RegimesExperimentCommand.CellColumns, ch);
        Assert.Equal(4, cells.Count);
        var (rh, runs) = Csv(Path.Combine(dir, RegimesExperimentCommand.RunsCsv));
        Assert.Equal(RegimesExperimentCommand.RunColumns, rh);
        int candidates = RegimeMeasurement.Candidates().Count;
        Assert.Equal(4 * (candidates + 1), runs.Count); // every algorithm and the planner, per cell
        foreach (var r in runs.Where(r => r[Array.IndexOf(rh, "status")] == "ran" && r[Array.IndexOf(rh, "algorithm")] != "planner"))
            Assert.Equal("true", r[Array.IndexOf(rh, "withinEpsilon")]);
        AssertFigure(Path.Combine(dir, RegimesExperimentCommand.FigureStem));
    }

    [Fact]
    public void Regime_cells_winners_on_a_tiny_grid()
    {
        var run = new ExperimentRun(CliRunner.TempDir(), 1, true, 1, 1, TextWriter.Null, TextWriter.Null);
        var cells = RegimesExperimentCommand.Run(run, new RegimesExperimentCommand.Config(256, [1, 8], [1000], 1e-4,
            RegimesExperimentCommand.ScaleRule.Parse("1/d"), 1));
        var byCell = cells.ToDictionary(c => (c.D, c.Bound));
        AlgorithmRun Of((int, double) cell, string alg) => byCell[cell].Measurement.Runs.Single(r => r.Algorithm == alg);

        // d = 8, B = 1000: the range family refuses d > 4, lowrank the full rank of random data, polynomial float64's
        // reach on logits up to 10⁶: every approximate algorithm refuses, so the cell is exact.
        var refused = byCell[(8, 1000)];
        Assert.True(refused.Measurement.AllRefused);
        Assert.Equal("exact", refused.Measurement.Pick.Algorithm);
        Assert.Equal(RefusalReason.HeadDimension, Of((8, 1000), "range").Reason);
        Assert.Equal(RefusalReason.HeadDimension, Of((8, 1000), "vector").Reason);
        Assert.Equal(RefusalReason.RankBudget, Of((8, 1000), "lowrank").Reason);
        Assert.Equal(RefusalReason.Float64Reach, Of((8, 1000), "polynomial").Reason);
        // d = 1, B = 1000: polynomial refuses, the d = 1 algorithms certify; whatever ran is within ε on the sampled rows.
        Assert.Equal(RefusalReason.Float64Reach, Of((1, 1000), "polynomial").Reason);
        Assert.Contains(Of((1, 1000), "vector").Status, new[] { RunStatus.Ran, RunStatus.SlowerOnSample });
        foreach (var c in cells)
        {
            foreach (var r in c.Measurement.Runs.Where(r => r.Status == RunStatus.Ran))
                Assert.True(r.MaxAbsError <= 1e-4, $"{r.Algorithm} at d = {c.D}, B = {c.Bound}: error {r.MaxAbsError}");
            // The pick is exact, or an algorithm that ran within ε and was measured faster than exact.
            var pick = c.Measurement.Pick;
            if (pick.Algorithm == "exact") continue;
            Assert.True(pick.MaxAbsError <= 1e-4, $"pick {pick.Algorithm} at d = {c.D}, B = {c.Bound}: error {pick.MaxAbsError}");
            if (pick.Source == "fastest measured")
            {
                var r = c.Measurement.Runs.Single(x => x.Algorithm == pick.Algorithm);
                Assert.Equal(RunStatus.Ran, r.Status);
                Assert.True(r.Seconds.Median < c.Measurement.ExactSeconds.Median);
                Assert.Equal(r.Seconds.Median, c.Measurement.Runs.Where(x => x.Status == RunStatus.Ran && x.WithinEpsilon).Min(x => x.Seconds.Median));
            }
        }
    }

    [Fact]
    public void Heads_run_reports_statistics_and_verdicts_per_head_over_a_given_map()
    {
        string inputs = CliRunner.TempDir(), dir = NewOut();
        // Two heads of n = 96, d = 4: head 0 has Q and K of rank 1 (every row a multiple of (1, −1, 2, 0.5)), head 1 random.
        int h = 2, n = 96, d = 4;
        var rng = new Random(5);
        var q = new double[h * n * d]; var k = new double[h * n * d]; var v = new double[h * n * d];
        double[] dir0 = [1, -1, 2, 0.5];
        for (int i = 0; i < n; i++)
        {
            double a = rng.NextDouble() - 0.5, b = rng.NextDouble() - 0.5;
            for (int c = 0; c < d; c++) { q[i * d + c] = a * dir0[c]; k[i * d + c] = b * dir0[c]; }
        }
        for (int i = n * d; i < h * n * d; i++) { q[i] = rng.NextDouble() - 0.5; k[i] = rng.NextDouble() - 0.5; }
        for (int i = 0; i < v.Length; i++) v[i] = rng.NextDouble() - 0.5;
        NpyFile.Write(Path.Combine(inputs, "q.npy"), q, [h, n, d]);
        NpyFile.Write(Path.Combine(inputs, "k.npy"), k, [h, n, d]);
        NpyFile.Write(Path.Combine(inputs, "v.npy"), v, [h, n, d]);
        // A two-cell map in the format 'experiment regimes' writes.
        var map = new CsvTable(RegimesExperimentCommand.CellColumns);
        map.Add(4096, 1, 0.5, 1.0, 0.25, 1e-4, "polynomial", "fastest measured", 20.0, 0.001, 0.02, false, 1e-7, true, false, "polynomial", 20.0);
        map.Add(4096, 4, 0.5, 0.25, 0.2, 1e-4, "exact", "fastest measured", 1.0, 0.02, 0.02, false, double.NaN, null, true, null, double.NaN);
        string mapPath = Path.Combine(inputs, "regimes-cells.csv");
        map.Write(mapPath);

        var (code, stdout, stderr) = Run("experiment", "heads", "--q", Path.Combine(inputs, "q.npy"), "--k", Path.Combine(inputs, "k.npy"), "--v", Path.Combine(inputs, "v.npy"),
            "--epsilon", "1e-3", "--map", mapPath, "--repeats", "1", "--threads", "1", "--out", dir);
        Assert.True(code == 0, stderr);
        Assert.Contains("[heads", stderr);
        var (hh, heads) = Csv(Path.Combine(dir, HeadsExperimentCommand.HeadsCsv));
        Assert.Equal(HeadsExperimentCommand.Columns, hh);
        Assert.Equal(2, heads.Count);
        Assert.Equal("1", heads[0][Array.IndexOf(hh, "rankQ")]);
        Assert.Equal("1", heads[0][Array.IndexOf(hh, "rankK")]);
        Assert.Equal("4", heads[1][Array.IndexOf(hh, "rankQ")]);
        Assert.Equal(0.5, D(heads[0][Array.IndexOf(hh, "scale")]), 12); // 1/√d
        foreach (var r in heads)
        {
            Assert.InRange(D(r[Array.IndexOf(hh, "normalizedEntropy")]), 0, 1);
            Assert.True(D(r[Array.IndexOf(hh, "largestLogit")]) <= D(r[Array.IndexOf(hh, "logitBound")]));
        }
        var (ah, algs) = Csv(Path.Combine(dir, HeadsExperimentCommand.AlgorithmsCsv));
        Assert.Equal(HeadsExperimentCommand.AlgorithmColumns, ah);
        Assert.Equal(2 * RegimeMeasurement.Candidates().Count, algs.Count);
        // d = 4 > 1: the d = 1 algorithms refuse with their code on both heads.
        Assert.All(algs.Where(r => r[1] == "vector"), r => Assert.Equal("HeadDimension", r[Array.IndexOf(ah, "reason")]));
        AssertFigure(Path.Combine(dir, HeadsExperimentCommand.FigureStem));
    }

    [Theory]
    [InlineData("--d", "experiment", "regimes", "--d", "1,x")]
    [InlineData("--bounds", "experiment", "regimes", "--bounds", "0,3")]
    [InlineData("--scale", "experiment", "regimes", "--scale", "1/e")]
    [InlineData("--algorithms", "experiment", "regimes", "--algorithms", "range,magic")]
    [InlineData("--repeats", "experiment", "scaling", "--repeats", "0")]
    [InlineData("--algorithm", "experiment", "scaling", "--algorithm", "exact")]
    [InlineData("--steps", "experiment", "transition", "--steps", "0")]
    [InlineData("--q", "experiment", "heads", "--q", "/nonexistent/q.npy", "--k", "/nonexistent/k.npy", "--v", "/nonexistent/v.npy")]
    public void Bad_options_exit_2_with_one_line_naming_the_option(string option, params string[] args)
    {
        var (code, stdout, stderr) = Run(args);
        Assert.Equal(2, code);
        Assert.Contains(option, stderr);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", stderr);
        Assert.Equal("", stdout);
    }

    [Fact]
    public void Out_that_is_a_file_is_rejected()
    {
        string file = Path.Combine(CliRunner.TempDir(), "a-file");
        File.WriteAllText(file, "x");
        var (code, _, stderr) = Run("experiment", "transition", "--out", file);
        Assert.Equal(2, code);
        Assert.Contains("--out", stderr);
    }
}
