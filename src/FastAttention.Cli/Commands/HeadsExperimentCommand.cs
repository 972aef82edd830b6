using System.CommandLine;
using System.Globalization;
using FastAttention.Cli.Infrastructure;
using FastAttention.Cli.Rendering;
using FastAttention.Exact;
using FastAttention.Planning;
using ScottPlot;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn experiment heads --q Q.npy --k K.npy --v V.npy</c>: real model heads ([n, d], [h, n, d] or
/// [b, h, n, d], e.g. every layer of a model exported with numpy). Per head: the statistics that decide which regime
/// it is in — the entry bound B, the largest logit |s·qᵢ·kⱼ| (on sampled rows) and its Cauchy–Schwarz bound, the
/// numerical ranks of Q and K at ε (the library's <see cref="HeadStatistics"/>), the softmax entropy — and every algorithm's verdict through plan → execute
/// (<see cref="RegimeMeasurement"/>: refusal code, or measured speedup and error). The figure places each head on the
/// regime map at (effective dimension = min(rank Q, rank K), √(largest logit)) — where a map cell drawn at s = 1/d has
/// logits up to B², so a head with largest logit R sits at B = √R — coloured by the planner's pick, with the measured
/// map behind it when <c>--map regimes-cells.csv</c> is given, and the per-head speedups beside it.
/// </summary>
internal static class HeadsExperimentCommand
{
    public const string HeadsCsv = "heads.csv", AlgorithmsCsv = "heads-algorithms.csv", FigureStem = "heads";

    public static readonly string[] Columns =
        ["head", "n", "m", "d", "dv", "scale", "entryBound", "qMax", "kMax", "vMax", "largestLogit", "logitBound", "meanRowLogitRange", "statsRows",
         "rankQ", "rankK", "entropy", "normalizedEntropy", "winner", "pickSource", "speedup", "seconds", "exactSeconds",
         "maxAbsError", "withinEpsilon", "epsilon"];

    public static readonly string[] AlgorithmColumns =
        ["head", "algorithm", "status", "reason", "seconds", "secondsMin", "secondsMax", "predictedSeconds", "exactSeconds", "speedup",
         "errorBound", "maxAbsError", "withinEpsilon", "detail"];

    public static Command Create()
    {
        var common = new ExperimentOptions($"{HeadsCsv}, {AlgorithmsCsv}, {FigureStem}.png and {FigureStem}.svg");
        var q = new Option<string>("--q") { Description = "Queries .npy: [n, d], [h, n, d] or [b, h, n, d].", Required = true };
        var k = new Option<string>("--k") { Description = "Keys .npy (same leading dimensions and d as Q).", Required = true };
        var v = new Option<string>("--v") { Description = "Values .npy (same leading dimensions and m as K).", Required = true };
        var epsilon = new Option<double>("--epsilon") { Description = "Target ‖·‖∞ error ε.", DefaultValueFactory = _ => 1e-3 };
        var scale = new Option<double?>("--scale") { Description = "Logit scale s (default 1/√d, as PyTorch)." };
        var map = new Option<string?>("--map") { Description = "regimes-cells.csv from 'experiment regimes', drawn behind the heads." };
        var sampleRows = new Option<int>("--sample-rows") { Description = "Query rows per head for the logit and entropy statistics and the error check.", DefaultValueFactory = _ => 256 };
        var maxHeads = new Option<int?>("--max-heads") { Description = "Analyse only the first this many heads (--quick: 4)." };
        var algorithms = new Option<string?>("--algorithms") { Description = "Approximate algorithms to measure, comma-separated (default: every registered one; the planner 'auto' still considers all)." };
        var cmd = new Command("heads", "Real model heads: per head B, largest logit, numerical ranks, softmax entropy and every algorithm's verdict; the heads on the regime map.")
            { q, k, v, epsilon, scale, map, sampleRows, maxHeads, algorithms };
        common.AddTo(cmd);
        cmd.SetAction(r =>
        {
            var run = common.Parse(r);
            double eps = r.GetValue(epsilon);
            CommonOptions.Positive("--epsilon", eps);
            int rows = r.GetValue(sampleRows);
            CommonOptions.AtLeast("--sample-rows", rows, 1);
            int? limit = r.GetValue(maxHeads) ?? (run.Quick ? 4 : null);
            if (limit is int l) CommonOptions.AtLeast("--max-heads", l, 1);
            double? s = r.GetValue(scale);
            if (s is double sv && (!double.IsFinite(sv) || sv == 0)) throw new UsageException($"--scale must be a nonzero finite number (got {sv}).");
            string? mapPath = r.GetValue(map);
            var mapCells = mapPath is null ? null : ReadMap(mapPath);
            var files = AttentionFiles.Load(r.GetValue(q)!, r.GetValue(k)!, r.GetValue(v)!);
            var problem = files.Problem<double>(s, false);
            Run(run, problem, new Config(eps, rows, limit, mapPath, mapCells, RegimeMeasurement.ParseAlgorithms(r.GetValue(algorithms))));
            return 0;
        });
        return cmd;
    }

    public sealed record Config(double Epsilon, int SampleRows, int? MaxHeads, string? MapPath, MapBackground? Map, IReadOnlyCollection<string>? Algorithms = null);

    /// <summary>A measured map read back from regimes-cells.csv.</summary>
    public sealed record MapBackground(IReadOnlyList<MapCell> Cells, int N, double Epsilon);

    /// <summary>The statistics of one head.</summary>
    public sealed record HeadStats(double QMax, double KMax, double VMax, double LargestLogit, double LogitBound, double MeanRowLogitRange, int StatsRows,
        int RankQ, int RankK, double Entropy, double NormalizedEntropy)
    {
        public double EntryBound => Math.Max(QMax, KMax);
        public int EffectiveDimension => Math.Max(1, Math.Min(RankQ, RankK));
    }

    public sealed record Head(int Index, HeadStats Stats, ProblemMeasurement Measurement);

    public static IReadOnlyList<Head> Run(ExperimentRun run, AttentionProblem<double> problem, Config c)
    {
        const string Name = "heads";
        run.CreateDir();
        var o = run.Output;
        int heads = c.MaxHeads is int l ? Math.Min(l, problem.Heads) : problem.Heads;
        o.WriteLine($"heads: {problem.Heads} head(s) of n = {problem.N}, m = {problem.M}, d = {problem.D}, dv = {problem.Dv}, s = {problem.Scale:G4}, ε = {c.Epsilon:G3}" +
                    (heads < problem.Heads ? $"; analysing the first {heads}" : "") + $"; {run.Repeats} timed runs per algorithm.");
        RegimeMeasurement.WarmUp(HeadProblem(problem, 0, Math.Min(problem.N, 512)), c.Epsilon, run.Threads, c.Algorithms);
        o.WriteLine($"{"head",4} {"B",9} {"max logit",10} {"rank Q",6} {"rank K",6} {"entropy",8} {"winner",11} {"speedup",8}  every algorithm");
        var list = new List<Head>();
        for (int h = 0; h < heads; h++)
        {
            run.Progress(Name, $"head {h + 1}/{heads}: statistics");
            var hp = HeadProblem(problem, h, problem.N);
            var stats = Statistics(hp, c.Epsilon, c.SampleRows, run.Seed + h);
            run.Progress(Name, $"head {h + 1}/{heads}: every algorithm");
            var m = RegimeMeasurement.Run(hp, c.Epsilon, run.Threads, run.Repeats, run.Seed + h, errorRows: c.SampleRows, only: c.Algorithms);
            list.Add(new Head(h, stats, m));
            string all = string.Join(" ", m.Runs.Select(x => x.Status switch
            {
                RunStatus.Ran => $"{x.Algorithm}={m.ExactSeconds.Median / x.Seconds.Median:0.#}×",
                RunStatus.SlowerOnSample => $"{x.Algorithm}=slow",
                _ => $"{x.Algorithm}:{x.Reason}",
            }));
            o.WriteLine($"{h,4} {stats.EntryBound,9:G4} {stats.LargestLogit,10:G4} {stats.RankQ,6} {stats.RankK,6} {stats.NormalizedEntropy,8:F3} {m.Pick.Algorithm,11} {m.Speedup,7:F1}×  {all}");
        }
        Write(run, problem, c, list);
        int fast = list.Count(x => x.Measurement.Pick.Algorithm != "exact" && x.Measurement.Speedup >= 1);
        o.WriteLine($"{fast} of {list.Count} heads have a certified algorithm faster than exact at ε = {c.Epsilon:G3}.");
        o.WriteLine($"wrote {run.PathOf(HeadsCsv)}, {run.PathOf(AlgorithmsCsv)}, {run.PathOf(FigureStem)}.png and .svg");
        return list;
    }

    /// <summary>Head h (its first <paramref name="rows"/> queries) as a one-head problem sharing the data.</summary>
    private static AttentionProblem<double> HeadProblem(AttentionProblem<double> p, int h, int rows) =>
        new(p.Q.Slice(h * p.N * p.D, rows * p.D), p.K.Slice(h * p.M * p.D, p.M * p.D), p.V.Slice(h * p.M * p.Dv, p.M * p.Dv),
            rows, p.M, p.D, p.Dv, 1, p.Scale);

    /// <summary>The library's head statistics (‖Q‖∞, ‖K‖∞, ‖V‖∞, the Cauchy–Schwarz logit bound, the numerical ranks of
    /// Q and K at ε — what the low-rank method would truncate to), and on sampled rows the largest |logit|, the mean
    /// logit range per row and the softmax entropy (the float64 reference's softmax row).</summary>
    public static HeadStats Statistics(AttentionProblem<double> p, double epsilon, int sampleRows, int seed)
    {
        var lib = HeadStatistics.Measure(p, 0, epsilon);
        var q = p.Q.Span; var k = p.K.Span;
        int d = p.D, m = p.M;
        var rows = Instances.SampleRows(p.N, sampleRows, seed + 11);
        var prob = new double[m];
        double largest = 0, range = 0, entropy = 0;
        foreach (int i in rows)
        {
            var qi = q.Slice(i * d, d);
            double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
            for (int j = 0; j < m; j++)
            {
                double x = p.Scale * Numerics.CompensatedSum.Dot(qi, k.Slice(j * d, d));
                lo = Math.Min(lo, x); hi = Math.Max(hi, x);
            }
            largest = Math.Max(largest, Math.Max(Math.Abs(lo), Math.Abs(hi)));
            range += hi - lo;
            ReferenceAttention.ProbabilityRow(qi, k, d, p.Scale, prob);
            double hrow = 0;
            foreach (double pj in prob) if (pj > 0) hrow -= pj * Math.Log(pj);
            entropy += hrow;
        }
        entropy /= rows.Length;
        return new HeadStats(lib.QMax, lib.KMax, lib.VMax, largest, lib.LogitBound, range / rows.Length, rows.Length,
            lib.RankQ ?? d, lib.RankK ?? d, entropy, m > 1 ? entropy / Math.Log(m) : 0);
    }

    private static void Write(ExperimentRun run, AttentionProblem<double> problem, Config c, List<Head> heads)
    {
        var table = new CsvTable(Columns);
        var algs = new CsvTable(AlgorithmColumns);
        foreach (var h in heads)
        {
            var s = h.Stats; var m = h.Measurement;
            table.Add(h.Index, problem.N, problem.M, problem.D, problem.Dv, problem.Scale, s.EntryBound, s.QMax, s.KMax, s.VMax, s.LargestLogit, s.LogitBound,
                s.MeanRowLogitRange, s.StatsRows, s.RankQ, s.RankK, s.Entropy, s.NormalizedEntropy, m.Pick.Algorithm, m.Pick.Source, m.Speedup,
                m.Pick.Seconds.Median, m.ExactSeconds.Median, m.Pick.MaxAbsError, double.IsNaN(m.Pick.MaxAbsError) ? null : m.Pick.MaxAbsError <= c.Epsilon, c.Epsilon);
            foreach (var a in m.Runs)
                algs.Add(h.Index, a.Algorithm, a.StatusName, a.Reason?.ToString(), a.Seconds.Count > 0 ? a.Seconds.Median : double.NaN,
                    a.Seconds.Count > 0 ? a.Seconds.Min : double.NaN, a.Seconds.Count > 0 ? a.Seconds.Max : double.NaN, a.PredictedSeconds, m.ExactSeconds.Median,
                    a.Status == RunStatus.Ran ? m.ExactSeconds.Median / a.Seconds.Median : double.NaN, a.ErrorBound, a.MaxAbsError,
                    a.Status == RunStatus.Ran ? a.WithinEpsilon : null, a.Detail);
        }
        table.Write(run.PathOf(HeadsCsv));
        algs.Write(run.PathOf(AlgorithmsCsv));
        Plot(run, problem, c, heads);
    }

    private static readonly int[] DefaultDs = [1, 2, 3, 4, 8, 16, 64];
    private static readonly double[] DefaultBounds = [0.25, 0.5, 1, 2, 3, 10, 100, 1000, 10000];

    private static void Plot(ExperimentRun run, AttentionProblem<double> problem, Config c, List<Head> heads)
    {
        var ds = c.Map?.Cells.Select(x => x.D).Distinct().Order().ToArray() ?? DefaultDs;
        var bs = c.Map?.Cells.Select(x => x.Bound).Distinct().Order().ToArray() ?? DefaultBounds;
        var axes = new RegimeAxes(ds, bs);
        string behind = c.Map is { } mb ? $"measured map: {Path.GetFileName(c.MapPath)}, n = {mb.N}, ε = {mb.Epsilon:G2}" : "theory boundaries only (no --map)";
        var left = Figure.New($"{heads.Count} head(s) on the regime map\n{behind}", "effective head dimension min(rank Q, rank K)", "√(largest logit)  (= B of a map cell with the same logit range)");
        if (c.Map is { } map)
        {
            RegimeMap.DrawCells(left, axes, map.Cells);
            RegimeMap.DrawTheory(left, axes, map.N, map.Epsilon, true);
        }
        else RegimeMap.DrawTheory(left, axes, problem.N, c.Epsilon, true);
        var winners = heads.Select(h => h.Measurement.Pick.Algorithm).Distinct().Order().ToList();
        var shapes = new[] { MarkerShape.FilledCircle, MarkerShape.FilledSquare, MarkerShape.FilledTriangleUp, MarkerShape.FilledDiamond, MarkerShape.Cross, MarkerShape.Asterisk };
        for (int w = 0; w < winners.Count; w++)
        {
            var hs = heads.Where(h => h.Measurement.Pick.Algorithm == winners[w]).ToArray();
            // A small deterministic jitter so heads with equal statistics stay visible.
            double[] xs = hs.Select(h => axes.X(h.Stats.EffectiveDimension) + 0.08 * Jitter(h.Index)).ToArray();
            double[] ys = hs.Select(h => axes.Y(Math.Sqrt(Math.Max(h.Stats.LargestLogit, 1e-12))) + 0.08 * Jitter(h.Index + 7919)).ToArray();
            var mk = left.Add.Markers(xs, ys, shapes[w % shapes.Length], 11, winners[w] == "exact" ? Colors.Red : Figure.AlgorithmColor(winners[w]));
            mk.LegendText = $"heads whose pick is {winners[w]}";
            if (heads.Count <= 24)
                for (int i = 0; i < hs.Length; i++)
                {
                    var t = left.Add.Text(hs[i].Index.ToString(CultureInfo.InvariantCulture), xs[i], ys[i]);
                    t.OffsetX = 7; t.OffsetY = -7; t.LabelFontSize = 10;
                }
        }
        axes.Apply(left);
        left.ShowLegend(Edge.Right);

        // The verdict of every algorithm on every head: measured speedup (map colours) or the refusal code.
        var names = RegimeMeasurement.Candidates().Where(a => c.Algorithms is null || c.Algorithms.Contains(a)).Append("pick").ToList();
        var right = Figure.New($"every algorithm on every head (ε = {c.Epsilon:G2}): speedup over exact or refusal", "head", "");
        bool text = heads.Count <= 24;
        foreach (var h in heads)
            for (int a = 0; a < names.Count; a++)
            {
                var m = h.Measurement;
                string label;
                Color color;
                if (names[a] == "pick")
                {
                    color = m.Pick.Algorithm == "exact" ? RegimeMap.Slower : RegimeMap.SpeedupColor(m.Speedup);
                    label = m.Pick.Algorithm == "exact" ? "exact" : $"{m.Speedup:0.#}×\n{m.Pick.Algorithm}";
                }
                else
                {
                    var r = m.Runs.First(x => x.Algorithm == names[a]);
                    double sp = r.Status == RunStatus.Ran ? m.ExactSeconds.Median / r.Seconds.Median : double.NaN;
                    color = r.Status switch { RunStatus.Ran => RegimeMap.SpeedupColor(sp), RunStatus.SlowerOnSample => RegimeMap.Slower, _ => RegimeMap.Refused };
                    label = r.Status switch { RunStatus.Ran => $"{sp:0.#}×", RunStatus.SlowerOnSample => "slower", _ => r.Reason?.ToString() ?? "refused" };
                }
                var rect = right.Add.Rectangle(h.Index - 0.5, h.Index + 0.5, a - 0.5, a + 0.5);
                rect.FillColor = color;
                rect.LineColor = Colors.White;
                if (text)
                {
                    var t = right.Add.Text(label, h.Index, a);
                    t.Alignment = Alignment.MiddleCenter;
                    t.LabelFontSize = heads.Count <= 8 ? 11 : 8;
                    t.LabelFontColor = color == RegimeMap.Slower ? Colors.Black : color == RegimeMap.Refused ? Colors.White
                        : RegimeMap.SpeedupTextColor(names[a] == "pick" ? m.Speedup : m.ExactSeconds.Median / m.Runs.First(x => x.Algorithm == names[a]).Seconds.Median);
                }
            }
        right.Axes.Left.SetTicks(Enumerable.Range(0, names.Count).Select(i => (double)i).ToArray(), names.ToArray());
        right.Axes.Bottom.SetTicks(heads.Select(h => (double)h.Index).ToArray(), heads.Select(h => h.Index.ToString(CultureInfo.InvariantCulture)).ToArray());
        right.Axes.SetLimits(heads[0].Index - 0.5, heads[^1].Index + 0.5, -0.5, names.Count - 0.5);
        Figure.SaveSideBySide([left, right], run.PathOf(FigureStem), 1150, 680);
    }

    private static double Jitter(int i) => ((i * 2654435761u) % 1000) / 500.0 - 1;

    /// <summary>Reads regimes-cells.csv (exit 2 when it is not one).</summary>
    public static MapBackground ReadMap(string path)
    {
        var (header, rows) = CsvReader.Read(path);
        int Col(string name)
        {
            int i = Array.IndexOf(header, name);
            if (i < 0) throw new UsageException($"--map: {path} has no '{name}' column; give the regimes-cells.csv written by 'fastattn experiment regimes'.");
            return i;
        }
        int cn = Col("n"), cd = Col("d"), cb = Col("bound"), cw = Col("winner"), cs = Col("speedup"), cr = Col("allRefused"), ce = Col("epsilon"),
            cf = Col("fastestMeasured"), cfs = Col("fastestMeasuredSpeedup");
        if (rows.Count == 0) throw new UsageException($"--map: {path} has no cells.");
        var inv = CultureInfo.InvariantCulture;
        try
        {
            var cells = rows.Select(r => new MapCell(int.Parse(r[cd], inv), double.Parse(r[cb], inv), r[cw],
                r[cs].Length == 0 ? double.NaN : double.Parse(r[cs], inv), r[cr] == "true",
                r[cf].Length == 0 ? null : r[cf], r[cfs].Length == 0 ? double.NaN : double.Parse(r[cfs], inv))).ToList();
            return new MapBackground(cells, int.Parse(rows[0][cn], inv), double.Parse(rows[0][ce], inv));
        }
        catch (FormatException)
        {
            throw new UsageException($"--map: {path} has a malformed number; give the regimes-cells.csv written by 'fastattn experiment regimes'.");
        }
    }
}
