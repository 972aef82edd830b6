using System.CommandLine;
using System.Diagnostics;
using FastAttention.Cli.Infrastructure;
using FastAttention.Cli.Rendering;
using FastAttention.RangeSearch;
using ScottPlot;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn experiment scaling</c>: time of a range-search-family algorithm over n = 2^min … 2^max (m = n), each size
/// warmed up and then timed <c>--repeats</c> times (sizes that take under a second: up to 3× as often; median, min–max), split into planning, structure build and queries
/// as the certificate reports them, with the work counters per query (tree nodes visited, keys summed directly,
/// node expansions) beside the time, and the exact kernel alongside (timed on 1024 sampled query rows and scaled by
/// n/rows where n² is large: 'extrapolated'). The exponent p of time ∝ n^p is fitted by least squares on log–log over
/// every repeat, with its 95% confidence interval, for wall-clock and for process CPU time (one thread by default: the
/// CPU time of one thread is the work, unaffected by the scheduling latency a shared machine adds); reference slopes n log n, n^{2−1/d} (Gupta et al. Theorem 1.1,
/// Lemma 3.6) and n² are drawn through the middle of the data.
/// </summary>
internal static class ScalingExperimentCommand
{
    public static readonly string[] Columns =
        ["n", "repeat", "seconds", "cpuSeconds", "planSeconds", "buildSeconds", "querySeconds", "nodesVisitedPerQuery", "directKeysPerQuery",
         "expansionsPerQuery", "exactSeconds", "exactExtrapolated", "speedup", "maxAbsError", "errorBound"];

    public static readonly string[] FitColumns = ["series", "exponent", "ciLow", "ciHigh", "points", "minN", "maxN"];

    public static string Stem(string algorithm, int d, Distribution dist, bool causal = false) =>
        $"scaling-{algorithm}-d{d}-{dist.ToString().ToLowerInvariant()}{(causal ? "-causal" : "")}";

    public static Command Create()
    {
        var common = new ExperimentOptions("scaling-ALG-dD-DIST.csv, -fit.csv, .png and .svg");
        var algorithm = new Option<string>("--algorithm") { Description = "range, vector, rounding or lowrank.", DefaultValueFactory = _ => "range" };
        var d = new Option<int>("--d") { Description = "Head dimension.", DefaultValueFactory = _ => 2 };
        var minLog = new Option<int>("--min-log-n") { Description = "Smallest n = 2^this (--quick: 10). Below 2^14 fixed costs (thread wake-ups, allocation) dominate a run on a loaded machine.", DefaultValueFactory = _ => 14 };
        var maxLog = new Option<int>("--max-log-n") { Description = "Largest n = 2^this (--quick: 15).", DefaultValueFactory = _ => 20 };
        var bound = new Option<double>("--bound") { Description = "Entry bound B of Q and K.", DefaultValueFactory = _ => 100 };
        var scale = new Option<double>("--scale") { Description = "Logit scale s.", DefaultValueFactory = _ => 1 };
        var epsilon = new Option<double?>("--epsilon") { Description = "Target ‖·‖∞ error (default 1e-6 for d = 1, 1e-4 otherwise)." };
        var distribution = new Option<string>("--distribution") { Description = "uniform, normal, line, clustered, strip, constant or sphere (the adversarial families of bench range).", DefaultValueFactory = _ => "uniform" };
        var causal = new Option<bool>("--causal") { Description = "Causal mask (query i attends to keys j ≤ i)." };
        var cmd = new Command("scaling", "Time vs n for a range-search algorithm (build and queries apart, work counters beside), the exact kernel alongside; fitted exponent with its confidence interval.")
            { algorithm, d, minLog, maxLog, bound, scale, epsilon, distribution, causal };
        common.AddTo(cmd);
        cmd.SetAction(r =>
        {
            var run = common.Parse(r);
            // One thread unless --threads says otherwise: the experiment is about how work grows with n, and one
            // thread's CPU time measures work without the scheduling latency a shared machine adds to parallel runs.
            if (r.GetResult(common.Threads) is not { Implicit: false }) run = run with { Threads = 1 };
            int dd = r.GetValue(d), lo = QuickDefaults.Pick(r, minLog, run.Quick, 10), hi = QuickDefaults.Pick(r, maxLog, run.Quick, 15);
            CommonOptions.AtLeast("--d", dd, 1); CommonOptions.AtLeast("--min-log-n", lo, 4); CommonOptions.AtLeast("--max-log-n", hi, lo + 1);
            if (hi > 24) throw new UsageException($"--max-log-n must be at most 24 (got {hi}).");
            string alg = r.GetValue(algorithm)!;
            if (alg is not ("range" or "vector" or "rounding" or "lowrank"))
                throw new UsageException($"--algorithm must be range, vector, rounding or lowrank (got '{alg}').");
            double eps = r.GetValue(epsilon) ?? (dd == 1 ? 1e-6 : 1e-4), b = r.GetValue(bound), s = r.GetValue(scale);
            CommonOptions.Positive("--epsilon", eps); CommonOptions.Positive("--bound", b);
            if (!double.IsFinite(s) || s == 0) throw new UsageException($"--scale must be a nonzero finite number (got {s}).");
            var dist = Instances.ParseDistribution(r.GetValue(distribution)!);
            Run(run, new Config(alg, dd, lo, hi, b, s, eps, dist, r.GetValue(causal)));
            return 0;
        });
        return cmd;
    }

    public sealed record Config(string Algorithm, int D, int MinLogN, int MaxLogN, double Bound, double Scale, double Epsilon, Distribution Distribution, bool Causal = false);

    /// <summary>One timed run at one n.</summary>
    public sealed record Sample(int N, int Repeat, double Seconds, double CpuSeconds, double PlanSeconds, double BuildSeconds, double QuerySeconds,
        double NodesPerQuery, double DirectKeysPerQuery, double ExpansionsPerQuery);

    /// <summary>One size: its runs, the exact kernel's time, the error measured on sampled rows and the certified bound.</summary>
    public sealed record Size(int N, IReadOnlyList<Sample> Samples, Spread Exact, bool ExactExtrapolated, double MaxAbsError, double ErrorBound)
    {
        public Spread Of(Func<Sample, double> f) => Spread.Of(Samples.Select(f));
    }

    public sealed record Exponent(string Series, LineFit Fit, int MinN, int MaxN)
    {
        public (double Lo, double Hi) Interval => Fit.SlopeInterval();
    }

    public static (IReadOnlyList<Size> Sizes, IReadOnlyList<Exponent> Fits) Run(ExperimentRun run, Config c)
    {
        const string Name = "scaling";
        run.CreateDir();
        var o = run.Output;
        var alg = AttentionAlgorithms.Create(c.Algorithm);
        var settings = new AttentionSettings { Epsilon = c.Epsilon, Threads = run.Threads };
        o.WriteLine($"scaling: {c.Algorithm}, d = {c.D}, B = {c.Bound}, s = {c.Scale}, ε = {c.Epsilon:G3}, {c.Distribution.ToString().ToLowerInvariant()}{(c.Causal ? ", causal" : "")}, " +
                    $"n = 2^{c.MinLogN}…2^{c.MaxLogN}, {run.Threads} thread(s), {run.Repeats} (cheap sizes: up to {3 * run.Repeats}) timed runs per size after a warm-up; seconds = plan + execute (wall clock and process CPU time).");
        // JIT and tiered compilation: a few runs of a small instance of the same kind before anything is timed.
        var warm = BenchRangeMeasurement.Make(2048, c.D, c.Bound, c.Scale, c.Distribution, 1, run.Seed + 10, c.Causal);
        // Tiered compilation promotes a method after 30 calls and a short delay, compiled in the background: three runs
        // left the first timed size at tier 0 (its time barely grew from 2^14 to 2^15, pulling the fitted exponent below
        // 1). So: at least 40 runs and 1 s of both the algorithm and the exact kernel (at most 6 s), then a pause for the
        // background compiles to land.
        var exactAlg = AttentionAlgorithms.Create("exact");
        var warmClock0 = Stopwatch.StartNew();
        for (int i = 0; (i < 40 || warmClock0.Elapsed.TotalSeconds < 1) && warmClock0.Elapsed.TotalSeconds < 6; i++)
        {
            if (!alg.TryPlan(warm, settings).Succeeded) break;
            alg.Compute(warm, settings);
            exactAlg.Compute(warm, new AttentionSettings { Threads = settings.Threads });
        }
        Thread.Sleep(300);
        var sizes = new List<Size>();
        o.WriteLine($"{"n",9} {"seconds",10} {"cpu s",10} {"build",10} {"query",10} {"nodes/q",9} {"direct/q",9} {"exact [s]",11} {"speedup",8} {"max error",10} {"bound",10}");
        for (int lg = c.MinLogN; lg <= c.MaxLogN; lg++)
        {
            int n = 1 << lg;
            run.Progress(Name, $"n = 2^{lg}: warm-up and timed runs");
            var problem = BenchRangeMeasurement.Make(n, c.D, c.Bound, c.Scale, c.Distribution, 1, run.Seed, c.Causal);
            var warmClock = Stopwatch.StartNew();
            var result = alg.Compute(problem, settings); // warm-up at this size (first touch, allocation); its output is checked below
            // Short runs are repeated inside one sample (averaged) so that a sample lasts ≥ 50 ms and timer and scheduler
            // noise does not dominate the small sizes.
            double warmSeconds = warmClock.Elapsed.TotalSeconds;
            int batch = (int)Math.Clamp(Math.Ceiling(0.05 / Math.Max(warmSeconds, 1e-6)), 1, 64);
            // Cheap sizes get more samples (up to 3× --repeats while they take under a second): their medians are the
            // ones a load spike moves most, and they pin the low end of the fitted exponent.
            int count = Math.Max(run.Repeats, Math.Min(3 * run.Repeats, (int)(1.0 / Math.Max(warmSeconds * batch, 1e-6))));
            var samples = new List<Sample>();
            var output = new double[problem.OutputLength];
            for (int rep = 0; rep < count; rep++)
            {
                double total = 0, planSeconds = 0, build = 0, query = 0;
                RangeFamilyParameters? p = null;
                var cpu0 = Environment.CpuUsage.TotalTime;
                for (int b = 0; b < batch; b++)
                {
                    var sw = Stopwatch.StartNew();
                    using var plan = alg.Plan(problem, settings);
                    planSeconds += sw.Elapsed.TotalSeconds;
                    var cert = plan.Execute(output);
                    total += sw.Elapsed.TotalSeconds;
                    p = cert.Parameters as RangeFamilyParameters;
                    build += p?.BuildSeconds ?? double.NaN;
                    query += p?.QuerySeconds ?? double.NaN;
                }
                double cpu = (Environment.CpuUsage.TotalTime - cpu0).TotalSeconds;
                samples.Add(new Sample(n, rep, total / batch, cpu / batch, planSeconds / batch, build / batch, query / batch,
                    p?.NodesVisitedPerQuery ?? double.NaN, p?.DirectKeysPerQuery ?? double.NaN, p?.ExpansionsPerQuery ?? double.NaN));
            }
            run.Progress(Name, $"n = 2^{lg}: exact kernel and the error on sampled rows");
            var (exact, sampled, rows) = Timing.Exact(problem, run.Threads, run.Repeats, seed: run.Seed);
            // The error against the float64 reference on 256 sampled rows (the compensated reference costs m·d per row).
            double err = Measure.MaxAbsError(problem, result.Output, Instances.SampleRows(n, 256, run.Seed + 3));
            var size = new Size(n, samples, exact, sampled > 0, err, result.Certificate.ErrorBound);
            sizes.Add(size);
            var t = size.Of(x => x.Seconds);
            o.WriteLine($"{n,9} {t.Median,10:G4} {size.Of(x => x.CpuSeconds).Median,10:G4} {size.Of(x => x.BuildSeconds).Median,10:G4} {size.Of(x => x.QuerySeconds).Median,10:G4} " +
                        $"{size.Of(x => x.NodesPerQuery).Median,9:G4} {size.Of(x => x.DirectKeysPerQuery).Median,9:G4} {exact.Median,10:G4}{(sampled > 0 ? "*" : " ")} " +
                        $"{exact.Median / t.Median,7:F1}× {err,10:E2} {size.ErrorBound,10:E2}");
        }
        var fits = Fits(sizes);
        foreach (var f in fits)
        {
            var (l, h) = f.Interval;
            o.WriteLine($"fitted exponent ({f.Series}, n = {f.MinN}…{f.MaxN}): p = {f.Fit.Slope:F3}, 95% CI [{l:F3}, {h:F3}]");
        }
        o.WriteLine($"reference: n log n → p ≈ 1 (+ log factor), n^(2−1/d) → p = {2 - 1.0 / c.D:F2}, n² → p = 2   (* = exact timed on sampled rows, scaled by n/rows)");
        string stem = run.PathOf(Stem(c.Algorithm, c.D, c.Distribution, c.Causal));
        Write(stem, sizes, fits, c, run.Repeats);
        o.WriteLine($"wrote {stem}.csv, {stem}-fit.csv, {stem}.png and {stem}.svg");
        return (sizes, fits);
    }

    /// <summary>Exponents of total, build, query and exact time over all repeats (the whole range and its upper half).</summary>
    public static List<Exponent> Fits(IReadOnlyList<Size> sizes)
    {
        var fits = new List<Exponent>();
        void Add(string name, IReadOnlyList<Size> s, Func<Sample, double> f)
        {
            var pts = s.SelectMany(z => z.Samples).Where(x => f(x) > 0).ToArray();
            if (pts.Select(x => x.N).Distinct().Count() < 2) return;
            fits.Add(new Exponent(name, Fit.PowerLaw(pts.Select(x => (double)x.N).ToArray(), pts.Select(f).ToArray()), pts.Min(x => x.N), pts.Max(x => x.N)));
        }
        Add("cpu seconds", sizes, x => x.CpuSeconds);
        Add("seconds", sizes, x => x.Seconds);
        Add("seconds, upper half", sizes.Skip(sizes.Count / 2).ToList(), x => x.Seconds);
        Add("build", sizes, x => x.BuildSeconds);
        Add("query", sizes, x => x.QuerySeconds);
        var ex = sizes.Where(z => z.Exact.Median > 0).ToArray();
        if (ex.Length >= 2)
            fits.Add(new Exponent("exact", Fit.PowerLaw(ex.Select(z => (double)z.N).ToArray(), ex.Select(z => z.Exact.Median).ToArray()), ex[0].N, ex[^1].N));
        return fits;
    }

    private static void Write(string stem, List<Size> sizes, List<Exponent> fits, Config c, int repeats)
    {
        var csv = new CsvTable(Columns);
        foreach (var z in sizes)
            foreach (var x in z.Samples)
                csv.Add(x.N, x.Repeat, x.Seconds, x.CpuSeconds, x.PlanSeconds, x.BuildSeconds, x.QuerySeconds, x.NodesPerQuery, x.DirectKeysPerQuery, x.ExpansionsPerQuery,
                    z.Exact.Median, z.ExactExtrapolated, z.Exact.Median / x.Seconds, z.MaxAbsError, z.ErrorBound);
        csv.Write(stem + ".csv");
        var fc = new CsvTable(FitColumns);
        foreach (var f in fits) fc.Add(f.Series, f.Fit.Slope, f.Interval.Lo, f.Interval.Hi, f.Fit.Count, f.MinN, f.MaxN);
        fc.Write(stem + "-fit.csv");

        double[] ln = sizes.Select(z => Math.Log10(z.N)).ToArray();
        double[] n = sizes.Select(z => (double)z.N).ToArray();
        string dist = c.Distribution.ToString().ToLowerInvariant();
        var time = Figure.New($"{c.Algorithm}: time vs n (d = {c.D}, B = {c.Bound}, s = {c.Scale}, ε = {c.Epsilon:G2}, {dist}; {repeats} runs)", "n", "seconds");
        var total = fits.First(f => f.Series == "seconds");
        var cpuFit = fits.FirstOrDefault(f => f.Series == "cpu seconds");
        if (cpuFit is not null)
            Figure.AddSpread(time, ln, sizes.Select(z => z.Of(x => x.CpuSeconds)).ToArray(), Figure.Palette(9), log10: true, marker: MarkerShape.FilledDiamond,
                label: $"{c.Algorithm}: plan + execute, CPU time (p = {cpuFit.Fit.Slope:F2}, 95% CI [{cpuFit.Interval.Lo:F2}, {cpuFit.Interval.Hi:F2}])");
        Figure.AddSpread(time, ln, sizes.Select(z => z.Of(x => x.Seconds)).ToArray(), Figure.Palette(0), log10: true,
            label: $"{c.Algorithm}: plan + execute, wall (p = {total.Fit.Slope:F2}, 95% CI [{total.Interval.Lo:F2}, {total.Interval.Hi:F2}])");
        if (sizes.All(z => z.Samples.All(x => x.BuildSeconds > 0)))
            Figure.AddSpread(time, ln, sizes.Select(z => z.Of(x => x.BuildSeconds)).ToArray(), Figure.Palette(2), "structure build", log10: true, marker: MarkerShape.FilledSquare);
        if (sizes.All(z => z.Samples.All(x => x.QuerySeconds > 0)))
            Figure.AddSpread(time, ln, sizes.Select(z => z.Of(x => x.QuerySeconds)).ToArray(), Figure.Palette(4), "queries", log10: true, marker: MarkerShape.FilledTriangleUp);
        var measured = sizes.Select((z, i) => (z, i)).Where(t => !t.z.ExactExtrapolated).ToArray();
        var extrap = sizes.Select((z, i) => (z, i)).Where(t => t.z.ExactExtrapolated).ToArray();
        var exactFit = fits.FirstOrDefault(f => f.Series == "exact");
        if (measured.Length > 0)
            Figure.AddSpread(time, measured.Select(t => ln[t.i]).ToArray(), measured.Select(t => t.z.Exact).ToArray(), Figure.Palette(1),
                $"exact kernel, all rows (p = {exactFit?.Fit.Slope:F2})", log10: true, marker: MarkerShape.FilledDiamond);
        if (extrap.Length > 0)
            Figure.AddSpread(time, extrap.Select(t => ln[t.i]).ToArray(), extrap.Select(t => t.z.Exact).ToArray(), Figure.Palette(1),
                "exact kernel, 1024 sampled rows × n/rows (extrapolated)", log10: true, marker: MarkerShape.OpenDiamond);
        // Reference slopes through the algorithm's median time at the middle size.
        int mid = sizes.Count / 2;
        double t0 = sizes[mid].Of(x => x.Seconds).Median, n0 = n[mid];
        void Ref(Func<double, double> g, string label, int color) =>
            Figure.AddReference(time, ln, n.Select(v => Math.Log10(t0 * g(v) / g(n0))).ToArray(), Figure.Palette(color).WithAlpha(0.6), label);
        Ref(v => v * Math.Log(v), "reference n log n", 7);
        if (c.D > 1) Ref(v => Math.Pow(v, 2 - 1.0 / c.D), $"reference n^(2−1/d) = n^{2 - 1.0 / c.D:G3}", 5);
        Ref(v => v * v, "reference n²", 3);
        Figure.Log10Axis(time.Axes.Bottom);
        Figure.Log10Axis(time.Axes.Left);
        time.ShowLegend(Alignment.UpperLeft);

        var work = Figure.New("work per query (the certificate's counters)", "n", "per query");
        bool any = false;
        void Counter(Func<Sample, double> f, string label, int color, MarkerShape m)
        {
            var s = sizes.Select(z => z.Of(f)).ToArray();
            if (!s.All(x => x.Min > 0)) return;
            Figure.AddSpread(work, ln, s, Figure.Palette(color), label, log10: true, marker: m);
            any = true;
        }
        Counter(x => x.NodesPerQuery, "tree nodes visited", 0, MarkerShape.FilledCircle);
        Counter(x => x.DirectKeysPerQuery, "keys summed directly", 3, MarkerShape.FilledSquare);
        Counter(x => x.ExpansionsPerQuery, "nodes answered from moments", 2, MarkerShape.FilledTriangleUp);
        if (any)
        {
            double w0 = sizes[mid].Of(x => x.NodesPerQuery).Median;
            if (w0 > 0)
            {
                Figure.AddReference(work, ln, n.Select(v => Math.Log10(w0 * Math.Log(v) / Math.Log(n0))).ToArray(), Figure.Palette(7).WithAlpha(0.6), "reference log n");
                if (c.D > 1)
                    Figure.AddReference(work, ln, n.Select(v => Math.Log10(w0 * Math.Pow(v / n0, 1 - 1.0 / c.D))).ToArray(), Figure.Palette(5).WithAlpha(0.6), $"reference n^(1−1/d) (crossing number)");
                Figure.AddReference(work, ln, n.Select(v => Math.Log10(w0 * v / n0)).ToArray(), Figure.Palette(3).WithAlpha(0.6), "reference n (every key)");
            }
            work.ShowLegend(Alignment.UpperLeft);
        }
        else work.Add.Annotation("this algorithm reports no per-query work counters", Alignment.MiddleCenter);
        Figure.Log10Axis(work.Axes.Bottom);
        Figure.Log10Axis(work.Axes.Left);
        Figure.SaveSideBySide([time, work], stem, 900, 640);
    }
}
