using System.CommandLine;
using System.Globalization;
using System.Numerics;
using FastAttention.Cli.Infrastructure;
using FastAttention.Planning;
using Spectre.Console;

namespace FastAttention.Cli.Commands;

/// <summary>
/// <c>fastattn plan</c>: what the planner would do on these inputs, without computing attention — per head the
/// statistics that decide (B, R, numerical ranks of Q and K at ε), every algorithm with its refusal reason in full or
/// its parameters, bound and predicted seconds, and the choice.
/// </summary>
internal static class PlanCommand
{
    public static Command Create()
    {
        var q = new Option<string>("--q") { Description = "Queries .npy: [n, d], [h, n, d] or [b, h, n, d].", Required = true };
        var k = new Option<string>("--k") { Description = "Keys .npy.", Required = true };
        var v = new Option<string>("--v") { Description = "Values .npy.", Required = true };
        var epsilon = new Option<double>("--epsilon") { Description = "Target ‖·‖∞ error.", Required = true };
        var scale = new Option<double?>("--scale") { Description = "Logit scale s; default 1/√d." };
        var causal = new Option<bool>("--causal") { Description = "Causal mask (query i sees keys j ≤ i)." };
        var precision = CommonOptions.Precision();
        var threads = CommonOptions.Threads();
        var json = new Option<bool>("--json") { Description = "Print one JSON object instead of tables." };
        var cmd = new Command("plan", "Show, per head, which algorithms can certify ε, their predicted seconds and the planner's choice.")
            { q, k, v, epsilon, scale, causal, precision, threads, json };
        cmd.SetAction(r =>
        {
            var files = AttentionFiles.Load(r.GetValue(q)!, r.GetValue(k)!, r.GetValue(v)!);
            double eps = r.GetValue(epsilon);
            CommonOptions.Positive("--epsilon", eps);
            int t = r.GetValue(threads);
            t = CommonOptions.ThreadCount(t);
            var settings = new AttentionSettings { Epsilon = eps, Threads = t, Rates = RatesCache.LoadOrDefault() };
            bool f32 = CommonOptions.IsFloat32(r.GetValue(precision), !files.AnyFloat64);
            var o = r.InvocationConfiguration.Output;
            return f32 ? Show(files.Problem<float>(r.GetValue(scale), r.GetValue(causal)), settings, r.GetValue(json), o)
                       : Show(files.Problem<double>(r.GetValue(scale), r.GetValue(causal)), settings, r.GetValue(json), o);
        });
        return cmd;
    }

    private static int Show<T>(AttentionProblem<T> problem, AttentionSettings settings, bool json, TextWriter o)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var outcome = new AutoAttention().TryPlan(problem, settings);
        if (!outcome.Succeeded) throw new AttentionRefusedException(outcome.Refusal!);
        var plan = outcome.Plan!;
        var heads = new List<PlanHeadReport>();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(o), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
        console.Profile.Width = Math.Max(console.Profile.Width, 200);
        if (!json) console.WriteLine($"rates: {settings.EffectiveRates.Source}; planning took {plan.PlanningTime.TotalSeconds:F3} s");
        foreach (var hp in plan.Heads)
        {
            var st = HeadStatistics.Measure(problem, hp.Head, settings.Epsilon);
            var stats = new PlanStatisticsReport(st.N, st.M, st.D, st.EntryBound, st.QMax, st.KMax, st.VMax, st.LogitBound, st.RankQ, st.RankK);
            heads.Add(new PlanHeadReport(hp.Head, stats, CertificateReport.Candidates(hp.Candidates), hp.Algorithm, hp.PredictedSeconds, hp.ErrorBound,
                CertificateReport.Parameters(hp.Parameters)));
            if (json) continue;
            console.WriteLine();
            console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"head {hp.Head}: n = {st.N}, m = {st.M}, d = {st.D}, B = {st.EntryBound:G4}, R = {st.LogitBound:G4}, rank Q = {st.RankQ}, rank K = {st.RankK} (at ε = {settings.Epsilon:G3})"));
            var table = new Table().AddColumns("algorithm", "certifies ε", "predicted (s)", "bound", "reason or parameters");
            foreach (var c in hp.Candidates)
            {
                string detail = c.Refusal is { } rf ? $"[{rf.Reason}] {rf.Detail}"
                    : c.Algorithm == hp.Algorithm ? string.Join(" ", CertificateReport.Parameters(hp.Parameters).Take(6).Select(p => $"{p.Key}={Format(p.Value)}")) : "";
                table.AddRow(Markup.Escape(c.Algorithm + (c.Algorithm == hp.Algorithm ? " ← chosen" : "")), c.Certifiable ? "yes" : "no",
                    double.IsNaN(c.PredictedSeconds) ? "-" : c.PredictedSeconds.ToString("G3", CultureInfo.InvariantCulture),
                    double.IsNaN(c.ErrorBound) ? "-" : c.ErrorBound.ToString("E2", CultureInfo.InvariantCulture), Markup.Escape(detail));
            }
            console.Write(table);
        }
        if (json) o.WriteLine(Reports.Json(new PlanReport(settings.Epsilon, plan.PlanningTime.TotalSeconds, settings.EffectiveRates.Source, heads), ReportJson.Default.PlanReport));
        return 0;
    }

    private static string Format(object? v) => v switch { double d => d.ToString("G4", CultureInfo.InvariantCulture), null => "", _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "" };
}
