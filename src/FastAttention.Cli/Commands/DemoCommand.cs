using System.Globalization;
using System.CommandLine;
using FastAttention.Cli.Infrastructure;
using Spectre.Console;

namespace FastAttention.Cli.Commands;

/// <summary>One built-in demo instance: shape, entry bound, scale and the ε asked of approximate algorithms.</summary>
internal sealed record DemoInstance(string Name, string Description, int N, int D, double Bound, double Scale, double Epsilon, Distribution Distribution = Distribution.Uniform);

/// <summary>
/// <c>fastattn demo</c>: the main job on built-in data, through the planner. For every instance <c>auto</c> picks the
/// fastest algorithm that certifies ε; the row shows its choice, the max error against the float64 reference (on
/// sampled rows), the guaranteed bound, the time and the speedup over the exact kernel, and one line per alternative
/// with its predicted seconds or its refusal reason in full.
/// </summary>
internal static class DemoCommand
{
    /// <summary>The instances: a transformer head, a real-model-like head, a small-entry one, large-entry ones.</summary>
    public static readonly DemoInstance[] Instances =
    [
        new("standard", "a transformer head: N(0,1) entries clipped to ±3, s = 1/√d", 4096, 64, 3, 1 / 8.0, 1e-3, Distribution.Normal),
        new("real-model-like", "like a trained model's head (all-MiniLM-L6-v2): d = 32, full rank, entries up to ≈ 11, logits up to ≈ 70, s = 1/√d", 4096, 32, 11, 1 / Math.Sqrt(32), 1e-3, Distribution.Normal),
        new("small-entry", "Alman–Song's regime: entries uniform in [−1, 1], s = 1/d", 65536, 4, 1, 0.25, 1e-4),
        new("large-entry-1d", "low temperature: entries uniform in [−100, 100], s = 1", 65536, 1, 100, 1, 1e-6),
        new("large-entry-2d", "low temperature: entries uniform in [−100, 100], s = 1", 16384, 2, 100, 1, 1e-4),
    ];

    /// <summary>Further sections (e.g. the hardness reductions) add themselves here.</summary>
    public static readonly List<(string Title, Action<IAnsiConsole, bool> Run)> Sections = [];

    public static Command Create()
    {
        var quick = new Option<bool>("--quick") { Description = "Smaller instances (for a fast look)." };
        var threads = CommonOptions.Threads();
        var cmd = new Command("demo", "Let the planner choose an algorithm for each built-in instance and compare with the float64 reference.") { quick, threads };
        cmd.SetAction(r =>
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(r.InvocationConfiguration.Output), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
            console.Profile.Width = Math.Max(console.Profile.Width, 160);
            Run(console, r.GetValue(quick), CommonOptions.ThreadCount(r.GetValue(threads)), r.InvocationConfiguration.Error);
            return 0;
        });
        return cmd;
    }

    public static void Run(IAnsiConsole console, bool quick, int threads, TextWriter? progress = null)
    {
        var rates = RatesCache.LoadOrDefault();
        console.WriteLine($"FastAttention demo — {Environment.ProcessorCount} processors, kernel {Exact.SimdInfo.Describe()}, planner rates: {rates.Source}");
        console.WriteLine("'auto' plans every algorithm per head and runs the fastest one that certifies ε (else exact).");
        console.WriteLine("Errors are max |output − float64 reference| over 256 sampled query rows; 'bound' is the certificate.");
        foreach (var inst in Instances)
        {
            int nn = quick ? Math.Min(inst.N, 2048) : inst.N;
            console.WriteLine($"  {inst.Name,-16} n = m = {nn}, d = {inst.D}, ε = {inst.Epsilon:G2}: {inst.Description}");
        }
        foreach (var inst in Instances)
        {
            int n = quick ? Math.Min(inst.N, 2048) : inst.N;
            CliContext.Current.ThrowIfCancelled();
            progress?.WriteLine($"fastattn: demo — {inst.Name} (n = {n}, d = {inst.D}) …");
            var q = Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 1, inst.Distribution);
            var k = Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 2, inst.Distribution);
            var v = Infrastructure.Instances.Matrix(n, inst.D, Math.Min(inst.Bound, 1), 3, inst.Distribution);
            var problem = new AttentionProblem<double>(q, k, v, n, n, inst.D, inst.D, 1, inst.Scale);
            var rows = Infrastructure.Instances.SampleRows(n, 256, 4);
            var settings = new AttentionSettings { Epsilon = inst.Epsilon, Threads = threads, Rates = rates, Cancellation = CliContext.Current.Cancellation };
            WarmUp(inst, settings);
            var exactClock = System.Diagnostics.Stopwatch.StartNew();
            AttentionAlgorithms.Create("exact").Compute(problem, settings);
            double exactSeconds = exactClock.Elapsed.TotalSeconds;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var result = AttentionAlgorithms.Create("auto").Compute(problem, settings);
            double secs = clock.Elapsed.TotalSeconds;
            double err = Measure.MaxAbsError(problem, result.Output, rows);
            var head = result.Certificate.Heads[0];
            console.WriteLine();
            console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{inst.Name}: auto chose '{head.Algorithm}' — max error {err:E2}, bound {result.Certificate.ErrorBound:E2} (ε = {inst.Epsilon:G2}), {secs:F3} s (planning {result.Certificate.PlanningTime.TotalSeconds:F3} s, predicted {head.PredictedSeconds:G3} s), exact {exactSeconds:F3} s → {exactSeconds / secs:F1}× exact"));
            string parameters = string.Join(" ", CertificateReport.Parameters(head.Parameters).Take(5).Select(p => $"{p.Key}={Format(p.Value)}"));
            if (parameters.Length > 0) console.WriteLine($"    parameters: {parameters}");
            foreach (var c in head.Candidates)
            {
                string line = c.Refusal is { } rf
                    ? $"    {c.Algorithm,-10} refused [{rf.Reason}]: {rf.Detail}"
                    : string.Create(CultureInfo.InvariantCulture, $"    {c.Algorithm,-10} certifies ε, predicted {c.PredictedSeconds:G3} s, bound {c.ErrorBound:E2}{(c.Algorithm == head.Algorithm ? "  ← chosen" : "")}");
                console.WriteLine(line);
            }
        }
        foreach (var (title, run) in Sections)
        {
            CliContext.Current.ThrowIfCancelled();
            progress?.WriteLine($"fastattn: demo — {title} …");
            console.WriteLine();
            console.WriteLine(title);
            run(console, quick);
        }
    }

    /// <summary>Runs exact and auto once on a small copy of the instance so that no timing includes JIT compilation.</summary>
    private static void WarmUp(DemoInstance inst, AttentionSettings settings)
    {
        int n = 512;
        var small = new AttentionProblem<double>(Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 5), Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 6),
            Infrastructure.Instances.Matrix(n, inst.D, Math.Min(inst.Bound, 1), 7), n, n, inst.D, inst.D, 1, inst.Scale);
        AttentionAlgorithms.Create("exact").Compute(small, settings);
        AttentionAlgorithms.Create("auto").Compute(small, settings);
    }

    private static string Format(object? v) => v switch { double d => d.ToString("G4", CultureInfo.InvariantCulture), null => "", _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "" };
}
