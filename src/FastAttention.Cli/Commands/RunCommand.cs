using System.CommandLine;
using System.Numerics;
using FastAttention.Cli.Infrastructure;

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
            var context = CliContext.Current;
            // Every option and path is checked before any data is read or anything computed.
            string qPath = r.GetValue(q)!, kPath = r.GetValue(k)!, vPath = r.GetValue(v)!;
            double? eps = r.GetValue(epsilon);
            string name = r.GetValue(algorithm) ?? (eps is null ? "exact" : "auto");
            if (!AttentionAlgorithms.Names.Contains(name, StringComparer.OrdinalIgnoreCase))
                throw new UsageException($"--algorithm: unknown algorithm '{name}'; known: {string.Join(", ", AttentionAlgorithms.Names)}.");
            var alg = AttentionAlgorithms.Create(name);
            if (eps is { } e) CommonOptions.Positive("--epsilon", e);
            if (alg.RequiresEpsilon && eps is null) throw new UsageException($"--epsilon is required for the approximate algorithm '{alg.Name}'.");
            double? s = r.GetValue(scale);
            if (s is { } sv) CommonOptions.Finite("--scale", sv);
            int t = CommonOptions.ThreadCount(r.GetValue(threads));
            string? precisionText = r.GetValue(precision);
            bool requestedF16 = precisionText is "f16" or "float16";
            bool? requestedF32 = precisionText is null ? null : requestedF16 || CommonOptions.IsFloat32(precisionText, false, "f16, f32 or f64");
            string? outDtypeText = r.GetValue(outDtype);
            if (outDtypeText is not (null or "f16" or "float16" or "f32" or "float32"))
                throw new UsageException($"--out-dtype must be f16 or f32 (got '{outDtypeText}').");
            using var outputs = new OutputFiles();
            outputs.Input("--q", qPath); outputs.Input("--k", kPath); outputs.Input("--v", vPath);
            foreach (var (option, path) in masks.Paths(r)) outputs.Input(option, path);
            string outFull = outputs.Output("--out", r.GetValue(output)!);
            string? reportFull = r.GetValue(report) is { } rp ? outputs.Output("--report", rp) : null;

            var files = AttentionFiles.Load(qPath, kPath, vPath, requestedF32);
            var (c, mask, _) = masks.Load(r, files);
            files.CheckKeysFinite(mask);
            bool f16 = requestedF16 || (precisionText is null && files.AllFloat16);
            bool f32 = requestedF32 ?? !files.AnyFloat64;
            bool f32Out = outDtypeText is "f32" or "float32";
            if (f32Out && !f16) throw new UsageException("--out-dtype f32 applies to float16 runs only (f32 and f64 runs write their own type).");
            if (f16 && !alg.IsExact) throw new UsageException($"--precision f16 is served by 'exact' only (got '{alg.Name}'); approximate algorithms certify float32 or float64 — use --precision f32.");
            if (alg.IsExact && eps is not null)
                context.Note($"--epsilon is ignored: '{alg.Name}' is exact (its error is float rounding only).");
            if (requestedF32 is null && files.Mixed)
                context.Note("the inputs mix float32 and float64: computing in float64 and writing float64 (--precision f32 for float32).");
            // Approximate algorithms certify float64 work: on float64 files asked for float32 output they compute from
            // the float64 data and round only the output, whose rounding joins the bound (rounding the inputs first
            // would certify a different problem).
            bool roundOutputOnly = f32 && files.AnyFloat64 && !alg.IsExact && eps is not null;
            if (f32 && files.AnyFloat64 && !roundOutputOnly)
                context.Note("--precision f32: the float64 inputs are rounded to float32 and the exact kernel runs in float32.");
            var settings = new AttentionSettings { Epsilon = eps, Threads = t, Rates = RatesCache.LoadOrDefault(), Cancellation = context.Cancellation };
            if (f16) ExecuteFloat16(files, alg, settings, s, c, mask, f32Out, outputs, outFull, reportFull);
            else if (roundOutputOnly) ExecuteRoundingOutput(files, alg, settings, s, c, mask, outputs, outFull, reportFull);
            else if (f32) Execute<float>(files, alg, settings, s, c, mask, outputs, outFull, reportFull);
            else Execute<double>(files, alg, settings, s, c, mask, outputs, outFull, reportFull);
            outputs.Commit();
            return 0;
        });
        return cmd;
    }

    /// <summary>Computes with a progress bar when it takes long; an output with a non-finite entry is refused, never
    /// written with exit 0 (the last line of defence against an overflow no certificate caught).</summary>
    private static AttentionResult<T> Compute<T>(AttentionAlgorithm alg, AttentionProblem<T> problem, AttentionSettings settings)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var context = CliContext.Current;
        var result = LongWork.Run($"{alg.Name} attention", progress =>
        {
            using var plan = alg.Plan(problem, settings with { Progress = progress });
            // Said before starting: a run the planner predicts to take longer than an hour.
            if (plan.PredictedSeconds > 3600)
            {
                context.Note(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"'{alg.Name}' is predicted to take about {plan.PredictedSeconds / 3600:G3} hours on this machine (Ctrl-C stops it cleanly)."));
                context.FlushNotes();
            }
            return plan.Execute();
        });
        var o = result.Output;
        for (int i = 0; i < o.Length; i++)
            if (!T.IsFinite(o[i]))
                throw new AttentionRefusedException(alg.Name, RefusalReason.Overflow,
                    $"the output has a non-finite entry ({o[i]}) at flat index {i}: the logits s·q·k or the values overflow float64 (|s|·max|q|·max|k|·d ≈ {Math.Abs(problem.Scale) * problem.QMax * problem.KMax * problem.D:G3}); use a smaller --scale or smaller entries.");
        return result;
    }

    /// <summary>The problem, with the library's own checks (e.g. a NaN bias at a visible pair, a NaN in K within the key
    /// lengths) reported against the option.</summary>
    internal static AttentionProblem<T> Build<T>(AttentionFiles files, double? scale, bool causal, AttentionMask mask)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        try { return files.Problem<T>(scale, causal, mask); }
        catch (ArgumentException e) when (e.ParamName is "Bias" or "mask" or "q" or "k" or "v")
        {
            string option = e.ParamName switch { "Bias" => "--bias", "mask" => "--key-lengths", var p => "--" + p };
            throw new UsageException($"{option}: {ExitCodes.StripParameter(e)}");
        }
    }

    /// <summary>float16 inputs computed with float32 accumulation by the exact kernel; the output as float16 or float32.</summary>
    private static void ExecuteFloat16(AttentionFiles files, AttentionAlgorithm alg, AttentionSettings settings, double? scale, bool causal,
        AttentionMask mask, bool f32Out, OutputFiles outputs, string outFull, string? reportFull)
    {
        var problem = Build<Half>(files, scale, causal, mask);
        if (f32Out)
        {
            var flash = alg as Exact.FlashAttention ?? new Exact.FlashAttention();
            var wide = LongWork.Run($"{alg.Name} attention", progress => flash.ComputeFloat32Output(problem, settings with { Progress = progress }));
            CliContext.Current.ThrowIfCancelled();
            outputs.WriteNpy(outFull, wide.Output, files.OutputShape);
            if (reportFull is not null) outputs.WriteText(reportFull, Report(problem, wide.Certificate, "f16→f32"));
            return;
        }
        var result = Compute(alg, problem, settings);
        CliContext.Current.ThrowIfCancelled();
        outputs.WriteNpy(outFull, result.Output, files.OutputShape);
        if (reportFull is not null) outputs.WriteText(reportFull, Report(problem, result.Certificate, "f16"));
    }

    private static void Execute<T>(AttentionFiles files, AttentionAlgorithm alg, AttentionSettings settings, double? scale, bool causal,
        AttentionMask mask, OutputFiles outputs, string outFull, string? reportFull)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var problem = Build<T>(files, scale, causal, mask);
        var result = Compute(alg, problem, settings);
        CliContext.Current.ThrowIfCancelled();
        if (result.Output is float[] f) outputs.WriteNpy(outFull, f, files.OutputShape);
        else outputs.WriteNpy(outFull, (double[])(object)result.Output, files.OutputShape);
        if (reportFull is not null) outputs.WriteText(reportFull, Report(problem, result.Certificate));
    }

    /// <summary>
    /// Float32 output of an approximate algorithm from float64 data: the algorithm runs in float64 with ε minus an
    /// allowance for the output rounding, |fl₃₂(o) − o| ≤ 2⁻²⁴·|o| ≤ 2⁻²⁴·(‖V‖∞ + ε) (an attention output is a
    /// convex combination of V's rows, the approximation adds at most ε); the rounding actually made is then measured
    /// exactly (o − fl₃₂(o) is exact in float64) and added to the certified bound, which must stay within ε.
    /// </summary>
    private static void ExecuteRoundingOutput(AttentionFiles files, AttentionAlgorithm alg, AttentionSettings settings, double? scale, bool causal,
        AttentionMask mask, OutputFiles outputs, string outFull, string? reportFull)
    {
        var problem = Build<double>(files, scale, causal, mask);
        double eps = settings.Epsilon ?? throw new InvalidOperationException("an approximate algorithm without ε; this is a bug.");
        if (!(problem.VMax <= float.MaxValue))
            throw new AttentionRefusedException(alg.Name, RefusalReason.OutputPrecision, $"values up to {problem.VMax:G3} do not fit float32; use --precision f64.");
        double allowance = Math.ScaleB(problem.VMax + eps, -24) * (1 + Math.ScaleB(1, -20)) + Math.ScaleB(1, -149);
        if (!(allowance < eps))
            throw new AttentionRefusedException(alg.Name, RefusalReason.OutputPrecision,
                $"float32 output rounding alone (2⁻²⁴·(‖V‖∞ + ε) = {allowance:G3}) is not below ε = {eps:G3}; use --precision f64 or a larger ε.");
        var result = Compute(alg, problem, settings with { Epsilon = eps - allowance });
        CliContext.Current.ThrowIfCancelled();
        var o = result.Output;
        var rounded = new float[o.Length];
        double rounding = 0;
        for (int i = 0; i < o.Length; i++)
        {
            rounded[i] = (float)o[i];
            if (!float.IsFinite(rounded[i]))
                throw new AttentionRefusedException(alg.Name, RefusalReason.OutputPrecision, $"the output entry {o[i]:G3} does not fit float32; use --precision f64.");
            rounding = Math.Max(rounding, Math.Abs(o[i] - rounded[i]));
        }
        double bound = (result.Certificate.ErrorBound + rounding) * (1 + Math.ScaleB(1, -50));
        if (!(bound <= eps))
            throw new AttentionRefusedException(alg.Name, RefusalReason.OutputPrecision,
                $"the certified bound {result.Certificate.ErrorBound:G3} plus the float32 output rounding {rounding:G3} exceeds ε = {eps:G3}; use --precision f64 or a larger ε.");
        var certificate = result.Certificate with
        {
            Epsilon = eps,
            ErrorBound = bound,
            Budget = [.. result.Certificate.Budget, new ErrorTerm("float32 output rounding (measured: max |o − fl₃₂(o)|)", rounding)],
            Notes = [.. result.Certificate.Notes, "computed in float64 from the float64 inputs; only the output was rounded to float32"],
        };
        outputs.WriteNpy(outFull, rounded, files.OutputShape);
        if (reportFull is not null) outputs.WriteText(reportFull, Report(problem, certificate, "f32"));
    }

    internal static string Report<T>(AttentionProblem<T> p, ErrorCertificate c, string? precision = null) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        Reports.Json(new RunReport(c.Algorithm, p.N, p.M, p.D, p.Dv, p.Heads, p.Scale, p.Causal, p.EntryBound, c.Epsilon,
            c.ErrorBound, c.Elapsed.TotalSeconds, c.Threads, precision ?? (typeof(T) == typeof(float) ? "f32" : typeof(T) == typeof(Half) ? "f16" : "f64"),
            CertificateReport.Parameters(c.Parameters), CertificateReport.Terms(c.Budget), c.PredictedSeconds, c.PlanningTime.TotalSeconds, c.Notes,
            CertificateReport.Heads(c), SemanticsReport.Of(p)), ReportJson.Default.RunReport);
}
