using System.CommandLine;
using System.Numerics;
using FastAttention.Cli.Infrastructure;
using FastAttention.IO;

namespace FastAttention.Cli.Commands;

/// <summary><c>fastattn run</c>: attention on Q, K, V from .npy files, output and report written atomically.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var q = new Option<string>("--q") { Description = "Queries .npy: [n, d], [h, n, d] or [b, h, n, d].", Required = true };
        var k = new Option<string>("--k") { Description = "Keys .npy: [m, d] (same leading dims).", Required = true };
        var v = new Option<string>("--v") { Description = "Values .npy: [m, dv] (same leading dims).", Required = true };
        var output = new Option<string>("--out") { Description = "Output .npy [.., n, dv].", Required = true };
        var algorithm = new Option<string?>("--algorithm") { Description = "Algorithm: " + string.Join(", ", AttentionAlgorithms.Names) + " (default: auto when --epsilon is given, else exact)." };
        var scale = new Option<double?>("--scale") { Description = "Logit scale s in exp(s·QKᵀ); default 1/√d." };
        var causal = new Option<bool>("--causal") { Description = "Causal mask (query i sees keys j ≤ i)." };
        var precision = CommonOptions.Precision();
        var epsilon = new Option<double?>("--epsilon") { Description = "Target ‖·‖∞ error for approximate algorithms." };
        var report = new Option<string?>("--report") { Description = "Write a JSON report here." };
        var threads = CommonOptions.Threads();
        var cmd = new Command("run", "Compute attention on .npy inputs.") { q, k, v, output, algorithm, scale, causal, precision, epsilon, report, threads };
        cmd.SetAction(r =>
        {
            var files = AttentionFiles.Load(r.GetValue(q)!, r.GetValue(k)!, r.GetValue(v)!);
            double? eps = r.GetValue(epsilon);
            var alg = AttentionAlgorithms.Create(r.GetValue(algorithm) ?? (eps is null ? "exact" : "auto"));
            if (eps is { } e) CommonOptions.Positive("--epsilon", e);
            if (alg.RequiresEpsilon && eps is null) throw new UsageException($"--epsilon is required for the approximate algorithm '{alg.Name}'.");
            int t = r.GetValue(threads);
            CommonOptions.AtLeast("--threads", t, 0);
            var settings = new AttentionSettings { Epsilon = eps, Threads = t, Rates = RatesCache.LoadOrDefault() };
            bool f32 = CommonOptions.IsFloat32(r.GetValue(precision), !files.AnyFloat64);
            string outPath = r.GetValue(output)!;
            string? reportPath = r.GetValue(report);
            if (f32) Execute<float>(files, alg, settings, r.GetValue(scale), r.GetValue(causal), outPath, reportPath);
            else Execute<double>(files, alg, settings, r.GetValue(scale), r.GetValue(causal), outPath, reportPath);
            return 0;
        });
        return cmd;
    }

    private static void Execute<T>(AttentionFiles files, AttentionAlgorithm alg, AttentionSettings settings, double? scale, bool causal, string outPath, string? reportPath)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var problem = files.Problem<T>(scale, causal);
        var result = alg.Compute(problem, settings);
        if (result.Output is float[] f) NpyFile.Write(outPath, f, files.OutputShape);
        else NpyFile.Write(outPath, (double[])(object)result.Output, files.OutputShape);
        if (reportPath is not null)
            AtomicFile.WriteAllText(reportPath, Report(problem, result.Certificate));
    }

    internal static string Report<T>(AttentionProblem<T> p, ErrorCertificate c) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        Json.Object([
            new("algorithm", c.Algorithm), new("n", p.N), new("m", p.M), new("d", p.D), new("dv", p.Dv), new("heads", p.Heads),
            new("scale", p.Scale), new("causal", p.Causal), new("entryBound", p.EntryBound), new("epsilon", c.Epsilon),
            new("errorBound", c.ErrorBound), new("seconds", c.Elapsed.TotalSeconds), new("threads", c.Threads),
            new("precision", typeof(T) == typeof(float) ? "f32" : "f64"),
            new("parameters", CertificateReport.Parameters(c.Parameters)),
            new("budget", CertificateReport.Terms(c.Budget)), new("predictedSeconds", c.PredictedSeconds),
            new("planningSeconds", c.PlanningTime.TotalSeconds), new("notes", c.Notes.ToList()),
            new("perHead", CertificateReport.Heads(c)),
        ]);
}
