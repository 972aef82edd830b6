using System.CommandLine;
using System.Globalization;
using FastAttention.Cli.Infrastructure;
using FastAttention.Cli.Rendering;
using ScottPlot;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn experiment regimes</c>: the regime map, measured. Over a grid of head dimensions d × entry bounds B at
/// fixed n (= m) and ε, each cell draws Q, K uniform in [−B, B] (V uniform in [−valueBound, valueBound]) with
/// Alman–Song's scale s = 1/d by default (so the logits are at most B² whatever d), runs every approximate algorithm
/// through plan → execute (<see cref="RegimeMeasurement"/>), and records the planner's pick, its measured speedup over
/// the exact kernel and its error against the float64 reference on sampled rows. The heat map shows the winner and
/// speedup per cell, the cells where every approximate algorithm refuses, and the theory's boundaries over it.
/// </summary>
internal static class RegimesExperimentCommand
{
    public const string RunsCsv = "regimes.csv", CellsCsv = "regimes-cells.csv", FigureStem = "regimes";

    /// <summary>regimes.csv: one row per cell and algorithm (and one per cell for the planner, algorithm "planner").</summary>
    public static readonly string[] RunColumns =
        ["n", "d", "bound", "scale", "logitBound", "epsilon", "algorithm", "status", "reason", "seconds", "secondsMin", "secondsMax",
         "predictedSeconds", "exactSeconds", "speedup", "errorBound", "maxAbsError", "withinEpsilon", "chosen", "detail"];

    /// <summary>regimes-cells.csv: one row per cell.</summary>
    public static readonly string[] CellColumns =
        ["n", "d", "bound", "scale", "logitBound", "epsilon", "winner", "pickSource", "speedup", "seconds", "exactSeconds", "exactExtrapolated",
         "maxAbsError", "withinEpsilon", "allRefused", "fastestMeasured", "fastestMeasuredSpeedup"];

    public static Command Create()
    {
        var common = new ExperimentOptions($"{RunsCsv}, {CellsCsv}, {FigureStem}.png and {FigureStem}.svg");
        var n = new Option<int>("--n") { Description = "Queries = keys per cell (--quick: 4096).", DefaultValueFactory = _ => 1 << 16 };
        var ds = new Option<string>("--d") { Description = "Head dimensions, comma-separated (--quick: 1,2,4,16).", DefaultValueFactory = _ => "1,2,3,4,8,16,64" };
        var bounds = new Option<string>("--bounds") { Description = "Entry bounds B, comma-separated (--quick: 0.5,3,100).", DefaultValueFactory = _ => "0.25,0.5,1,2,3,10,100,1000,10000" };
        var epsilon = new Option<double>("--epsilon") { Description = "Target ‖·‖∞ error ε.", DefaultValueFactory = _ => 1e-4 };
        var scale = new Option<string>("--scale") { Description = "Logit scale: 1/d (Alman–Song, default), 1/sqrt(d) (PyTorch) or a number.", DefaultValueFactory = _ => "1/d" };
        var valueBound = new Option<double>("--value-bound") { Description = "V uniform in [−this, this].", DefaultValueFactory = _ => 1 };
        var algorithms = new Option<string?>("--algorithms") { Description = "Approximate algorithms to measure, comma-separated (default: every registered one; the planner 'auto' still considers all)." };
        var cmd = new Command("regimes", "The regime map: speedup of the best certified algorithm over exact on a grid of head dimension × entry bound, with the theory's boundaries.")
            { n, ds, bounds, epsilon, scale, valueBound, algorithms };
        common.AddTo(cmd);
        cmd.SetAction(r =>
        {
            var run = common.Parse(r);
            int nn = QuickDefaults.Pick(r, n, run.Quick, 4096);
            CommonOptions.AtLeast("--n", nn, 16);
            if (nn > 1 << 22) throw new UsageException($"--n must be at most 2^22 = {1 << 22} (got {nn}).");
            var dList = ParseList<int>("--d", QuickDefaults.Pick(r, ds, run.Quick, "1,2,4,16"), s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 1 && v <= 1024 ? v : (int?)null, "integers in [1, 1024]");
            var bList = ParseList<double>("--bounds", QuickDefaults.Pick(r, bounds, run.Quick, "0.5,3,100"), s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0 && double.IsFinite(v) ? v : (double?)null, "positive numbers");
            double eps = r.GetValue(epsilon), vb = r.GetValue(valueBound);
            CommonOptions.Positive("--epsilon", eps); CommonOptions.Positive("--value-bound", vb);
            var sc = ScaleRule.Parse(r.GetValue(scale)!);
            var only = RegimeMeasurement.ParseAlgorithms(r.GetValue(algorithms));
            Run(run, new Config(nn, dList, bList, eps, sc, vb, only));
            return 0;
        });
        return cmd;
    }

    /// <summary>The logit scale as a function of d.</summary>
    public sealed record ScaleRule(string Text, Func<int, double> Of, bool OneOverD)
    {
        public static ScaleRule Parse(string s) => s.Replace(" ", "", StringComparison.Ordinal).ToLowerInvariant() switch
        {
            "1/d" => new("1/d", d => 1.0 / d, true),
            "1/sqrt(d)" or "1/√d" => new("1/sqrt(d)", d => 1 / Math.Sqrt(d), false),
            var t when double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v) && v != 0 => new(t, _ => v, false),
            _ => throw new UsageException($"--scale must be 1/d, 1/sqrt(d) or a nonzero number (got '{s}')."),
        };
    }

    public sealed record Config(int N, IReadOnlyList<int> Ds, IReadOnlyList<double> Bounds, double Epsilon, ScaleRule Scale, double ValueBound,
        IReadOnlyCollection<string>? Algorithms = null);

    public sealed record Cell(int D, double Bound, double Scale, double LogitBound, ProblemMeasurement Measurement)
    {
        public AlgorithmRun? FastestMeasured => Measurement.Runs.Where(r => r.Status == RunStatus.Ran && r.WithinEpsilon).MinBy(r => r.Seconds.Median);
        public MapCell ToMap() => new(D, Bound, Measurement.Pick.Algorithm, Measurement.Speedup, Measurement.AllRefused, FastestMeasured?.Algorithm,
            FastestMeasured is { } f ? Measurement.ExactSeconds.Median / f.Seconds.Median : double.NaN);
    }

    public static IReadOnlyList<Cell> Run(ExperimentRun run, Config c)
    {
        const string Name = "regimes";
        run.CreateDir();
        var o = run.Output;
        o.WriteLine($"regimes: n = m = {c.N}, ε = {c.Epsilon:G3}, s = {c.Scale.Text}, Q, K uniform in [−B, B], V uniform in [−{c.ValueBound}, {c.ValueBound}], " +
                    $"{run.Repeats} timed runs per algorithm and cell; planner: {(RegimeMeasurement.HasPlanner ? "the library's 'auto'" : "fastest measured certified algorithm ('auto' is not registered)")}; machine rates: {RatesCache.LoadOrDefault().Source}.");
        o.WriteLine($"{"d",4} {"B",8} {"R ≤",9} {"winner",11} {"speedup",8} {"seconds",10} {"exact [s]",10} {"max error",10}  every algorithm");
        var cells = new List<Cell>();
        int total = c.Ds.Count * c.Bounds.Count, done = 0;
        foreach (int d in c.Ds)
        {
            run.Progress(Name, $"d = {d}: warm-up of every algorithm");
            RegimeMeasurement.WarmUp(BenchRangeMeasurement.Make(Math.Min(c.N, 1024), d, c.Bounds[0], c.Scale.Of(d), Distribution.Uniform, c.ValueBound, run.Seed + 99), c.Epsilon, run.Threads, c.Algorithms);
            foreach (double b in c.Bounds)
            {
                done++;
                double s = c.Scale.Of(d);
                var problem = BenchRangeMeasurement.Make(c.N, d, b, s, Distribution.Uniform, c.ValueBound, run.Seed + d);
                double logitBound = Planning.HeadStatistics.Measure(problem, 0, null).LogitBound;
                run.Progress(Name, $"cell {done}/{total}: d = {d}, B = {b}");
                var m = RegimeMeasurement.Run(problem, c.Epsilon, run.Threads, run.Repeats, run.Seed, progress: a => run.Progress(Name, $"  d = {d}, B = {b}: {a}"), only: c.Algorithms);
                var cell = new Cell(d, b, s, logitBound, m);
                cells.Add(cell);
                string all = string.Join(" ", m.Runs.Select(x => x.Status switch
                {
                    RunStatus.Ran => $"{x.Algorithm}={m.ExactSeconds.Median / x.Seconds.Median:0.#}×",
                    RunStatus.SlowerOnSample => $"{x.Algorithm}=slow",
                    _ => $"{x.Algorithm}:{x.Reason}",
                }));
                o.WriteLine($"{d,4} {b,8:G4} {logitBound,9:G3} {m.Pick.Algorithm,11} {m.Speedup,7:F1}× {m.Pick.Seconds.Median,10:G3} {m.ExactSeconds.Median,10:G3} {m.Pick.MaxAbsError,10:E2}  {all}");
            }
        }
        Write(run, c, cells);
        int fast = cells.Count(x => x.Measurement.Pick.Algorithm != "exact" && x.Measurement.Speedup >= 1), refused = cells.Count(x => x.Measurement.AllRefused);
        o.WriteLine($"{fast} of {cells.Count} cells have a certified algorithm faster than exact; in {refused} every approximate algorithm refuses.");
        o.WriteLine($"wrote {run.PathOf(RunsCsv)}, {run.PathOf(CellsCsv)}, {run.PathOf(FigureStem)}.png and .svg");
        return cells;
    }

    private static void Write(ExperimentRun run, Config c, List<Cell> cells)
    {
        var runs = new CsvTable(RunColumns);
        var table = new CsvTable(CellColumns);
        foreach (var x in cells)
        {
            var m = x.Measurement;
            foreach (var a in m.Runs)
                runs.Add(c.N, x.D, x.Bound, x.Scale, x.LogitBound, c.Epsilon, a.Algorithm, a.StatusName, a.Reason?.ToString(),
                    a.Seconds.Count > 0 ? a.Seconds.Median : double.NaN, a.Seconds.Count > 0 ? a.Seconds.Min : double.NaN, a.Seconds.Count > 0 ? a.Seconds.Max : double.NaN,
                    a.PredictedSeconds, m.ExactSeconds.Median, a.Status == RunStatus.Ran ? m.ExactSeconds.Median / a.Seconds.Median : double.NaN,
                    a.ErrorBound, a.MaxAbsError, a.Status == RunStatus.Ran ? a.WithinEpsilon : null, a.Algorithm == m.Pick.Algorithm, a.Detail);
            runs.Add(c.N, x.D, x.Bound, x.Scale, x.LogitBound, c.Epsilon, "planner", "ran", null, m.Pick.Seconds.Median, m.Pick.Seconds.Min, m.Pick.Seconds.Max,
                double.NaN, m.ExactSeconds.Median, m.Speedup, m.Pick.ErrorBound, m.Pick.MaxAbsError, double.IsNaN(m.Pick.MaxAbsError) ? null : m.Pick.MaxAbsError <= c.Epsilon, true, $"{m.Pick.Algorithm} (picked by {m.Pick.Source})");
            var fm = x.FastestMeasured;
            table.Add(c.N, x.D, x.Bound, x.Scale, x.LogitBound, c.Epsilon, m.Pick.Algorithm, m.Pick.Source, m.Speedup, m.Pick.Seconds.Median, m.ExactSeconds.Median,
                m.ExactExtrapolated, m.Pick.MaxAbsError, double.IsNaN(m.Pick.MaxAbsError) ? null : m.Pick.MaxAbsError <= c.Epsilon, m.AllRefused,
                fm?.Algorithm, fm is null ? double.NaN : m.ExactSeconds.Median / fm.Seconds.Median);
        }
        runs.Write(run.PathOf(RunsCsv));
        table.Write(run.PathOf(CellsCsv));
        var axes = new RegimeAxes(c.Ds, c.Bounds);
        var p = Figure.New($"Regime map: speedup of the planner's certified pick over exact (n = {c.N}, ε = {c.Epsilon:G2}, s = {c.Scale.Text})",
            "head dimension d", c.Scale.OneOverD ? "entry bound B (|logits| ≤ B² at s = 1/d)" : "entry bound B");
        var map = cells.Select(x => x.ToMap()).ToList();
        RegimeMap.DrawCells(p, axes, map);
        RegimeMap.DrawTheory(p, axes, c.N, c.Epsilon, c.Scale.OneOverD);
        RegimeMap.DrawLabels(p, axes, map);
        axes.Apply(p);
        p.ShowLegend(Edge.Right);
        Figure.Save(p, run.PathOf(FigureStem), 1300, 720);
    }

    /// <summary>Parses a comma-separated list; exit 2 naming the option and the bad entry.</summary>
    public static IReadOnlyList<T> ParseList<T>(string option, string text, Func<string, T?> parse, string what) where T : struct
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UsageException($"{option} must list {what} (got '{text}').");
        var list = new List<T>();
        foreach (var s in parts)
            list.Add(parse(s) ?? throw new UsageException($"{option} must list {what} (got '{s}')."));
        if (list.Distinct().Count() != list.Count) throw new UsageException($"{option} lists a value twice ('{text}').");
        return list.Order().ToList();
    }
}
