using System.Text.Json;
using FastAttention.Cli;

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
        foreach (var field in new[] { "seconds", "exactSeconds", "speedupVsExact", "maxAbsError", "epsilon", "exactSampledRows", "algorithm", "firstRunSeconds" })
            Assert.True(root.TryGetProperty(field, out _), $"missing {field}");
        Assert.Equal(algorithm, root.GetProperty("algorithm").GetString());
        Assert.Equal(1500, root.GetProperty("exactSampledRows").GetInt32()); // the whole exact kernel: milliseconds here
        Assert.True(root.GetProperty("maxAbsError").GetDouble() <= double.Parse(epsilon, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(root.GetProperty("seconds").GetDouble() > 0 && root.GetProperty("exactSeconds").GetDouble() > 0 && root.GetProperty("firstRunSeconds").GetDouble() > 0);
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
}
