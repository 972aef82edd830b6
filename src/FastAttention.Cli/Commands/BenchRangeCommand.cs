using System.CommandLine;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli.Commands;

/// <summary><c>fastattn bench range</c>: one range-search-family algorithm against the exact kernel at large entries.</summary>
internal static class BenchRangeCommand
{
    public static Command Create()
    {
        var n = new Option<int>("--n") { Description = "Queries = keys.", Required = true };
        var d = new Option<int>("--d") { Description = "Head dimension.", Required = true };
        var bound = new Option<double>("--bound") { Description = "Entry bound B of Q and K.", DefaultValueFactory = _ => 100 };
        var scale = new Option<double>("--scale") { Description = "Logit scale s.", DefaultValueFactory = _ => 1 };
        var epsilon = new Option<double>("--epsilon") { Description = "Target ‖·‖∞ error.", Required = true };
        var valueBound = new Option<double>("--value-bound") { Description = "Entry bound of V (default 1).", DefaultValueFactory = _ => 1 };
        var distribution = new Option<string>("--distribution") { Description = "uniform, normal, line (keys on the diagonal, queries orthogonal to it), clustered, strip (keys in a thin strip, queries along its normal), constant (keys (t, t, 0, …)) or sphere (keys on a sphere cap).", DefaultValueFactory = _ => "uniform" };
        var causal = new Option<bool>("--causal") { Description = "Causal mask (query i attends to keys j ≤ i)." };
        var algorithm = new Option<string>("--algorithm") { Description = "range, vector, rounding or lowrank.", DefaultValueFactory = _ => "range" };
        var threads = CommonOptions.Threads();
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var repeats = new Option<int>("--repeats") { Description = "Timed runs of the algorithm on the full problem, after one untimed full-size run; its time is their median (min, max and the first run reported too).", DefaultValueFactory = _ => BenchRangeMeasurement.DefaultRepeats };
        var cmd = new Command("range", "Time a range-search algorithm (Gupta et al.) against the exact kernel (in full, its runs alternating with the algorithm's, when that takes ≤ 6 s over the repeats, else on 1024 sampled rows).")
            { n, d, bound, scale, epsilon, valueBound, distribution, algorithm, threads, json, causal, repeats };
        cmd.SetAction(r =>
        {
            int nn = r.GetValue(n), dd = r.GetValue(d), t = r.GetValue(threads);
            CommonOptions.AtLeast("--n", nn, 1); CommonOptions.AtLeast("--d", dd, 1); CommonOptions.AtLeast("--repeats", r.GetValue(repeats), 1); CommonOptions.Fits("--n, --d", nn, dd); t = CommonOptions.ThreadCount(t);
            double b = r.GetValue(bound), s = r.GetValue(scale), e = r.GetValue(epsilon), vb = r.GetValue(valueBound);
            CommonOptions.Positive("--bound", b); CommonOptions.Positive("--epsilon", e); CommonOptions.Positive("--value-bound", vb);
            if (!double.IsFinite(s)) throw new UsageException($"--scale must be finite (got {s}).");
            var dist = Instances.ParseDistribution(r.GetValue(distribution)!);
            string alg = r.GetValue(algorithm)!;
            if (alg is not ("range" or "vector" or "rounding" or "lowrank"))
                throw new UsageException($"--algorithm must be range, vector, rounding or lowrank (got '{alg}').");
            var o = r.InvocationConfiguration.Output;
            CliContext.Current.Status($"bench range: timing '{alg}' and the exact kernel at n = {nn}, d = {dd}…");
            var report = BenchRangeMeasurement.Run(alg, nn, dd, b, s, e, dist, t, vb, repeats: r.GetValue(repeats), causal: r.GetValue(causal));
            if (r.GetValue(json)) o.WriteLine(Reports.Json(report, ReportJson.Default.BenchRangeReport));
            else Reports.WriteText(o, report, ReportJson.Default.BenchRangeReport, 20, x => x.ToString("G6", System.Globalization.CultureInfo.InvariantCulture));
            return 0;
        });
        return cmd;
    }
}
