using System.CommandLine;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli.Commands;

/// <summary><c>fastattn bench semantics</c>: what masks and grouped-query heads cost the exact kernel, and how tight its
/// rounding certificate is — ratios measured in one run.</summary>
internal static class BenchSemanticsCommand
{
    public static Command Create()
    {
        var n = new Option<int>("--n") { Description = "Queries of the mask runs.", DefaultValueFactory = _ => 8192 };
        var m = new Option<int?>("--m") { Description = "Keys of the mask runs (default n)." };
        var d = new Option<int>("--d") { Description = "Head dimension.", DefaultValueFactory = _ => 64 };
        var window = new Option<int>("--window") { Description = "Sliding window of the window run.", DefaultValueFactory = _ => 512 };
        var gqaN = new Option<int>("--gqa-n") { Description = "Queries = keys of the GQA/MHA runs.", DefaultValueFactory = _ => 2048 };
        var qHeads = new Option<int>("--query-heads") { Description = "Query heads of the GQA/MHA runs.", DefaultValueFactory = _ => 8 };
        var kvHeads = new Option<int>("--kv-heads") { Description = "K/V heads of the GQA run.", DefaultValueFactory = _ => 2 };
        var boundN = new Option<int>("--bound-n") { Description = "Queries = keys of the certificate runs (checked on every row).", DefaultValueFactory = _ => 512 };
        var repeats = new Option<int>("--repeats") { Description = "Timed runs per contender; the fastest counts.", DefaultValueFactory = _ => 3 };
        var threads = CommonOptions.Threads();
        var precision = CommonOptions.Precision();
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("semantics", "Time GQA against MHA and masks against no mask; the exact certificate's bound against its measured error.")
            { n, m, d, window, gqaN, qHeads, kvHeads, boundN, repeats, threads, precision, json };
        cmd.SetAction(r =>
        {
            int nn = r.GetValue(n), mm = r.GetValue(m) ?? nn, dd = r.GetValue(d), w = r.GetValue(window), g = r.GetValue(gqaN);
            int hq = r.GetValue(qHeads), hkv = r.GetValue(kvHeads), bn = r.GetValue(boundN), rep = r.GetValue(repeats), t = r.GetValue(threads);
            CommonOptions.AtLeast("--n", nn, 1); CommonOptions.AtLeast("--m", mm, 2); CommonOptions.AtLeast("--d", dd, 1);
            CommonOptions.AtLeast("--window", w, 1); CommonOptions.AtLeast("--gqa-n", g, 1); CommonOptions.AtLeast("--query-heads", hq, 1);
            CommonOptions.AtLeast("--kv-heads", hkv, 1); CommonOptions.AtLeast("--bound-n", bn, 1); CommonOptions.AtLeast("--repeats", rep, 1);
            CommonOptions.AtLeast("--threads", t, 0);
            if (hq % hkv != 0) throw new UsageException($"--kv-heads {hkv} must divide --query-heads {hq}.");
            bool f32 = CommonOptions.IsFloat32(r.GetValue(precision), true);
            var report = SemanticsBenchmark.Run(nn, mm, dd, w, g, hq, hkv, bn, t == 0 ? Environment.ProcessorCount : t, f32, rep);
            var o = r.InvocationConfiguration.Output;
            if (r.GetValue(json)) o.WriteLine(Reports.Json(report, ReportJson.Default.BenchSemanticsReport));
            else Reports.WriteText(o, report, ReportJson.Default.BenchSemanticsReport, 26);
            return 0;
        });
        return cmd;
    }
}
