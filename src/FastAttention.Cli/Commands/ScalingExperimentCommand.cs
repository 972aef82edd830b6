using System.CommandLine;
using System.Globalization;
using System.Text;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn experiment scaling</c>: time of a range-search-family algorithm over n = 2^minLog … 2^maxLog with the
/// exact kernel alongside, the fitted exponent of time vs n (least squares on log–log), a CSV and a PNG plot. The exact
/// kernel is timed on a sample of 1024 query rows and scaled by n/rows (marked 'extrapolated' when rows &lt; n).
/// Gupta et al. predict Õ(n) for d = 1 and Õ(n^{2−1/d}) for range search (Lemma 3.6).
/// </summary>
internal static class ScalingExperimentCommand
{
    public static Command Create()
    {
        var algorithm = new Option<string>("--algorithm") { Description = "range, vector, rounding or lowrank.", DefaultValueFactory = _ => "range" };
        var d = new Option<int>("--d") { Description = "Head dimension.", Required = true };
        var outDir = new Option<string>("--out") { Description = "Output folder for the CSV and PNG.", DefaultValueFactory = _ => "." };
        var minLog = new Option<int>("--min-log-n") { Description = "Smallest n = 2^this.", DefaultValueFactory = _ => 12 };
        var maxLog = new Option<int>("--max-log-n") { Description = "Largest n = 2^this.", DefaultValueFactory = _ => 20 };
        var bound = new Option<double>("--bound") { Description = "Entry bound B of Q and K.", DefaultValueFactory = _ => 100 };
        var scale = new Option<double>("--scale") { Description = "Logit scale s.", DefaultValueFactory = _ => 1 };
        var epsilon = new Option<double?>("--epsilon") { Description = "Target ‖·‖∞ error (default 1e-6 for d = 1, 1e-4 otherwise)." };
        var distribution = new Option<string>("--distribution") { Description = "uniform, normal, line or clustered.", DefaultValueFactory = _ => "uniform" };
        var threads = CommonOptions.Threads();
        var repeats = new Option<int>("--repeats") { Description = "Runs of the algorithm per size; the fastest counts (the machine may be shared).", DefaultValueFactory = _ => 3 };
        var cmd = new Command("scaling", "Time vs n for a range-search algorithm with the exact kernel alongside; fitted exponent, CSV and PNG.")
            { algorithm, d, outDir, minLog, maxLog, bound, scale, epsilon, distribution, threads, repeats };
        cmd.SetAction(r =>
        {
            int dd = r.GetValue(d), lo = r.GetValue(minLog), hi = r.GetValue(maxLog), t = CommonOptions.ThreadCount(r.GetValue(threads)), reps = r.GetValue(repeats);
            CommonOptions.AtLeast("--repeats", reps, 1);
            CommonOptions.AtLeast("--d", dd, 1); CommonOptions.AtLeast("--min-log-n", lo, 4); CommonOptions.AtLeast("--max-log-n", hi, lo + 1);
            if (hi > 24) throw new UsageException($"--max-log-n must be at most 24 (got {hi}).");
            string alg = r.GetValue(algorithm)!;
            if (alg is not ("range" or "vector" or "rounding" or "lowrank"))
                throw new UsageException($"--algorithm must be range, vector, rounding or lowrank (got '{alg}').");
            double eps = r.GetValue(epsilon) ?? (dd == 1 ? 1e-6 : 1e-4), b = r.GetValue(bound), s = r.GetValue(scale);
            CommonOptions.Positive("--epsilon", eps); CommonOptions.Positive("--bound", b); CommonOptions.Finite("--scale", s);
            var dist = Instances.ParseDistribution(r.GetValue(distribution)!);
            string dir = r.GetValue(outDir)!;
            if (File.Exists(dir)) throw new UsageException($"--out: '{dir}' is a file; --out names the folder for the CSV and PNG.");
            if (!Directory.Exists(dir)) throw new UsageException($"--out: the folder '{dir}' does not exist.");
            string stem = Path.Combine(dir, $"scaling-{alg}-d{dd}-{dist.ToString().ToLowerInvariant()}");
            using var outputs = new OutputFiles();
            string csvPath = outputs.Output("--out", stem + ".csv"), pngPath = outputs.Output("--out", stem + ".png");
            var context = CliContext.Current;
            var o = r.InvocationConfiguration.Output;
            var rows = new List<(int N, double Seconds, double Exact, bool Extrapolated, double Error, double Bound)>();
            o.WriteLine($"{"n",10} {"seconds",12} {"exact [s]",12} {"speedup",10} {"max error",11} {"bound",11}");
            for (int lg = lo; lg <= hi; lg++)
            {
                int n = 1 << lg;
                context.ThrowIfCancelled();
                context.Status($"experiment scaling: {alg} and exact at n = {n} ({lg - lo + 1} of {hi - lo + 1})…");
                var f = BenchRangeMeasurement.Run(alg, n, dd, b, s, eps, dist, t, 1, repeats: reps);
                double sec = f.Seconds, ex = f.ExactSeconds;
                bool extrapolated = f.ExactSampledRows < n;
                rows.Add((n, sec, ex, extrapolated, f.MaxAbsError, f.ErrorBound));
                o.WriteLine($"{n,10} {sec,12:G4} {ex,12:G4}{(extrapolated ? "*" : " "),1}{ex / sec,9:F1}× {f.MaxAbsError,11:E2} {f.ErrorBound,11:E2}");
            }
            double slope = Fit(rows.Select(x => (double)x.N), rows.Select(x => x.Seconds));
            double exactSlope = Fit(rows.Select(x => (double)x.N), rows.Select(x => x.Exact));
            // The same fit over the larger half of the sizes only, where fixed overheads matter least.
            var upper = rows.Skip(rows.Count / 2).ToList();
            double upperSlope = Fit(upper.Select(x => (double)x.N), upper.Select(x => x.Seconds));
            o.WriteLine($"fitted exponent (time ∝ n^p): {alg} p = {slope:F3} (n ≥ {upper[0].N}: p = {upperSlope:F3}); exact p = {exactSlope:F3}   (* = exact timed on sampled rows, scaled by n/rows)");
            var csv = new StringBuilder("n,seconds,exactSeconds,exactExtrapolated,speedup,maxAbsError,errorBound\n");
            foreach (var x in rows)
                csv.Append(CultureInfo.InvariantCulture, $"{x.N},{x.Seconds:R},{x.Exact:R},{(x.Extrapolated ? "true" : "false")},{x.Exact / x.Seconds:R},{x.Error:R},{x.Bound:R}\n");
            csv.Append(CultureInfo.InvariantCulture, $"# fitted exponent {alg} {slope:R} (n >= {upper[0].N}: {upperSlope:R}) exact {exactSlope:R}\n");
            outputs.WriteText(csvPath, csv.ToString());
            var plot = new ScottPlot.Plot();
            var xs = rows.Select(x => Math.Log2(x.N)).ToArray();
            var a = plot.Add.Scatter(xs, rows.Select(x => Math.Log10(x.Seconds)).ToArray());
            a.LegendText = $"{alg} (p = {slope:F2})";
            var e = plot.Add.Scatter(xs, rows.Select(x => Math.Log10(x.Exact)).ToArray());
            e.LegendText = $"exact, sampled rows × n/rows (p = {exactSlope:F2})";
            plot.Title($"{alg}, d = {dd}, B = {b}, s = {s}, ε = {eps:G2}, {dist.ToString().ToLowerInvariant()}");
            plot.XLabel("log2 n");
            plot.YLabel("log10 seconds");
            plot.ShowLegend();
            byte[] png = plot.GetImage(900, 600).GetImageBytes(ScottPlot.ImageFormat.Png);
            outputs.WriteBytes(pngPath, png);
            outputs.Commit();
            o.WriteLine($"wrote {stem}.csv and {stem}.png");
            return 0;
        });
        return cmd;
    }

    /// <summary>Least-squares slope of log t against log n.</summary>
    internal static double Fit(IEnumerable<double> n, IEnumerable<double> t)
    {
        var x = n.Select(v => Math.Log(v)).ToArray(); var y = t.Select(v => Math.Log(v)).ToArray();
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0;
        for (int i = 0; i < x.Length; i++) { sxy += (x[i] - mx) * (y[i] - my); sxx += (x[i] - mx) * (x[i] - mx); }
        return sxy / sxx;
    }
}
