using System.CommandLine;
using FastAttention.Approximation;
using FastAttention.Cli.Infrastructure;
using FastAttention.Cli.Rendering;
using FastAttention.Polynomial;
using ScottPlot;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn experiment transition</c>: Alman–Song's transition at B = Θ(√log n) (Theorems 1.3/1.4, 3.7/3.8). For
/// n = 2^k and ε = 1/n, bisection finds the largest entry bound B* at which the polynomial method (plan + execute) is
/// still faster than the exact kernel, on fresh random inputs per repeat; per n the median B* with its min–max over
/// the repeats is plotted against √(ln n), with the fit B* ≈ c·√(ln n) and its residuals beside it, and a one-line
/// verdict. The polynomial's time depends on B only through its plan (degree g, rank r), so within one repeat the
/// time of each plan is measured once and reused: the bisection's predicate is then monotone in B whenever time
/// grows with the rank, and noise moves B* only from one repeat to the next, where the error bars show it.
/// </summary>
internal static class TransitionExperimentCommand
{
    public const string Csv = "transition.csv", SummaryCsv = "transition-summary.csv", DegreeCsv = "transition-degree.csv", FigureStem = "transition";

    public static readonly string[] Columns =
        ["log2n", "n", "epsilon", "sqrtLnN", "repeat", "seed", "exactSeconds", "exactSampledRows", "bStar", "bUpper", "limit",
         "polySeconds", "degree", "rank", "R", "lemma21Degree"];

    public static readonly string[] SummaryColumns =
        ["log2n", "n", "sqrtLnN", "repeats", "bStarMedian", "bStarMin", "bStarMax", "fitted", "residual", "withinSpread", "limits"];

    public static Command Create()
    {
        var common = new ExperimentOptions($"{Csv}, {SummaryCsv}, {DegreeCsv}, {FigureStem}.png and {FigureStem}.svg");
        var minLogN = new Option<int>("--min-log-n") { Description = "Smallest n = 2^k.", DefaultValueFactory = _ => 8 };
        var maxLogN = new Option<int>("--max-log-n") { Description = "Largest n = 2^k (--quick: 12).", DefaultValueFactory = _ => 16 };
        var d = new Option<int>("--d") { Description = "Head dimension (the scale is Alman–Song's s = 1/d).", DefaultValueFactory = _ => 4 };
        var maxBound = new Option<double>("--max-bound") { Description = "Upper end of the search on B.", DefaultValueFactory = _ => 4.0 };
        var steps = new Option<int>("--steps") { Description = "Bisection steps on B (resolution max-bound/2^steps; --quick: 5).", DefaultValueFactory = _ => 7 };
        var maxRank = new Option<int>("--max-rank") { Description = "Rank budget of the polynomial method during the search.", DefaultValueFactory = _ => 16384 };
        var cmd = new Command("transition", "Largest entry bound B* where the polynomial method beats exact, for ε = 1/n, against √(log n): bisection, repeats, fit and verdict.")
        {
            minLogN, maxLogN, d, maxBound, steps, maxRank,
        };
        common.AddTo(cmd);
        cmd.SetAction(r =>
        {
            var run = common.Parse(r);
            int lo = r.GetValue(minLogN), hi = QuickDefaults.Pick(r, maxLogN, run.Quick, 12), dd = r.GetValue(d);
            int st = QuickDefaults.Pick(r, steps, run.Quick, 5), rank = r.GetValue(maxRank);
            CommonOptions.AtLeast("--min-log-n", lo, 4); CommonOptions.AtLeast("--max-log-n", hi, lo);
            if (hi > 24) throw new UsageException($"--max-log-n must be at most 24 (got {hi}).");
            CommonOptions.AtLeast("--d", dd, 1); CommonOptions.AtLeast("--steps", st, 1); CommonOptions.AtLeast("--max-rank", rank, 1);
            double bmax = r.GetValue(maxBound);
            CommonOptions.Positive("--max-bound", bmax);
            Run(run, new Config(lo, hi, dd, bmax, st, rank));
            return 0;
        });
        return cmd;
    }

    public sealed record Config(int MinLogN, int MaxLogN, int D, double MaxBound, int Steps, int MaxRank)
    {
        /// <summary>The bisection's resolution on B.</summary>
        public double Resolution => MaxBound / Math.Pow(2, Steps);
    }

    /// <summary>One bisection: n, repeat, the bracket [B*, upper], what stopped it, and the winning plan at B*.</summary>
    public sealed record Trial(int LogN, int Repeat, int Seed, double ExactSeconds, int ExactSampledRows, double BStar, double BUpper, string Limit,
        double PolySeconds, int Degree, int Rank, double R);

    /// <summary>Per n: the spread of B* over the repeats, the fit and whether the fit lies in the spread.</summary>
    public sealed record Point(int LogN, Spread BStar, double Fitted, double Residual, bool WithinSpread, string Limits, bool InFit)
    {
        public double SqrtLnN => Math.Sqrt(LogN * Math.Log(2));
    }

    public sealed record Result(IReadOnlyList<Trial> Trials, IReadOnlyList<Point> Points, ProportionalFit? Fit, bool Monotone, bool GrowsLikeSqrtLog, string Verdict);

    public static Result Run(ExperimentRun run, Config cfg)
    {
        const string Name = "transition";
        run.CreateDir();
        var o = run.Output;
        o.WriteLine($"transition: d = {cfg.D}, s = 1/d, ε = 1/n, B* by bisection on (0, {cfg.MaxBound}] ({cfg.Steps} steps, resolution {cfg.Resolution:G3}), " +
                    $"{run.Repeats} repeats per n on fresh inputs, rank budget {cfg.MaxRank}; each plan is timed against exact in 5 interleaved samples after a warm-up (median ratio).");
        var trials = new List<Trial>();
        for (int k = cfg.MinLogN; k <= cfg.MaxLogN; k++)
            for (int rep = 0; rep < run.Repeats; rep++)
            {
                int seed = run.Seed + 1000 * rep + k;
                run.Progress(Name, $"n = 2^{k}, repeat {rep + 1}/{run.Repeats}");
                trials.Add(Bisect(k, rep, seed, cfg, run.Threads));
            }
        var result = Analyse(trials, cfg);
        o.WriteLine($"{"n",8} {"√ln n",6} {"B* median",9} {"min",6} {"max",6} {"fit",6} {"resid",7}  limits");
        foreach (var p in result.Points)
            o.WriteLine($"{1 << p.LogN,8} {p.SqrtLnN,6:F3} {p.BStar.Median,9:F3} {p.BStar.Min,6:F3} {p.BStar.Max,6:F3} {p.Fitted,6:F3} {p.Residual,7:F3}  {p.Limits}");
        Write(run, trials, result, cfg);
        o.WriteLine(result.Verdict);
        o.WriteLine($"wrote {run.PathOf(Csv)}, {run.PathOf(SummaryCsv)}, {run.PathOf(DegreeCsv)}, {run.PathOf(FigureStem)}.png and .svg");
        o.WriteLine();
        o.WriteLine("Degree g of the proven Chebyshev series versus Lemma 2.1's formula max{2R, log(1/ε)/log(log(1/ε)/2R)} (unit constants), interval [−R, R]:");
        o.WriteLine($"{"R",6} {"ε",8} {"g",4} {"formula",8} {"g/formula",9}");
        foreach (var (rr, e, g, f) in DegreeTable()) o.WriteLine($"{rr,6:G3} {e,8:G2} {g,4} {f,8:F2} {g / f,9:F2}");
        return result;
    }

    private static Trial Bisect(int logN, int rep, int seed, Config cfg, int threads)
    {
        int n = 1 << logN;
        double eps = 1.0 / n;
        var setup = new PolynomialBenchmark.Setup(n, n, cfg.D, cfg.MaxBound, 1.0 / cfg.D, eps, false, threads, seed, 1024);
        var exact = Timing.ExactRunner(PolynomialBenchmark.Problem<double>(setup), threads, seed: seed);
        var alg = new PolynomialAttention { MaxRank = cfg.MaxRank };
        var settings = new AttentionSettings { Epsilon = eps, Threads = threads };
        var ratioOfPlan = new Dictionary<(int Degree, int Rank), (double Ratio, double Poly, double Exact)>();
        Evaluation best = default;
        double exactSeconds = double.NaN;
        string lastFalse = "time";
        bool Beats(double b)
        {
            var e = Evaluate(PolynomialBenchmark.Problem<double>(setup with { Bound = b }), alg, settings, ratioOfPlan, exact.Run, exact.Scale);
            if (!double.IsNaN(e.ExactSeconds)) exactSeconds = e.ExactSeconds;
            if (e.Beats) best = e; else lastFalse = e.Why;
            return e.Beats;
        }
        var edge = Bisection.LargestTrue(Beats, 0, cfg.MaxBound, cfg.Steps);
        if (double.IsNaN(exactSeconds)) exactSeconds = Timing.Seconds(exact.Run, 3).Median * exact.Scale; // every plan was refused
        string limit = edge.TrueAtHi ? "search ceiling" : lastFalse;
        return new Trial(logN, rep, seed, exactSeconds, exact.SampledRows, edge.Lower, edge.Upper, limit,
            edge.TrueSomewhere ? best.Seconds : double.NaN, best.Degree, best.Rank, edge.TrueSomewhere ? best.R : double.NaN);
    }

    private readonly record struct Evaluation(bool Beats, string Why, double Seconds, double ExactSeconds, int Degree, int Rank, double R);

    /// <summary>Plans the polynomial method at this B; a refusal is "not faster". A plan not timed before in this repeat is
    /// timed against the exact kernel in 5 interleaved samples (plan + execute: what a caller pays for one call), and
    /// it beats exact when the median ratio is below 1.</summary>
    private static Evaluation Evaluate(AttentionProblem<double> problem, PolynomialAttention alg, AttentionSettings settings,
        Dictionary<(int, int), (double Ratio, double Poly, double Exact)> ratioOfPlan, Action exact, double exactScale)
    {
        var outcome = alg.TryPlan(problem, settings);
        if (outcome.Refusal is { } refusal)
            return new Evaluation(false, refusal.Reason switch
            {
                RefusalReason.RankBudget => "refused: rank budget",
                RefusalReason.Float64Reach => "refused: float64 reach",
                var other => "refused: " + other,
            }, double.NaN, double.NaN, 0, 0, double.NaN);
        var pp = (PolynomialParameters)outcome.Plan!.Heads[0].Parameters;
        if (!ratioOfPlan.TryGetValue((pp.Degree, pp.Rank), out var m))
        {
            var (ratio, poly, ex) = Timing.Paired(() => alg.Compute(problem, settings), exact, 5);
            m = (ratio.Median / exactScale, poly.Median, ex.Median * exactScale);
            ratioOfPlan[(pp.Degree, pp.Rank)] = m;
        }
        bool beats = m.Ratio < 1;
        return new Evaluation(beats, beats ? "" : "time", m.Poly, m.Exact, pp.Degree, pp.Rank, pp.R);
    }

    /// <summary>Spread per n, the fit B* ≈ c·√(ln n) over the points whose search time (not a refusal or the ceiling)
    /// stopped and B* &gt; 0, the residuals, monotonicity within the spread, and the verdict.</summary>
    public static Result Analyse(IReadOnlyList<Trial> trials, Config cfg)
    {
        var groups = trials.GroupBy(t => t.LogN).OrderBy(g => g.Key).ToList();
        double tol = cfg.Resolution;
        var spreads = groups.Select(g => Spread.Of(g.Select(t => t.BStar))).ToArray();
        var usable = groups.Select((g, i) => (g, i)).Where(x => x.g.All(t => t.Limit == "time") && spreads[x.i].Median > 0).Select(x => x.i).ToArray();
        ProportionalFit? fit = usable.Length >= 1
            ? Fit.Proportional(usable.Select(i => Math.Sqrt(groups[i].Key * Math.Log(2))).ToArray(), usable.Select(i => spreads[i].Median).ToArray())
            : null;
        var points = new List<Point>();
        for (int i = 0; i < groups.Count; i++)
        {
            double x = Math.Sqrt(groups[i].Key * Math.Log(2));
            double f = fit is null ? double.NaN : fit.Coefficient * x;
            bool within = fit is not null && f >= spreads[i].Min - tol && f <= spreads[i].Max + tol;
            string limits = string.Join(";", groups[i].GroupBy(t => t.Limit).Select(l => l.Count() == 1 ? l.Key : $"{l.Key}×{l.Count()}"));
            points.Add(new Point(groups[i].Key, spreads[i], f, spreads[i].Median - f, within, limits, usable.Contains(i)));
        }
        // Monotone within the error bars: no later n has its whole range below an earlier n's whole range.
        bool monotone = true;
        for (int i = 0; i < points.Count; i++)
            for (int j = i + 1; j < points.Count; j++)
                if (points[j].BStar.Max + tol < points[i].BStar.Min) monotone = false;
        var fitted = points.Where(p => p.InFit).ToList();
        int inside = fitted.Count(p => p.WithinSpread);
        bool grows = fit is not null && fitted.Count >= 3 && inside == fitted.Count;
        string verdict = fit is null
            ? $"verdict: no n in 2^{cfg.MinLogN}…2^{cfg.MaxLogN} has a time-limited B* > 0, so there is nothing to fit; B* is {(monotone ? "" : "NOT ")}monotone non-decreasing in n within its spread."
            : $"verdict: B* is {(monotone ? "" : "NOT ")}monotone non-decreasing in n within its spread; B* ≈ {fit.Coefficient:F3}·√(ln n) lies within the " +
              $"measured spread (± the bisection resolution {tol:G2}) at {inside} of {fitted.Count} fitted n (RMS residual {fit.RmsResidual:F3}), so B* " +
              (grows ? "grows like √log n within the measured spread." : fitted.Count < 3 ? "cannot be tested against √log n (fewer than 3 fitted points)." : "does NOT grow like √log n within the measured spread.");
        return new Result(trials, points, fit, monotone, grows, verdict);
    }

    private static void Write(ExperimentRun run, List<Trial> trials, Result result, Config cfg)
    {
        var csv = new CsvTable(Columns);
        foreach (var t in trials)
        {
            int n = 1 << t.LogN;
            csv.Add(t.LogN, n, 1.0 / n, Math.Sqrt(Math.Log(n)), t.Repeat, t.Seed, t.ExactSeconds, t.ExactSampledRows, t.BStar, t.BUpper, t.Limit,
                t.PolySeconds, t.Degree, t.Rank, t.R, t.Rank > 0 ? Lemma21(t.R, 1.0 / n) : double.NaN);
        }
        csv.Write(run.PathOf(Csv));
        var sum = new CsvTable(SummaryColumns);
        foreach (var p in result.Points)
            sum.Add(p.LogN, 1 << p.LogN, p.SqrtLnN, p.BStar.Count, p.BStar.Median, p.BStar.Min, p.BStar.Max, p.Fitted, p.Residual, p.WithinSpread, p.Limits);
        sum.Write(run.PathOf(SummaryCsv));
        var deg = new CsvTable("R", "epsilon", "degree", "lemma21Degree");
        foreach (var (r, e, g, f) in DegreeTable()) deg.Add(r, e, g, f);
        deg.Write(run.PathOf(DegreeCsv));
        Plot(run, result, cfg);
    }

    private static void Plot(ExperimentRun run, Result result, Config cfg)
    {
        var pts = result.Points;
        double[] xs = pts.Select(p => p.SqrtLnN).ToArray();
        var main = Figure.New($"Polynomial method beats exact up to B* (d = {cfg.D}, s = 1/d, ε = 1/n, {run.Repeats} repeats)", "√(ln n)", "largest entry bound B*");
        Figure.AddSpread(main, xs, pts.Select(p => p.BStar).ToArray(), Figure.Palette(0), "B*: median, min–max over repeats");
        var capped = pts.Where(p => p.Limits.Contains("refused", StringComparison.Ordinal) || p.Limits.Contains("ceiling", StringComparison.Ordinal)).ToArray();
        if (capped.Length > 0)
        {
            var cap = main.Add.ScatterPoints(capped.Select(p => p.SqrtLnN).ToArray(), capped.Select(p => p.BStar.Median).ToArray(), Figure.Palette(3));
            cap.MarkerShape = MarkerShape.OpenSquare;
            cap.MarkerSize = 14;
            cap.LegendText = "a refusal or the search ceiling stopped a repeat (B* is a lower bound there)";
        }
        if (result.Fit is { } fit)
        {
            double x0 = 0, x1 = xs[^1] * 1.02;
            Figure.AddReference(main, [x0, x1], [fit.Coefficient * x0, fit.Coefficient * x1], Figure.Palette(1),
                $"fit {fit.Coefficient:F3}·√(ln n) (RMS residual {fit.RmsResidual:F3})");
        }
        double top = Math.Max(cfg.MaxBound, pts.Max(p => double.IsNaN(p.BStar.Max) ? 0 : p.BStar.Max));
        main.Axes.SetLimitsY(0, top * 1.05);
        main.Axes.SetLimitsX(Math.Max(0, xs[0] - 0.1), xs[^1] + 0.1);
        main.ShowLegend(Alignment.UpperLeft);
        var resid = Figure.New("Residual of the fit: B* − c·√(ln n)", "√(ln n)", "residual (median, min–max)");
        if (result.Fit is not null)
        {
            var rs = pts.Select(p => new Spread(p.Residual, p.BStar.Min - p.Fitted, p.BStar.Max - p.Fitted, p.BStar.Count)).ToArray();
            Figure.AddSpread(resid, xs, rs, Figure.Palette(0), "B* − fit", line: false);
            var zero = resid.Add.HorizontalLine(0, 1.5f, Figure.Palette(1));
            zero.LegendText = "0";
            var band = resid.Add.VerticalSpan(-cfg.Resolution, cfg.Resolution, Figure.Palette(7).WithAlpha(0.2));
            band.LegendText = $"± bisection resolution {cfg.Resolution:G2}";
            resid.ShowLegend(Alignment.UpperLeft);
        }
        resid.Axes.SetLimitsX(Math.Max(0, xs[0] - 0.1), xs[^1] + 0.1);
        var verdict = main.Add.Annotation(result.Monotone ? "monotone within spread: yes" : "monotone within spread: NO", Alignment.LowerRight);
        verdict.LabelStyle.FontSize = 13;
        Figure.SaveSideBySide([main, resid], run.PathOf(FigureStem), 900, 600);
    }

    /// <summary>Lemma 2.1 / Cor. 2.2 with unit constants on [−R, R] (an interval of length 2R).</summary>
    private static double Lemma21(double r, double eps) => ExpPolynomial.TheoryDegree(2 * r, eps);

    private static IEnumerable<(double R, double Eps, int G, double Formula)> DegreeTable()
    {
        foreach (double r in new[] { 0.25, 0.5, 1, 2, 4, 8 })
            foreach (double e in new[] { 1e-3, 1e-6, 1e-9 })
            {
                if (ExpPolynomial.FloatingPointFloor(2 * r) * 4 > e) continue; // beyond float64 (the range family's job)
                var p = ExpPolynomial.Create(-r, r, e);
                yield return (r, e, p.Degree, Lemma21(r, e));
            }
    }
}
