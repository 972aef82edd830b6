using System.Text.Json;
using FastAttention.Tests.Cli;

namespace FastAttention.Tests.Polynomial;

public class PolynomialCliTests
{
    [Fact]
    public void Bench_polynomial_reports_json_with_measured_error_within_epsilon()
    {
        var (code, stdout, stderr) = CliRunner.Run("bench", "polynomial", "--n", "1024", "--d", "4", "--bound", "1", "--scale", "0.25", "--epsilon", "1e-4", "--json", "--threads", "1");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        foreach (var key in new[] { "seconds", "exactSeconds", "speedupVsExact", "maxAbsError", "epsilon", "degree", "rank", "exactSampledRows" })
            Assert.True(root.TryGetProperty(key, out _), $"missing {key}");
        Assert.True(root.GetProperty("maxAbsError").GetDouble() <= 1e-4);
        Assert.True(root.GetProperty("maxAbsError").GetDouble() <= root.GetProperty("errorBound").GetDouble());
        Assert.Equal(0, root.GetProperty("exactSampledRows").GetInt32());
        Assert.True(root.GetProperty("seconds").GetDouble() > 0);
        int g = root.GetProperty("degree").GetInt32();
        Assert.Equal((g + 1) * (g + 2) * (g + 3) * (g + 4) / 24, root.GetProperty("rank").GetInt32()); // C(g + 4, 4)
    }

    [Fact]
    public void Bench_polynomial_refusal_exits_2_with_the_reason()
    {
        var (code, _, stderr) = CliRunner.Run("bench", "polynomial", "--n", "256", "--d", "1", "--bound", "6", "--scale", "1", "--epsilon", "1e-6");
        Assert.Equal(2, code);
        Assert.Contains("'range'", stderr);
    }
}
