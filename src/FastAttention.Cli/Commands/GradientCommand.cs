using System.CommandLine;
using FastAttention.Cli.Infrastructure;
using FastAttention.Gradient;
using FastAttention.IO;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn gradient</c>: dL/dX of Gupta et al. Def. B.1 by the reduction of Thm B.1 (d + 2 attention oracle calls),
/// written as a d×d float64 .npy, with an optional JSON report of the oracle calls and the error budget.
/// </summary>
internal static class GradientCommand
{
    public static Command Create()
    {
        var a1 = Matrix("--a1", "A₁ (n×d): the queries are A₁X.");
        var a2 = Matrix("--a2", "A₂ (m×d): the keys.");
        var a3 = Matrix("--a3", "A₃ (m×d): the values are A₃Y.");
        var e = Matrix("--e", "E (n×d): the target.");
        var x = Matrix("--x", "X (d×d): the point at which dL/dX is taken.");
        var y = Matrix("--y", "Y (d×d).");
        var scale = new Option<double?>("--scale") { Description = "Logit scale s in exp(s·A₁XA₂ᵀ); default 1 (the paper's)." };
        var oracle = new Option<string>("--oracle") { Description = "Attention oracle: " + string.Join(", ", AttentionAlgorithms.Names), DefaultValueFactory = _ => "exact" };
        var epsilon = new Option<double?>("--epsilon") { Description = "Target ‖g − dL/dX‖∞ (required for approximate oracles)." };
        var output = new Option<string>("--out") { Description = "Output .npy: dL/dX, [d, d] float64.", Required = true };
        var report = new Option<string?>("--report") { Description = "Write a JSON report here (oracle calls, per-call ε, bound, time)." };
        var threads = CommonOptions.Threads();
        var cmd = new Command("gradient", "dL/dX of L(X) = ½‖D⁻¹exp(s·A₁XA₂ᵀ)A₃Y − E‖²_F via O(d) attention calls (Gupta et al. Thm B.1).")
            { a1, a2, a3, e, x, y, scale, oracle, epsilon, output, report, threads };
        cmd.SetAction(r =>
        {
            string oracleName = r.GetValue(oracle)!;
            if (!AttentionAlgorithms.Names.Contains(oracleName, StringComparer.OrdinalIgnoreCase))
                throw new UsageException($"--oracle: unknown algorithm '{oracleName}'; known: {string.Join(", ", AttentionAlgorithms.Names)}.");
            var alg = AttentionAlgorithms.Create(oracleName);
            double? eps = r.GetValue(epsilon);
            if (eps is { } ev) CommonOptions.Positive("--epsilon", ev);
            if (!alg.IsExact && eps is null) throw new UsageException($"--epsilon is required for the approximate oracle '{alg.Name}'.");
            if (alg.IsExact && eps is not null)
                CliContext.Current.Note($"--epsilon is ignored: the oracle '{alg.Name}' is exact.");
            int t = CommonOptions.ThreadCount(r.GetValue(threads));
            double s = r.GetValue(scale) ?? 1.0;
            CommonOptions.Finite("--scale", s);
            var inputs = new[] { (a1, "--a1"), (a2, "--a2"), (a3, "--a3"), (e, "--e"), (x, "--x"), (y, "--y") };
            using var outputs = new OutputFiles();
            foreach (var (opt, name) in inputs) outputs.Input(name, r.GetValue(opt)!);
            string outFull = outputs.Output("--out", r.GetValue(output)!);
            string? reportFull = r.GetValue(report) is { } rp ? outputs.Output("--report", rp) : null;
            var problem = Build(Load(r.GetValue(a1)!, "--a1"), Load(r.GetValue(a2)!, "--a2"), Load(r.GetValue(a3)!, "--a3"),
                Load(r.GetValue(e)!, "--e"), Load(r.GetValue(x)!, "--x"), Load(r.GetValue(y)!, "--y"), s);
            // An exact oracle needs no budget; the value only has to be valid.
            var result = LongWork.Run("attention loss gradient", _ => AttentionLossGradient.Compute(problem, alg, eps ?? 1.0, t));
            CliContext.Current.ThrowIfCancelled();
            CommonOptions.RequireFinite("gradient", result.Gradient.Span);
            outputs.WriteNpy(outFull, result.Gradient.Span, [problem.D, problem.D]);
            if (reportFull is not null) outputs.WriteText(reportFull, Report(problem, result, eps));
            outputs.Commit();
            return 0;
        });
        return cmd;
    }

    internal static string Report(AttentionLossProblem p, AttentionLossGradientResult r, double? requested) => Reports.Json(new GradientReport(
        r.Oracle, r.OracleIsExact, p.N, p.M, p.D, p.Scale, r.EntryBound, requested, r.OracleCalls, 2 * p.D + 4,
        new PerCallEpsilon(r.EpsilonC5, r.EpsilonW, r.EpsilonC7), r.PaperEpsilon2, r.OracleIsExact ? 0.0 : r.AprioriBound, r.GuaranteedBound,
        r.Elapsed.TotalSeconds, r.OracleElapsed.TotalSeconds), ReportJson.Default.GradientReport);

    private static Option<string> Matrix(string name, string description) => new(name) { Description = description + " 2-D .npy, float32 or float64.", Required = true };

    private static (DenseMatrix Matrix, string Option) Load(string path, string option)
    {
        var a = AttentionFiles.Read(path, option);
        if (a.DType is not (NpyDType.Float32 or NpyDType.Float64))
            throw new UsageException($"{option}: {path} has dtype {a.DType}; gradient inputs must be float32 (<f4) or float64 (<f8).");
        if (a.Shape.Count != 2 || a.Shape[0] == 0 || a.Shape[1] == 0)
            throw new UsageException($"{option}: {path} has shape ({string.Join(", ", a.Shape)}); gradient inputs must be non-empty 2-D matrices.");
        return (new DenseMatrix(a.ToFloat64(), a.Shape[0], a.Shape[1]), option);
    }

    /// <summary>Builds the problem, turning the library's argument errors into messages that name the option.</summary>
    private static AttentionLossProblem Build((DenseMatrix M, string O) a1, (DenseMatrix M, string O) a2, (DenseMatrix M, string O) a3,
        (DenseMatrix M, string O) e, (DenseMatrix M, string O) x, (DenseMatrix M, string O) y, double scale)
    {
        try
        {
            return new AttentionLossProblem(a1.M, a2.M, a3.M, e.M, x.M, y.M, scale);
        }
        catch (ArgumentException ex) when (ex.ParamName is { } p && p != "scale")
        {
            string message = ex.Message;
            int cut = message.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
            throw new UsageException($"--{p}: {(cut >= 0 ? message[..cut] : message)}");
        }
    }
}
