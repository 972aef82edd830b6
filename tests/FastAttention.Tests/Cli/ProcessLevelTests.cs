using System.Diagnostics;

namespace FastAttention.Tests.Cli;

/// <summary>What only the real process shows: the signal handler, and stderr as the binary writes it.</summary>
public class ProcessLevelTests
{
    [Fact]
    public async Task Ctrl_c_in_the_binary_stops_cleanly_with_exit_130()
    {
        // SIGINT through POSIX kill (CI runs Linux).
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(CliRunner.DllPath);
        foreach (var a in new[] { "demo", "--threads", "1" }) psi.ArgumentList.Add(a);
        using var proc = Process.Start(psi)!;
        var stdout = proc.StandardOutput.ReadToEndAsync();
        var started = new TaskCompletionSource();
        var err = new System.Text.StringBuilder();
        proc.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (err) err.AppendLine(e.Data);
            if (e.Data.Contains("demo")) started.TrySetResult();
        };
        proc.BeginErrorReadLine();
        await started.Task.WaitAsync(TimeSpan.FromMinutes(2));
        using (var kill = Process.Start("kill", ["-INT", proc.Id.ToString()])) await kill.WaitForExitAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await proc.WaitForExitAsync(timeout.Token);
        string text; lock (err) text = err.ToString();
        Assert.Equal(130, proc.ExitCode);
        Assert.Contains("stopped by Ctrl-C", text);
        Assert.DoesNotContain("   at ", text);
        await stdout;
    }

    [Fact]
    public void The_binary_reports_a_bad_value_in_one_line_without_type_names()
    {
        var (code, _, err) = CliRunner.Run("bench", "exact", "--n", "abc", "--d", "4");
        Assert.Equal(2, code);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("--n: 'abc' is not an integer", err);
        Assert.DoesNotContain("System.", err);
    }

    [Fact]
    public void A_run_predicted_to_take_hours_says_so_before_starting()
    {
        string dir = CliRunner.TempDir();
        // Rates a million times slower than this machine: the planner predicts hours for a run that takes milliseconds.
        string rates = Path.Combine(dir, "rates.json");
        File.WriteAllText(rates, $$"""
            {"machine": "{{Environment.MachineName}}/{{Environment.ProcessorCount}}/{{FastAttention.Exact.SimdInfo.Float32Lanes}}", "source": "test",
             "flopsPerSecond": 1, "expsPerSecond": 1, "scalarFlopsPerSecond": 1, "bytesPerSecond": 1, "secondsPerTreeNode": 1, "secondsPerLeafKey": 1}
            """);
        var p = TestSupport.TestData.Problem(64, 64, 16, 16, 1, 3);
        string q = CliHarness.Save(dir, "q.npy", p.Q.ToArray(), 64, 16), k = CliHarness.Save(dir, "k.npy", p.K.ToArray(), 64, 16), v = CliHarness.Save(dir, "v.npy", p.V.ToArray(), 64, 16);
        var (code, _, err) = CliRunner.RunWith(new Dictionary<string, string> { ["FASTATTN_RATES"] = rates }, "run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "o.npy"));
        Assert.True(code == 0, err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.Contains("is predicted to take about", err);
        Assert.Contains("hours", err);
    }
}
