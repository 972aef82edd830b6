using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using FastAttention.Cli.Infrastructure;
using Spectre.Console;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn bench planner</c>: the planner's targets measured in one run. On instances where different algorithms
/// win, every algorithm runs by name (plan + execute, wall clock) and then <c>auto</c> does; the table gives auto's
/// time over the fastest certifiable algorithm's, its planning overhead, its predicted over its actual seconds, and
/// every error against the float64 reference on sampled rows (never above ε).
/// </summary>
internal static class BenchPlannerCommand
{
    /// <summary>One instance family: d, entry bound, scale, ε, causal, and how K is drawn.</summary>
    internal sealed record Family(string Name, int D, double Bound, double Scale, double Epsilon, bool Causal = false, int KeyRank = 0, Distribution Distribution = Distribution.Uniform);

    internal static readonly Family[] Families =
    [
        new("small-entry d=4", 4, 1, 0.25, 1e-4),
        new("large-entry d=1", 1, 100, 1, 1e-6),
        new("large-entry d=2", 2, 100, 1, 1e-4),
        new("large-entry d=4", 4, 100, 0.25, 1e-4),
        new("rank-2 keys d=16", 16, 3, 1, 1e-4, KeyRank: 2),
        new("d=64 normal", 64, 3, 0.125, 1e-3, Distribution: Distribution.Normal),
        new("causal small-entry d=4", 4, 1, 0.25, 1e-4, Causal: true),
    ];

    public static Command Create()
    {
        var n = new Option<int>("--n") { Description = "Queries = keys per instance (default 65536; d = 64 uses n/4).", DefaultValueFactory = _ => 65536 };
        var threads = CommonOptions.Threads();
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var cmd = new Command("planner", "auto vs every algorithm by name on instances where different algorithms win.") { n, threads, json };
        cmd.SetAction(r =>
        {
            int size = r.GetValue(n), t = r.GetValue(threads);
            CommonOptions.AtLeast("--n", size, 64);
            t = CommonOptions.ThreadCount(t);
            var err = r.InvocationConfiguration.Error;
            var rows = new List<PlannerInstanceReport>();
            var rates = RatesCache.LoadOrDefault();
            foreach (var f in Families)
            {
                err.WriteLine($"fastattn: bench planner — {f.Name} …");
                rows.Add(Measure(f, f.D >= 32 ? Math.Max(64, size / 4) : size, t, rates));
            }
            var o = r.InvocationConfiguration.Output;
            if (r.GetValue(json)) { o.WriteLine(Reports.Json(new BenchPlannerReport(rates.Source, rows), ReportJson.Default.BenchPlannerReport)); return 0; }
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(o), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
            console.Profile.Width = Math.Max(console.Profile.Width, 200);
            console.WriteLine($"rates: {rates.Source}; {Environment.ProcessorCount} processors, kernel {Exact.SimdInfo.Describe()}");
            var table = new Table().AddColumns("instance", "n", "fastest by name", "its s", "auto chose", "auto s", "auto/fastest", "planning/chosen", "predicted/actual", "auto error", "ε", "all (s)");
            foreach (var row in rows)
            {
                static string G(double x) => x.ToString("G3", CultureInfo.InvariantCulture);
                table.AddRow(row.Instance, row.N.ToString(CultureInfo.InvariantCulture), row.Fastest, G(row.FastestSeconds), row.AutoChoice, G(row.AutoSeconds),
                    G(row.AutoOverFastest), G(row.PlanningOverChosen), G(row.PredictedOverActual), G(row.AutoError), G(row.Epsilon), Markup.Escape(row.ByName));
            }
            console.Write(table);
            return 0;
        });
        return cmd;
    }

    internal static AttentionProblem<double> Make(Family f, int n)
    {
        var q = Instances.Matrix(n, f.D, f.Bound, 1, f.Distribution);
        double[] k;
        if (f.KeyRank > 0)
        {
            // K = A·W with A (n×r) and W (r×d) uniform: numerical rank r, entries up to ≈ bound.
            var a = Instances.Matrix(n, f.KeyRank, 1, 2);
            var w = Instances.Matrix(f.KeyRank, f.D, f.Bound / f.KeyRank, 3);
            k = new double[n * f.D];
            for (int i = 0; i < n; i++)
                for (int c = 0; c < f.D; c++)
                {
                    double s = 0;
                    for (int t = 0; t < f.KeyRank; t++) s += a[i * f.KeyRank + t] * w[t * f.D + c];
                    k[i * f.D + c] = s;
                }
        }
        else k = Instances.Matrix(n, f.D, f.Bound, 2, f.Distribution);
        var v = Instances.Matrix(n, f.D, 1, 4);
        return new AttentionProblem<double>(q, k, v, n, n, f.D, f.D, 1, f.Scale, f.Causal);
    }

    private static PlannerInstanceReport Measure(Family f, int n, int threads, MachineRates rates)
    {
        var p = Make(f, n);
        var sample = Instances.SampleRows(n, 128, 7);
        var settings = new AttentionSettings { Epsilon = f.Epsilon, Threads = threads, Rates = rates };
        WarmUp(f, threads, rates);
        var byName = new List<string>();
        string fastest = "exact";
        double fastestSeconds = double.PositiveInfinity;
        foreach (string name in Planning.AutoAttention.CandidateNames)
        {
            var alg = AttentionAlgorithms.Create(name);
            var clock = Stopwatch.StartNew();
            var outcome = alg.TryPlan(p, settings);
            if (!outcome.Succeeded) { byName.Add($"{name}: refused ({outcome.Refusal!.Reason})"); continue; }
            AttentionResult<double> result;
            using var plan = outcome.Plan!;
            try { result = plan.Execute(); }
            catch (AttentionRefusedException e) { byName.Add($"{name}: refused after run ({e.Reason})"); continue; }
            double secs = clock.Elapsed.TotalSeconds;
            double e2 = Infrastructure.Measure.MaxAbsError(p, result.Output, sample);
            if (!alg.IsExact && e2 > f.Epsilon) throw new InvalidOperationException($"{name} exceeded ε on {f.Name}: {e2:G3} > {f.Epsilon:G3}");
            byName.Add(string.Create(CultureInfo.InvariantCulture, $"{name} {secs:F3}"));
            if (secs < fastestSeconds) { fastestSeconds = secs; fastest = name; }
        }
        var autoClock = Stopwatch.StartNew();
        var auto = AttentionAlgorithms.Create("auto").Compute(p, settings);
        double autoSeconds = autoClock.Elapsed.TotalSeconds;
        double autoError = Infrastructure.Measure.MaxAbsError(p, auto.Output, sample);
        var c = auto.Certificate;
        return new PlannerInstanceReport(f.Name, n, f.D, f.Epsilon, fastest, fastestSeconds,
            c.Heads[0].Algorithm, autoSeconds, autoSeconds / fastestSeconds,
            c.PlanningTime.TotalSeconds, c.Elapsed.TotalSeconds, c.PlanningTime.TotalSeconds / c.Elapsed.TotalSeconds,
            c.PredictedSeconds, c.PredictedSeconds / c.Elapsed.TotalSeconds,
            autoError, c.ErrorBound, string.Join("; ", byName), CertificateReport.Candidates(c.Heads[0].Candidates));
    }

    /// <summary>Runs every algorithm once on a small copy so no timing includes JIT compilation.</summary>
    private static void WarmUp(Family f, int threads, MachineRates rates)
    {
        var small = Make(f, 512);
        var settings = new AttentionSettings { Epsilon = f.Epsilon, Threads = threads, Rates = rates };
        foreach (string name in Planning.AutoAttention.CandidateNames.Append("auto"))
        {
            var outcome = AttentionAlgorithms.Create(name).TryPlan(small, settings);
            if (!outcome.Succeeded) continue;
            try { outcome.Plan!.Execute(); } catch (AttentionRefusedException) { }
        }
    }
}
