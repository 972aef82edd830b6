using System.CommandLine;
using System.Globalization;
using System.Text;
using FastAttention.Approximation;
using FastAttention.Cli.Infrastructure;
using FastAttention.Polynomial;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn experiment transition</c>: Alman–Song's transition at B = Θ(√log n). For n = 2^k and ε = 1/n, binary
/// search the largest entry bound B* at which the polynomial method is still faster than the exact kernel (measured
/// times), and plot B* against √(ln n). Also tabulates the verified degree g against the Lemma 2.1 formula.
/// </summary>
internal static class TransitionExperimentCommand
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder for transition.csv, transition-degree.csv and transition.png (created if missing).", DefaultValueFactory = _ => "." };
        var minLogN = new Option<int>("--min-log-n") { Description = "Smallest n = 2^k.", DefaultValueFactory = _ => 8 };
        var maxLogN = new Option<int>("--max-log-n") { Description = "Largest n = 2^k (16 takes about 3 minutes on 2 cores).", DefaultValueFactory = _ => 16 };
        var d = new Option<int>("--d") { Description = "Head dimension.", DefaultValueFactory = _ => 4 };
        var maxBound = new Option<double>("--max-bound") { Description = "Upper end of the search on B.", DefaultValueFactory = _ => 4.0 };
        var steps = new Option<int>("--steps") { Description = "Bisection steps on B.", DefaultValueFactory = _ => 7 };
        var maxRank = new Option<int>("--max-rank") { Description = "Rank budget of the polynomial method during the search.", DefaultValueFactory = _ => 16384 };
        var threads = CommonOptions.Threads();
        var seed = new Option<int>("--seed") { Description = "Random seed.", DefaultValueFactory = _ => 1 };
        var cmd = new Command("transition", "Largest entry bound B* where the polynomial method beats exact, for ε = 1/n, against √(log n).")
        {
            output, minLogN, maxLogN, d, maxBound, steps, maxRank, threads, seed,
        };
        cmd.SetAction(r =>
        {
            int lo = r.GetValue(minLogN), hi = r.GetValue(maxLogN), dd = r.GetValue(d), st = r.GetValue(steps), t = r.GetValue(threads);
            CommonOptions.AtLeast("--min-log-n", lo, 4); CommonOptions.AtLeast("--max-log-n", hi, lo);
            if (hi > 24) throw new UsageException($"--max-log-n must be at most 24 (got {hi}).");
            CommonOptions.AtLeast("--d", dd, 1); CommonOptions.AtLeast("--steps", st, 1); t = CommonOptions.ThreadCount(t);
            double bmax = r.GetValue(maxBound);
            CommonOptions.Positive("--max-bound", bmax);
            int rankBudget = r.GetValue(maxRank);
            CommonOptions.AtLeast("--max-rank", rankBudget, 1);
            using var outputs = new OutputFiles();
            var paths = outputs.Folder("--out", r.GetValue(output)!, "transition.csv", "transition-degree.csv", "transition.png");
            Run(r.InvocationConfiguration.Output, outputs, paths, lo, hi, dd, bmax, st, rankBudget, t, r.GetValue(seed));
            outputs.Commit();
            return 0;
        });
        return cmd;
    }

    private sealed record Point(int LogN, double Epsilon, double ExactSeconds, int ExactSampledRows, double BStar, string Limit,
        double PolySeconds, int Degree, int Rank, double R, double TheoryDegree, double Lemma21Degree);

    private static void Run(TextWriter o, OutputFiles outputs, string[] paths, int lo, int hi, int d, double bmax, int steps, int maxRank, int threads, int seed)
    {
        var context = CliContext.Current;
        o.WriteLine($"transition: d = {d}, s = 1/d, ε = 1/n, B searched in (0, {bmax}] with {steps} bisection steps, rank budget {maxRank}; times are measured.");
        o.WriteLine($"{"n",8} {"ε",9} {"exact s",9} {"B*",7} {"√ln n",6} {"poly s",9} {"g",3} {"r",6} {"Lemma2.1 g",10}  limit");
        var points = new List<Point>();
        // Warm-up (JIT, tiering) of both kernels so the first n is not timed on unoptimised code.
        var warm = PolynomialBenchmark.Problem<double>(new PolynomialBenchmark.Setup(2048, 2048, d, 1, 1.0 / d, 1e-3, false, threads, seed, 1024));
        for (int i = 0; i < 40; i++)
        {
            AttentionAlgorithms.Create("exact").Compute(warm, new AttentionSettings { Threads = threads });
            new PolynomialAttention().Compute(warm, new AttentionSettings { Epsilon = 1e-3, Threads = threads });
        }
        for (int k = lo; k <= hi; k++)
        {
            int n = 1 << k;
            context.ThrowIfCancelled();
            context.Status($"experiment transition: searching B* at n = {n} ({k - lo + 1} of {hi - lo + 1})…");
            double eps = 1.0 / n;
            // The exact kernel's time does not depend on B: measure it once per n.
            var baseSetup = new PolynomialBenchmark.Setup(n, n, d, 1, 1.0 / d, eps, false, threads, seed, 1024);
            var baseProblem = PolynomialBenchmark.Problem<double>(baseSetup);
            var (exactSeconds, sampled, _) = PolynomialBenchmark.TimeExact(baseProblem, threads, 1024, seed);
            // Bisection on B: beats(B) is monotone in expectation (larger B → larger R → higher degree and rank).
            Trial best = default;
            double bLo = 0, bHi = bmax;
            var top = Try(baseSetup with { Bound = bmax }, exactSeconds, maxRank);
            string limit;
            if (top.Beats) { best = top; bLo = bmax; limit = "search ceiling"; }
            else
            {
                limit = top.Why;
                for (int i = 0; i < steps; i++)
                {
                    double mid = 0.5 * (bLo + bHi);
                    var trial = Try(baseSetup with { Bound = mid }, exactSeconds, maxRank);
                    if (trial.Beats) { bLo = mid; best = trial; }
                    else { bHi = mid; limit = trial.Why; }
                }
            }
            double lemma21 = best.Rank > 0 ? Lemma21(best.R, eps) : double.NaN;
            var p = new Point(k, eps, exactSeconds, sampled, bLo, limit, best.Seconds, best.Degree, best.Rank, best.R, best.TheoryDegree, lemma21);
            points.Add(p);
            o.WriteLine($"{n,8} {eps,9:G3} {exactSeconds,9:G3} {bLo,7:F3} {Math.Sqrt(Math.Log(n)),6:F3} {best.Seconds,9:G3} {best.Degree,3} {best.Rank,6} {lemma21,10:F1}  {limit}");
        }
        WriteCsv(outputs, paths, points);
        WritePlot(outputs, paths[2], points, d);
        o.WriteLine($"wrote {paths[0]}, {paths[1]}, {paths[2]}");
        o.WriteLine();
        o.WriteLine("Degree g of the proven Chebyshev series versus Lemma 2.1's formula max{2R, log(1/ε)/log(log(1/ε)/2R)} (unit constants), interval [−R, R]:");
        o.WriteLine($"{"R",6} {"ε",8} {"g",4} {"formula",8} {"g/formula",9}");
        foreach (var (rr, e, g, f) in DegreeTable()) o.WriteLine($"{rr,6:G3} {e,8:G2} {g,4} {f,8:F2} {g / f,9:F2}");
    }

    private readonly record struct Trial(bool Beats, string Why, double Seconds, int Degree, int Rank, double R, double TheoryDegree);

    private static Trial Try(PolynomialBenchmark.Setup s, double exactSeconds, int maxRank)
    {
        var problem = PolynomialBenchmark.Problem<double>(s);
        var alg = new PolynomialAttention { MaxRank = maxRank };
        var settings = new AttentionSettings { Epsilon = s.Epsilon, Threads = s.Threads };
        try
        {
            var first = alg.Compute(problem, settings);
            double secs = first.Certificate.Elapsed.TotalSeconds;
            // Re-time short runs (the first call includes JIT and first-touch costs).
            if (secs < 0.5) secs = Math.Min(secs, Measure.BestSeconds(() => alg.Compute(problem, settings), 2));
            var c = first.Certificate.ParametersOf<FastAttention.Polynomial.PolynomialParameters>();
            bool beats = secs < exactSeconds;
            return new Trial(beats, beats ? "" : "time", secs, c.Degree, c.Rank, c.R, c.TheoryDegree);
        }
        catch (AttentionRefusedException e)
        {
            return new Trial(false, e.Reason == RefusalReason.RankBudget ? "refused: rank" : "refused: float64", double.NaN, 0, 0, double.NaN, double.NaN);
        }
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

    private static void WriteCsv(OutputFiles outputs, string[] paths, List<Point> points)
    {
        var sb = new StringBuilder("log2n,n,epsilon,sqrtLogN,exactSeconds,exactSampledRows,bStar,limit,polySeconds,degree,rank,R,theoryDegree,lemma21Degree\n");
        foreach (var p in points)
            sb.AppendLine(string.Join(",", p.LogN.ToString(Inv), (1 << p.LogN).ToString(Inv), p.Epsilon.ToString("R", Inv),
                Math.Sqrt(Math.Log(1 << p.LogN)).ToString("R", Inv), p.ExactSeconds.ToString("R", Inv), p.ExactSampledRows.ToString(Inv),
                p.BStar.ToString("R", Inv), p.Limit.Replace(',', ';'), p.PolySeconds.ToString("R", Inv), p.Degree.ToString(Inv),
                p.Rank.ToString(Inv), p.R.ToString("R", Inv), p.TheoryDegree.ToString("R", Inv), p.Lemma21Degree.ToString("R", Inv)));
        outputs.WriteText(paths[0], sb.ToString());
        var deg = new StringBuilder("R,epsilon,degree,lemma21Degree\n");
        foreach (var (r, e, g, f) in DegreeTable())
            deg.AppendLine(string.Join(",", r.ToString("R", Inv), e.ToString("R", Inv), g.ToString(Inv), f.ToString("R", Inv)));
        outputs.WriteText(paths[1], deg.ToString());
    }

    private static void WritePlot(OutputFiles outputs, string path, List<Point> points, int d)
    {
        var plt = new ScottPlot.Plot();
        double[] xs = points.Select(p => Math.Sqrt(Math.Log(1 << p.LogN))).ToArray();
        double[] ys = points.Select(p => p.BStar).ToArray();
        var sc = plt.Add.Scatter(xs, ys);
        sc.LegendText = "B* (measured)";
        // Points where a refusal (rank budget, float64), not time, stopped the search: B* is a lower bound there.
        var capped = points.Select((p, i) => (p, i)).Where(t => t.p.Limit.StartsWith("refused", StringComparison.Ordinal) || t.p.Limit == "search ceiling").ToArray();
        if (capped.Length > 0)
        {
            var cap = plt.Add.ScatterPoints(capped.Select(t => xs[t.i]).ToArray(), capped.Select(t => ys[t.i]).ToArray());
            cap.MarkerShape = ScottPlot.MarkerShape.OpenSquare;
            cap.MarkerSize = 12;
            cap.LegendText = "stopped by a refusal or the search ceiling (B* ≥ this for time alone)";
        }
        // Reference line B* = c·√(ln n), c fitted (least squares through 0) on the time-limited points only.
        var timed = points.Select((p, i) => (p, i)).Where(t => t.p.Limit == "time").Select(t => t.i).ToArray();
        double sxx = timed.Sum(i => xs[i] * xs[i]), sxy = timed.Sum(i => xs[i] * ys[i]);
        if (timed.Length > 0 && sxx > 0)
        {
            double c = sxy / sxx;
            var line = plt.Add.Scatter(new[] { xs[0], xs[^1] }, new[] { c * xs[0], c * xs[^1] });
            line.LegendText = $"{c:F2}·√(ln n) (fit on time-limited points)";
            line.LinePattern = ScottPlot.LinePattern.Dashed;
        }
        plt.Title($"Polynomial attention beats exact up to B* (d = {d}, s = 1/d, ε = 1/n)");
        plt.XLabel("√(ln n)");
        plt.YLabel("largest entry bound B*");
        plt.ShowLegend();
        byte[] png = plt.GetImageBytes(900, 560, ScottPlot.ImageFormat.Png);
        outputs.WriteBytes(path, png);
    }
}
