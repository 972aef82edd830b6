using System.CommandLine;
using System.Diagnostics;
using FastAttention.Cli.Infrastructure;
using FastAttention.Gradient;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn bench gradient</c>: the reduction of Gupta et al. Thm B.1 with a chosen oracle against the direct
/// float64 gradient ("exact": O(n²d), streaming rows), on seeded uniform data in [−B, B], one run each.
/// </summary>
internal static class BenchGradientCommand
{
    public static Command Create()
    {
        var n = new Option<int>("--n") { Description = "Rows of A₁, A₂, A₃, E (m = n).", Required = true };
        var d = new Option<int>("--d") { Description = "Head dimension.", Required = true };
        var bound = new Option<double>("--bound") { Description = "Entry bound B: inputs uniform in [−B, B].", Required = true };
        var oracle = new Option<string>("--oracle") { Description = "Attention oracle: " + string.Join(", ", AttentionAlgorithms.Names), Required = true };
        var epsilon = new Option<double>("--epsilon") { Description = "Target ‖g − dL/dX‖∞.", DefaultValueFactory = _ => 1e-3 };
        var scale = new Option<double?>("--scale") { Description = "Logit scale s; default 1/d (Alman–Song), keeping the logits moderate." };
        var threads = CommonOptions.Threads();
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("gradient", "Time the Thm B.1 gradient reduction against the direct float64 gradient.") { n, d, bound, oracle, epsilon, scale, threads, json };
        cmd.SetAction(r =>
        {
            int nn = r.GetValue(n), dd = r.GetValue(d), t = r.GetValue(threads);
            double b = r.GetValue(bound), eps = r.GetValue(epsilon);
            CommonOptions.AtLeast("--n", nn, 1); CommonOptions.AtLeast("--d", dd, 1); CommonOptions.Fits("--n, --d", nn, dd, 4); t = CommonOptions.ThreadCount(t);
            CommonOptions.Positive("--bound", b); CommonOptions.Positive("--epsilon", eps);
            string name = r.GetValue(oracle)!;
            if (!AttentionAlgorithms.Names.Contains(name, StringComparer.OrdinalIgnoreCase))
                throw new UsageException($"--oracle: unknown algorithm '{name}'; known: {string.Join(", ", AttentionAlgorithms.Names)}.");
            double s = r.GetValue(scale) ?? 1.0 / dd;
            if (!double.IsFinite(s)) throw new UsageException($"--scale must be a finite number (got {s}).");
            DenseMatrix M(int rows, int seed) => new(Instances.Matrix(rows, dd, b, seed), rows, dd);
            var problem = new AttentionLossProblem(M(nn, 1), M(nn, 2), M(nn, 3), M(nn, 4), M(dd, 5), M(dd, 6), s);
            var alg = AttentionAlgorithms.Create(name);
            CliContext.Current.Status($"bench gradient: timing the Thm B.1 reduction with '{alg.Name}' and the exact gradient at n = {nn}, d = {dd}…");
            // Warm-up on a small copy so that no timing includes JIT compilation.
            var small = new AttentionLossProblem(M(256, 1), M(256, 2), M(256, 3), M(256, 4), M(dd, 5), M(dd, 6), s);
            try { AttentionLossGradient.Compute(small, alg, eps, t); } catch (AttentionRefusedException) { }
            AttentionLossGradient.Compute(small, new FastAttention.Exact.FlashAttention(), eps, t);
            var result = AttentionLossGradient.Compute(problem, alg, eps, t);
            // The exact baseline is the fastest exact gradient we have: the same reduction with the exact kernel as
            // oracle (d + 2 exact calls). The direct float64 reference (O(n²d) compensated scalar work) also checks
            // the error where it is affordable; beyond that the error is measured against the exact-oracle gradient.
            var exact = AttentionLossGradient.Compute(problem, new FastAttention.Exact.FlashAttention(), eps, t);
            double exactSeconds = exact.Elapsed.TotalSeconds;
            double[] reference = exact.Gradient.ToArray();
            double? referenceSeconds = null;
            bool referenceChecked = (long)nn * nn * dd <= 1L << 28;
            if (referenceChecked)
            {
                var sw = Stopwatch.StartNew();
                reference = AttentionLossReference.Gradient(problem, t);
                referenceSeconds = sw.Elapsed.TotalSeconds;
                exactSeconds = Math.Min(exactSeconds, referenceSeconds.Value);
            }
            double err = 0, gmax = 0;
            var g = result.Gradient.Span;
            for (int i = 0; i < reference.Length; i++) { err = Math.Max(err, Math.Abs(g[i] - reference[i])); gmax = Math.Max(gmax, Math.Abs(reference[i])); }
            double seconds = result.Elapsed.TotalSeconds;
            var report = new BenchGradientReport(nn, dd, b, s, alg.Name, t == 0 ? Environment.ProcessorCount : t,
                seconds, result.OracleElapsed.TotalSeconds, exactSeconds, exact.Elapsed.TotalSeconds, referenceSeconds,
                referenceChecked ? "direct float64 reference" : "reduction with the exact oracle",
                exactSeconds / seconds, err, gmax, eps, result.GuaranteedBound, result.OracleCalls, 2 * dd + 4,
                result.EpsilonC5, result.EpsilonW, result.EpsilonC7, result.PaperEpsilon2);
            var o = r.InvocationConfiguration.Output;
            if (r.GetValue(json)) o.WriteLine(Reports.Json(report, ReportJson.Default.BenchGradientReport));
            else Reports.WriteText(o, report, ReportJson.Default.BenchGradientReport, 20);
            return 0;
        });
        return cmd;
    }
}
