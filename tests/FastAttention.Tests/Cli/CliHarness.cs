using FastAttention.Cli;
using FastAttention.Cli.Infrastructure;
using FastAttention.IO;

namespace FastAttention.Tests.Cli;

/// <summary>
/// Runs the tool's real entry point (<see cref="Program.Run(string[], TextWriter, TextWriter)"/>: the same parser,
/// commands and exit-code mapping as the binary) in-process, so that many cases stay cheap; <see cref="CliRunner"/>
/// runs the binary as a process where the process itself matters (signals, stack traces on stderr).
/// </summary>
internal static class CliHarness
{
    public sealed record Result(int Code, string Out, string Err)
    {
        public string[] ErrLines => Err.Trim().Length == 0 ? [] : Err.Trim().Split('\n');
    }

    public static Result Run(params string[] args) => Run(CancellationToken.None, args);

    public static Result Run(CancellationToken cancel, params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = Program.Run(args, new CliContext(o, e, cancel, interactive: false));
        return new Result(code, o.ToString(), e.ToString());
    }

    /// <summary>As if stderr were a terminal, with the progress bar appearing at once.</summary>
    public static Result RunInteractive(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = Program.Run(args, new CliContext(o, e, CancellationToken.None, interactive: true) { ProgressDelay = TimeSpan.Zero });
        return new Result(code, o.ToString(), e.ToString());
    }

    /// <summary>Exit 2, exactly one line on stderr that contains every expected fragment, no stack trace.</summary>
    public static void AssertUsage(Result r, params string[] expected)
    {
        Assert.True(r.Code == 2, $"exit {r.Code}: {r.Err}");
        Assert.Single(r.ErrLines);
        Assert.StartsWith("fastattn: ", r.Err);
        foreach (var x in expected) Assert.Contains(x, r.Err);
        AssertNoStackTrace(r.Err);
    }

    public static void AssertNoStackTrace(string err)
    {
        Assert.DoesNotContain("   at ", err);
        Assert.DoesNotContain("System.", err);
        Assert.DoesNotContain("Exception", err);
    }

    /// <summary>Files in a folder, temporary files included (hidden names start with a dot).</summary>
    public static string[] Entries(string dir) => Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).OrderBy(x => x).ToArray()!;

    public static string Save(string dir, string name, double[] data, params int[] shape)
    {
        string p = Path.Combine(dir, name);
        NpyFile.Write(p, data, shape);
        return p;
    }

    public static string Save(string dir, string name, float[] data, params int[] shape)
    {
        string p = Path.Combine(dir, name);
        NpyFile.Write(p, data, shape);
        return p;
    }
}
