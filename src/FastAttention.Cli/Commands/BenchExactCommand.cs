using System.CommandLine;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Cli.Commands;

/// <summary><c>fastattn bench exact</c>: our exact kernel against the machine's limits (FMA peak, exp limit, memory bandwidth)
/// and ONNX Runtime, all in one run.</summary>
internal static class BenchExactCommand
{
    public static Command Create()
    {
        var n = new Option<int>("--n") { Description = "Queries.", Required = true };
        var d = new Option<int>("--d") { Description = "Head dimension.", Required = true };
        var m = new Option<int?>("--m") { Description = "Keys (default n)." };
        var threads = CommonOptions.Threads();
        var precision = CommonOptions.Precision();
        var causal = new Option<bool>("--causal") { Description = "Causal mask." };
        var bound = new Option<double>("--bound")
        {
            Description = "Entry bound of Q and K: normal entries of standard deviation bound/3, clamped at ±bound (default 1). Large logits move the online softmax's reference often.",
            DefaultValueFactory = _ => 1,
        };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var repeats = new Option<int>("--repeats")
        {
            Description = "Rounds: each times the kernel and ONNX Runtime once and the machine limits once; the kernel's figure is the median.",
            DefaultValueFactory = _ => ExactBenchmark.DefaultRepeats,
        };
        var cmd = new Command("exact", "Time the exact kernel; compare with the FMA peak, the exp limit, the memory bandwidth and ONNX Runtime.")
        {
            n, d, m, threads, precision, causal, bound, json, repeats,
        };
        cmd.SetAction(r =>
        {
            int nn = r.GetValue(n), dd = r.GetValue(d), mm = r.GetValue(m) ?? nn, t = r.GetValue(threads), reps = r.GetValue(repeats);
            CommonOptions.AtLeast("--n", nn, 1); CommonOptions.AtLeast("--d", dd, 1); CommonOptions.AtLeast("--m", mm, 1); CommonOptions.Fits("--n, --m, --d", Math.Max(nn, mm), dd); t = CommonOptions.ThreadCount(t);
            CommonOptions.AtLeast("--repeats", reps, 1);
            double b = r.GetValue(bound);
            CommonOptions.Positive("--bound", b);
            bool f32 = CommonOptions.IsFloat32(r.GetValue(precision), true);
            CliContext.Current.Status($"bench exact: timing the exact kernel at n = {nn}, m = {mm}, d = {dd}, interleaved with the FMA peak, the exp limit, the bandwidth and ONNX Runtime…");
            var report = ExactBenchmark.Run(nn, mm, dd, t == 0 ? Environment.ProcessorCount : t, f32, r.GetValue(causal), reps, b);
            var o = r.InvocationConfiguration.Output;
            if (r.GetValue(json)) o.WriteLine(Reports.Json(report, ReportJson.Default.BenchExactReport));
            else Reports.WriteText(o, report, ReportJson.Default.BenchExactReport, 26);
            return 0;
        });
        return cmd;
    }
}
