using System.CommandLine;
using FastAttention.Cli.Infrastructure;
using Spectre.Console;

namespace FastAttention.Cli.Commands;

/// <summary>One built-in demo instance: shape, entry bound, scale and the ε asked of approximate algorithms.</summary>
internal sealed record DemoInstance(string Name, string Description, int N, int D, double Bound, double Scale, double Epsilon, Distribution Distribution = Distribution.Uniform);

/// <summary>
/// <c>fastattn demo</c>: the main job on built-in data. Every registered algorithm runs on every instance; each row
/// shows the max error against the float64 reference (on sampled rows), the guaranteed bound, the time and the
/// speedup over the exact kernel. Algorithms that cannot certify an instance say why ("refused").
/// </summary>
internal static class DemoCommand
{
    /// <summary>The instances: a standard transformer head, a small-entry one, large-entry ones.</summary>
    public static readonly DemoInstance[] Instances =
    [
        new("standard", "a transformer head: N(0,1) entries clipped to ±3, s = 1/√d", 4096, 64, 3, 1 / 8.0, 1e-3, Distribution.Normal),
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
        var cmd = new Command("demo", "Run every algorithm on built-in instances and compare with the float64 reference.") { quick, threads };
        cmd.SetAction(r =>
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(r.InvocationConfiguration.Output), Ansi = AnsiSupport.No, ColorSystem = ColorSystemSupport.NoColors });
            console.Profile.Width = Math.Max(console.Profile.Width, 160);
            Run(console, r.GetValue(quick), CommonOptions.ThreadCount(r.GetValue(threads)));
            return 0;
        });
        return cmd;
    }

    public static void Run(IAnsiConsole console, bool quick, int threads)
    {
        console.WriteLine($"FastAttention demo — {Environment.ProcessorCount} processors, kernel {Exact.SimdInfo.Describe()}");
        console.WriteLine("Errors are max |output − float64 reference| over 256 sampled query rows; 'bound' is the certificate.");
        foreach (var inst in Instances)
        {
            int nn = quick ? Math.Min(inst.N, 2048) : inst.N;
            console.WriteLine($"  {inst.Name,-15} n = m = {nn}, d = {inst.D}, ε = {inst.Epsilon:G2}: {inst.Description}");
        }
        var table = new Table().AddColumns("instance", "algorithm", "max error", "bound", "time (s)", "speedup vs exact", "parameters");
        var context = CliContext.Current;
        var names = AttentionAlgorithms.Names.Where(x => x != "reference").ToList();
        foreach (var inst in Instances)
        {
            int n = quick ? Math.Min(inst.N, 2048) : inst.N;
            context.ThrowIfCancelled();
            context.Status($"demo: instance '{inst.Name}' (n = m = {n}, d = {inst.D}): warming up…");
            var q = Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 1, inst.Distribution);
            var k = Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 2, inst.Distribution);
            var v = Infrastructure.Instances.Matrix(n, inst.D, Math.Min(inst.Bound, 1), 3, inst.Distribution);
            var problem = new AttentionProblem<double>(q, k, v, n, n, inst.D, inst.D, 1, inst.Scale);
            var rows = Infrastructure.Instances.SampleRows(n, 256, 4);
            WarmUp(inst, threads);
            double exactSeconds = double.NaN;
            foreach (string name in names)
            {
                context.ThrowIfCancelled();
                context.Status($"demo: instance '{inst.Name}': running '{name}' ({names.IndexOf(name) + 1} of {names.Count})…");
                var alg = AttentionAlgorithms.Create(name);
                var settings = new AttentionSettings { Epsilon = inst.Epsilon, Threads = threads, Cancellation = context.Cancellation };
                string label = inst.Name;
                try
                {
                    var result = alg.Compute(problem, settings);
                    double secs = result.Certificate.Elapsed.TotalSeconds;
                    if (name == "exact") exactSeconds = secs;
                    double err = Measure.MaxAbsError(problem, result.Output, rows);
                    table.AddRow(Markup.Escape(label), name, $"{err:E2}", alg.IsExact ? "exact" : $"{result.Certificate.ErrorBound:E2}",
                        $"{secs:F4}", double.IsNaN(exactSeconds) ? "-" : $"{exactSeconds / secs:F1}×",
                        Markup.Escape(string.Join(" ", result.Certificate.Parameters.Take(4).Select(p => $"{p.Key}={Format(p.Value)}"))));
                }
                catch (AttentionRefusedException e)
                {
                    table.AddRow(Markup.Escape(label), name, "refused", "-", "-", "-", Markup.Escape(Shorten(e.Message, 90)));
                }
            }
        }
        console.Write(table);
        foreach (var (title, run) in Sections)
        {
            context.ThrowIfCancelled();
            context.Status($"demo: {title}…");
            console.WriteLine();
            console.WriteLine(title);
            run(console, quick);
        }
    }

    /// <summary>Runs every algorithm once on a small copy of the instance so that no timing includes JIT compilation.</summary>
    private static void WarmUp(DemoInstance inst, int threads)
    {
        int n = 512;
        var small = new AttentionProblem<double>(Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 5), Infrastructure.Instances.Matrix(n, inst.D, inst.Bound, 6),
            Infrastructure.Instances.Matrix(n, inst.D, Math.Min(inst.Bound, 1), 7), n, n, inst.D, inst.D, 1, inst.Scale);
        foreach (string name in AttentionAlgorithms.Names)
        {
            if (name == "reference") continue;
            try { AttentionAlgorithms.Create(name).Compute(small, new AttentionSettings { Epsilon = inst.Epsilon, Threads = threads }); }
            catch (AttentionRefusedException) { }
        }
    }

    private static string Format(object v) => v switch { double d => d.ToString("G4"), _ => v.ToString() ?? "" };
    private static string Shorten(string s, int max) => s.Length <= max ? s : s[..(max - 1)] + "…";
}
