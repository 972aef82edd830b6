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
        var q = new Option<string>("--q") { Description = "Queries .npy: [n, d], [h, n, d] or [b, h, n, d] (float16, float32 or float64).", Required = true };
        var k = new Option<string>("--k") { Description = "Keys .npy: [m, d] (same leading dims; fewer heads than Q for grouped-query attention).", Required = true };
        var v = new Option<string>("--v") { Description = "Values .npy: [m, dv] (K's leading dims).", Required = true };
        var output = new Option<string>("--out") { Description = "Output .npy [.., n, dv].", Required = true };
        var algorithm = new Option<string?>("--algorithm") { Description = "Algorithm: " + string.Join(", ", AttentionAlgorithms.Names) + " (default: auto when --epsilon is given, else exact)." };
        var scale = new Option<double?>("--scale") { Description = "Logit scale s in exp(s·QKᵀ); default 1/√d." };
        var masks = new MaskOptions();
        var precision = new Option<string?>("--precision") { Description = "Element type: f16 (float32 accumulation), f32 or f64; default from the inputs." };
        var outDtype = new Option<string?>("--out-dtype") { Description = "With f16: write the output as f16 (default) or f32." };
        var epsilon = new Option<double?>("--epsilon") { Description = "Target ‖·‖∞ error for approximate algorithms." };
        var report = new Option<string?>("--report") { Description = "Write a JSON report here." };
        var threads = CommonOptions.Threads();
        var cmd = new Command("run", "Compute attention on .npy inputs.") { q, k, v, output, algorithm, scale, precision, outDtype, epsilon, report, threads };
        foreach (var o in masks.All) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            var files = AttentionFiles.Load(r.GetValue(q)!, r.GetValue(k)!, r.GetValue(v)!);
            var (causal, mask, _) = masks.Load(r, files);
            double? eps = r.GetValue(epsilon);
            var alg = AttentionAlgorithms.Create(r.GetValue(algorithm) ?? (eps is null ? "exact" : "auto"));
            if (eps is { } e) CommonOptions.Positive("--epsilon", e);
            if (alg.RequiresEpsilon && eps is null) throw new UsageException($"--epsilon is required for the approximate algorithm '{alg.Name}'.");
            int t = r.GetValue(threads);
            CommonOptions.AtLeast("--threads", t, 0);
            var settings = new AttentionSettings { Epsilon = eps, Threads = t, Rates = RatesCache.LoadOrDefault() };
            var prec = files.ChoosePrecision(r.GetValue(precision));
            bool f32Out = r.GetValue(outDtype) switch
            {
                null or "f16" or "float16" => false,
                "f32" or "float32" when prec == Precision.F16 => true,
                "f32" or "float32" => throw new UsageException("--out-dtype f32 applies to --precision f16 only (f32 and f64 runs write their own type)."),
                var other => throw new UsageException($"--out-dtype must be f16 or f32 (got '{other}')."),
            };
            string outPath = r.GetValue(output)!;
            string? reportPath = r.GetValue(report);
            double? s = r.GetValue(scale);
            switch (prec)
            {
                case Precision.F32: Execute(Build<float>(files, s, causal, mask), alg, settings, files, outPath, reportPath); break;
                case Precision.F64: Execute(Build<double>(files, s, causal, mask), alg, settings, files, outPath, reportPath); break;
                default:
                    var p16 = Build<Half>(files, s, causal, mask);
                    if (f32Out && alg is Exact.FlashAttention flash)
                    {
                        var r32 = flash.ComputeFloat32Output(p16, settings);
                        Write(outPath, r32.Output, files.OutputShape, reportPath, p16, r32.Certificate, "f16→f32");
                    }
                    else if (f32Out) throw new UsageException($"--out-dtype f32 needs --algorithm exact (got '{alg.Name}').");
                    else Execute(p16, alg, settings, files, outPath, reportPath);
                    break;
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The problem, with the library's own checks (e.g. a NaN bias at a visible pair) reported against the option.</summary>
    internal static AttentionProblem<T> Build<T>(AttentionFiles files, double? scale, bool causal, AttentionMask mask)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        try { return files.Problem<T>(scale, causal, mask); }
        catch (ArgumentException e) when (e.ParamName is "Bias" or "mask")
        {
            string option = e.ParamName == "Bias" ? "--bias" : "--key-lengths";
            throw new UsageException($"{option}: {ExitCodes.Describe(e)[(e.ParamName.Length + 2)..]}");
        }
    }

    private static void Execute<T>(AttentionProblem<T> problem, AttentionAlgorithm alg, AttentionSettings settings, AttentionFiles files, string outPath, string? reportPath)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var result = alg.Compute(problem, settings);
        Write(outPath, result.Output, files.OutputShape, reportPath, problem, result.Certificate, Name<T>());
    }

    private static void Write<T, TOut>(string outPath, TOut[] output, int[] shape, string? reportPath, AttentionProblem<T> problem, ErrorCertificate c, string precision)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> where TOut : unmanaged
    {
        switch (output)
        {
            case float[] f: NpyFile.Write(outPath, f, shape); break;
            case double[] dd: NpyFile.Write(outPath, dd, shape); break;
            case Half[] h: NpyFile.Write(outPath, h, shape); break;
        }
        if (reportPath is not null) AtomicFile.WriteAllText(reportPath, Report(problem, c, precision));
    }

    private static string Name<T>() => typeof(T) == typeof(float) ? "f32" : typeof(T) == typeof(double) ? "f64" : "f16";

    internal static string Report<T>(AttentionProblem<T> p, ErrorCertificate c) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        Report(p, c, Name<T>());

    private static string Report<T>(AttentionProblem<T> p, ErrorCertificate c, string precision) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        Reports.Json(new RunReport(c.Algorithm, p.N, p.M, p.D, p.Dv, p.Heads, p.Scale, p.Causal, p.EntryBound, c.Epsilon,
            c.ErrorBound, c.Elapsed.TotalSeconds, c.Threads, precision, CertificateReport.Parameters(c.Parameters),
            CertificateReport.Terms(c.Budget), c.PredictedSeconds, c.PlanningTime.TotalSeconds, c.Notes, CertificateReport.Heads(c),
            SemanticsReport.Of(p)), ReportJson.Default.RunReport);
}
