using System.Diagnostics;

namespace FastAttention.Tests.Cli;

/// <summary>Runs the real fastattn binary (built next to the tests) as a separate process.</summary>
public static class CliRunner
{
    public static string DllPath
    {
        get
        {
            string p = Path.Combine(AppContext.BaseDirectory, "fastattn.dll");
            Assert.True(File.Exists(p), $"fastattn.dll not found next to the tests at {p}");
            return p;
        }
    }

    public static (int ExitCode, string Stdout, string Stderr) Run(params string[] args) => RunWith(null, args);

    /// <summary>Runs the binary with extra environment variables.</summary>
    public static (int ExitCode, string Stdout, string Stderr) RunWith(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (environment is not null) foreach (var (k, v) in environment) psi.Environment[k] = v;
        psi.ArgumentList.Add(DllPath);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var proc = Process.Start(psi)!;
        var stdout = proc.StandardOutput.ReadToEndAsync();
        var stderr = proc.StandardError.ReadToEndAsync();
        if (!proc.WaitForExit(TimeSpan.FromMinutes(5))) { proc.Kill(true); Assert.Fail("fastattn timed out"); }
        return (proc.ExitCode, stdout.Result, stderr.Result);
    }

    public static string TempDir()
    {
        string d = Path.Combine(Path.GetTempPath(), "fastattn-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(d);
        return d;
    }
}
