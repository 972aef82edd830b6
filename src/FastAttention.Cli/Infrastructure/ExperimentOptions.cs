using System.CommandLine;

namespace FastAttention.Cli.Infrastructure;

/// <summary>What every experiment shares once its options are parsed: the output folder (created), repeats,
/// quick mode, threads, seed, and where results (stdout) and progress (stderr) go.</summary>
internal sealed record ExperimentRun(string Dir, int Repeats, bool Quick, int Threads, int Seed, TextWriter Output, TextWriter Log)
{
    /// <summary>One progress line on stderr, prefixed with the experiment's name.</summary>
    public void Progress(string experiment, string message) => Log.WriteLine($"[{experiment} {DateTime.Now:HH:mm:ss}] {message}");

    public string PathOf(string file) => Path.Combine(Dir, file);

    /// <summary>Creates the output folder (after every option was validated, so a rejected command leaves nothing behind).</summary>
    public void CreateDir()
    {
        try { Directory.CreateDirectory(Dir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new UsageException($"--out: cannot create the folder '{Dir}' ({e.Message}).");
        }
    }
}

/// <summary>The options every experiment has: --out (created when missing), --repeats, --quick, --threads, --seed.</summary>
internal sealed class ExperimentOptions
{
    public Option<string> Out { get; }
    public Option<int> Repeats { get; } = new("--repeats") { Description = "Independent repeats per point (median and min–max are reported).", DefaultValueFactory = _ => 3 };
    public Option<bool> Quick { get; } = new("--quick") { Description = "A small configuration that finishes in under a minute (for CI and first looks)." };
    public Option<int> Threads { get; } = CommonOptions.Threads();
    public Option<int> Seed { get; } = new("--seed") { Description = "Random seed of the generated inputs.", DefaultValueFactory = _ => 1 };

    public ExperimentOptions(string files) =>
        Out = new Option<string>("--out") { Description = $"Folder for {files} (created when missing).", DefaultValueFactory = _ => "." };

    public void AddTo(Command command)
    {
        command.Options.Add(Out); command.Options.Add(Repeats); command.Options.Add(Quick);
        command.Options.Add(Threads); command.Options.Add(Seed);
    }

    /// <summary>Validates the shared options (the folder is created by <see cref="ExperimentRun.CreateDir"/> once the
    /// command's own options are valid too).</summary>
    public ExperimentRun Parse(ParseResult r)
    {
        int repeats = r.GetValue(Repeats), threads = r.GetValue(Threads);
        CommonOptions.AtLeast("--repeats", repeats, 1);
        CommonOptions.AtLeast("--threads", threads, 0);
        string dir = r.GetValue(Out)!;
        if (string.IsNullOrWhiteSpace(dir)) throw new UsageException("--out must name a folder.");
        if (File.Exists(dir)) throw new UsageException($"--out: '{dir}' is a file, not a folder.");
        return new ExperimentRun(dir, repeats, r.GetValue(Quick), threads, r.GetValue(Seed), r.InvocationConfiguration.Output, r.InvocationConfiguration.Error);
    }
}

/// <summary>Option values under --quick: an option given on the command line wins; otherwise the quick value when
/// --quick is set, else the option's default.</summary>
internal static class QuickDefaults
{
    public static T Pick<T>(ParseResult r, Option<T> option, bool quick, T quickValue)
    {
        var given = r.GetResult(option);
        bool explicitlyGiven = given is not null && !given.Implicit;
        return explicitlyGiven || !quick ? r.GetValue(option)! : quickValue;
    }
}
