using System.CommandLine;
using System.Numerics;
using FastAttention.Cli.Infrastructure;
using FastAttention.Gradient;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn bench backward</c>: in one run, the exact forward kernel (the registry's "exact"), the gradient module's
/// forward (which also saves the log-sum-exp) and the backward pass from that saved state; prints the seconds and the
/// ratio backward / forward. Best of --repeats after one warm-up each.
/// </summary>
internal static class BenchBackwardCommand
{
    public static Command Create()
    {
        var n = new Option<int>("--n") { Description = "Queries.", Required = true };
        var d = new Option<int>("--d") { Description = "Head dimension (dv = d).", Required = true };
        var m = new Option<int?>("--m") { Description = "Keys (default n)." };
        var causal = new Option<bool>("--causal") { Description = "Causal mask." };
        var precision = CommonOptions.Precision();
        var repeats = new Option<int>("--repeats") { Description = "Timed runs per kernel (best is kept).", DefaultValueFactory = _ => 1 };
        var threads = CommonOptions.Threads();
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("backward", "Time the backward pass against the forward kernel, one run.") { n, d, m, causal, precision, repeats, threads, json };
        cmd.SetAction(r =>
        {
            int nn = r.GetValue(n), dd = r.GetValue(d), mm = r.GetValue(m) ?? nn, t = r.GetValue(threads), reps = r.GetValue(repeats);
            CommonOptions.AtLeast("--n", nn, 1); CommonOptions.AtLeast("--d", dd, 1); CommonOptions.AtLeast("--m", mm, 1); CommonOptions.Fits("--n, --m, --d", Math.Max(nn, mm), dd, 4);
            t = CommonOptions.ThreadCount(t); CommonOptions.AtLeast("--repeats", reps, 1);
            bool f32 = CommonOptions.IsFloat32(r.GetValue(precision), true);
            bool c = r.GetValue(causal);
            CliContext.Current.Status($"bench backward: timing the forward and backward kernels at n = {nn}, m = {mm}, d = {dd}…");
            var report = f32 ? Run<float>(nn, mm, dd, c, t, reps) : Run<double>(nn, mm, dd, c, t, reps);
            var o = r.InvocationConfiguration.Output;
            if (r.GetValue(json)) o.WriteLine(Reports.Json(report, ReportJson.Default.BenchBackwardReport));
            else Reports.WriteText(o, report, ReportJson.Default.BenchBackwardReport, 26);
            return 0;
        });
        return cmd;
    }

    /// <summary>Best wall-clock seconds and best process CPU seconds of <paramref name="repeats"/> runs. On a shared
    /// machine the CPU time is the steadier measure of the work (it excludes time the process waited to run).</summary>
    private static (double Wall, double Cpu) Timed(Action run, int repeats)
    {
        double wall = double.PositiveInfinity, cpu = double.PositiveInfinity;
        var process = System.Diagnostics.Process.GetCurrentProcess();
        for (int i = 0; i < repeats; i++)
        {
            process.Refresh();
            var cpu0 = process.TotalProcessorTime;
            var sw = System.Diagnostics.Stopwatch.StartNew();
            run();
            wall = Math.Min(wall, sw.Elapsed.TotalSeconds);
            process.Refresh();
            cpu = Math.Min(cpu, (process.TotalProcessorTime - cpu0).TotalSeconds);
        }
        return (wall, cpu);
    }

    private static BenchBackwardReport Run<T>(int n, int m, int d, bool causal, int threads, int repeats)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T[] Data(int rows, int seed) => Array.ConvertAll(Instances.Matrix(rows, d, 1, seed, Distribution.Normal), x => T.CreateTruncating(x));
        var problem = new AttentionProblem<T>(Data(n, 21), Data(m, 22), Data(m, 23), n, m, d, d, 1, null, causal);
        T[] dO = Data(n, 24);
        var exact = AttentionAlgorithms.Create("exact");
        var settings = new AttentionSettings { Threads = threads };
        exact.Compute(problem, settings);
        var (forwardSeconds, forwardCpu) = Timed(() => exact.Compute(problem, settings), repeats);
        var saved = AttentionForward.Compute(problem, threads);
        var (ownForwardSeconds, ownForwardCpu) = Timed(() => saved = AttentionForward.Compute(problem, threads), repeats);
        var grads = AttentionBackward.Compute(problem, dO, saved, threads);
        var (backwardSeconds, backwardCpu) = Timed(() => grads = AttentionBackward.Compute(problem, dO, saved, threads), repeats);
        var rows = Instances.SampleRows(n, 64, 5);
        double forwardError = Measure.MaxAbsError(problem, saved.Output.Span, rows);
        var dqReference = BackwardReference.DQRows(problem, dO, rows);
        double dqError = 0, dqMax = 0;
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < d; c++)
            {
                dqError = Math.Max(dqError, Math.Abs(double.CreateTruncating(grads.DQ.Span[rows[r] * d + c]) - dqReference[r * d + c]));
                dqMax = Math.Max(dqMax, Math.Abs(dqReference[r * d + c]));
            }
        // Visible (query, key) pairs: Σᵢ min(i + 1, m) under the causal mask.
        double pairs = !causal ? (double)n * m : n <= m ? (double)n * (n + 1) / 2 : (double)m * (m + 1) / 2 + (double)(n - m) * m;
        double backwardFlops = 2 * pairs * (3.0 * d + 2.0 * d), forwardFlops = 2 * pairs * (2.0 * d);
        int t = threads == 0 ? Environment.ProcessorCount : threads;
        double peak = FmaPeak.MeasureGflops(t, typeof(T) == typeof(float));
        return new BenchBackwardReport(n, m, d, causal, typeof(T) == typeof(float) ? "f32" : "f64",
            threads == 0 ? Environment.ProcessorCount : threads, repeats,
            forwardSeconds, backwardSeconds, backwardSeconds / forwardSeconds, ownForwardSeconds,
            forwardCpu, backwardCpu, ownForwardCpu,
            backwardCpu / forwardCpu, backwardCpu / ownForwardCpu, backwardSeconds / ownForwardSeconds,
            backwardFlops / backwardSeconds / 1e9, forwardFlops / forwardSeconds / 1e9, forwardFlops / ownForwardSeconds / 1e9, peak,
            backwardFlops / backwardSeconds / 1e9 / peak,
            forwardError, dqError, dqMax);
    }
}
