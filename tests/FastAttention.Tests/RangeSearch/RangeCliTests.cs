using System.Text.Json;
using FastAttention.Cli;
using FastAttention.Tests.Cli;

namespace FastAttention.Tests.RangeSearch;

public class RangeCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Theory]
    [InlineData("range", "2", "1e-4", "uniform")]
    [InlineData("range", "2", "1e-4", "line")]
    [InlineData("vector", "1", "1e-6", "clustered")]
    [InlineData("rounding", "1", "1e-3", "normal")]
    public void Bench_range_reports_speed_and_error_as_json(string algorithm, string d, string epsilon, string distribution)
    {
        var (code, stdout, stderr) = Run("bench", "range", "--n", "1500", "--d", d, "--bound", "100", "--scale", "1", "--epsilon", epsilon,
            "--distribution", distribution, "--algorithm", algorithm, "--threads", "1", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        foreach (var field in new[] { "seconds", "exactSeconds", "speedupVsExact", "maxAbsError", "epsilon", "exactSampledRows", "algorithm" })
            Assert.True(root.TryGetProperty(field, out _), $"missing {field}");
        Assert.Equal(algorithm, root.GetProperty("algorithm").GetString());
        Assert.Equal(1024, root.GetProperty("exactSampledRows").GetInt32());
        Assert.True(root.GetProperty("maxAbsError").GetDouble() <= double.Parse(epsilon, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(root.GetProperty("seconds").GetDouble() > 0 && root.GetProperty("exactSeconds").GetDouble() > 0);
    }

    [Fact]
    public void Bench_range_refusals_and_usage_errors_exit_with_2()
    {
        var (code, _, err) = Run("bench", "range", "--n", "100", "--d", "2", "--epsilon", "1e-3", "--algorithm", "vector");
        Assert.Equal(2, code);
        Assert.Contains("d = 1", err);
        (code, _, err) = Run("bench", "range", "--n", "100", "--d", "2", "--epsilon", "1e-3", "--algorithm", "exact");
        Assert.Equal(2, code);
        Assert.Contains("--algorithm", err);
        (code, _, err) = Run("bench", "range", "--n", "100", "--d", "2", "--epsilon", "1e-3", "--distribution", "spiral");
        Assert.Equal(2, code);
        Assert.Contains("--distribution", err);
    }

    [Fact]
    public void Scaling_experiment_writes_csv_and_png_with_a_fitted_exponent()
    {
        string dir = CliRunner.TempDir();
        var (code, stdout, stderr) = Run("experiment", "scaling", "--algorithm", "vector", "--d", "1", "--min-log-n", "8", "--max-log-n", "10", "--out", dir, "--threads", "1");
        Assert.True(code == 0, stderr);
        Assert.Contains("fitted exponent", stdout);
        string csv = Path.Combine(dir, "scaling-vector-d1-uniform.csv");
        var lines = File.ReadAllLines(csv);
        Assert.Equal("n,seconds,exactSeconds,exactExtrapolated,speedup,maxAbsError,errorBound", lines[0]);
        Assert.Equal(3, lines.Count(l => char.IsDigit(l[0])));
        var png = File.ReadAllBytes(Path.Combine(dir, "scaling-vector-d1-uniform.png"));
        Assert.True(png.Length > 1000 && png[1] == 'P' && png[2] == 'N' && png[3] == 'G');
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
    }

    [Fact]
    public void Fit_recovers_a_known_exponent()
    {
        var n = new double[] { 1024, 2048, 4096, 8192 };
        Assert.Equal(1.5, FastAttention.Cli.Commands.ScalingExperimentCommand.Fit(n, n.Select(x => 3e-9 * Math.Pow(x, 1.5))), 9);
    }
}
