using System.Text.Json;
using FastAttention.Gradient;
using FastAttention.IO;
using FastAttention.Tests.Cli;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Gradient;

public class GradientCliTests
{
    private static string Save(string dir, string name, DenseMatrix m)
    {
        string path = Path.Combine(dir, name + ".npy");
        NpyFile.Write(path, m.Span, [m.Rows, m.Cols]);
        return path;
    }

    private static string[] GradientArgs(string dir, AttentionLossProblem p) =>
    [
        "gradient", "--a1", Save(dir, "a1", p.A1), "--a2", Save(dir, "a2", p.A2), "--a3", Save(dir, "a3", p.A3),
        "--e", Save(dir, "e", p.E), "--x", Save(dir, "x", p.X), "--y", Save(dir, "y", p.Y),
    ];

    [Fact]
    public void Gradient_command_writes_the_reduction_gradient_and_a_report()
    {
        string dir = CliRunner.TempDir();
        var p = GradientTestData.Problem(20, 20, 3, 1.0, 81, scale: 0.6);
        string outPath = Path.Combine(dir, "g.npy"), report = Path.Combine(dir, "r.json");
        var (code, _, err) = CliRunner.Run([.. GradientArgs(dir, p), "--scale", "0.6", "--oracle", "exact", "--out", outPath, "--report", report]);
        Assert.True(code == 0, err);
        var g = NpyFile.Read(outPath);
        Assert.Equal(new[] { 3, 3 }, g.Shape);
        var reference = AttentionLossReference.Gradient(p);
        Assert.True(TestData.MaxAbsDiff(g.ToFloat64(), reference) <= 1e-9 * GradientTestData.MaxAbs(reference));
        using var json = JsonDocument.Parse(File.ReadAllText(report));
        Assert.Equal(3 + 2, json.RootElement.GetProperty("oracleCalls").GetInt32());
        // The exact oracle's rounding bound, propagated: positive, covering the error, at rounding level.
        double measured = TestData.MaxAbsDiff(g.ToFloat64(), reference);
        Assert.InRange<double>(json.RootElement.GetProperty("guaranteedBound").GetDouble(), measured, 1e-9 * GradientTestData.MaxAbs(reference));
        Assert.True(json.RootElement.GetProperty("seconds").GetDouble() >= 0);
        Assert.True(json.RootElement.GetProperty("perCallEpsilon").GetProperty("c7").GetDouble() > 0);
    }

    [Theory]
    [InlineData("x", "--x")]
    [InlineData("e", "--e")]
    public void Gradient_command_names_the_bad_argument_in_one_line_with_exit_code_2(string bad, string option)
    {
        string dir = CliRunner.TempDir();
        var p = GradientTestData.Problem(6, 6, 2, 1.0, 82);
        var args = GradientArgs(dir, p);
        // Replace the chosen input by a 2×3 matrix: non-square for X, wrong shape for E.
        args[Array.IndexOf(args, option) + 1] = Save(dir, "bad", GradientTestData.M(2, 3, 1, 83));
        var (code, _, err) = CliRunner.Run([.. args, "--out", Path.Combine(dir, "g.npy")]);
        Assert.Equal(2, code);
        Assert.StartsWith($"fastattn: {option}:", err);
        Assert.Single(err.Trim().Split('\n'));
        Assert.False(File.Exists(Path.Combine(dir, "g.npy")));
        _ = bad;
    }

    [Fact]
    public void Gradient_command_requires_epsilon_only_for_approximate_oracles_and_rejects_unknown_ones()
    {
        string dir = CliRunner.TempDir();
        var p = GradientTestData.Problem(6, 6, 2, 1.0, 84);
        var (code, _, err) = CliRunner.Run([.. GradientArgs(dir, p), "--oracle", "nosuch", "--out", Path.Combine(dir, "g.npy")]);
        Assert.Equal(2, code);
        Assert.Contains("--oracle", err);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Backward_command_writes_dq_dk_dv_matching_the_reference(bool causal)
    {
        string dir = CliRunner.TempDir();
        int n = 9, m = 13, d = 4, dv = 3;
        var p = TestData.Problem(n, m, d, dv, 1.0, 91, scale: 0.5, causal: causal);
        var dO = TestData.Uniform(n * dv, 1, 92);
        NpyFile.Write(Path.Combine(dir, "q.npy"), p.Q.Span, [n, d]);
        NpyFile.Write(Path.Combine(dir, "k.npy"), p.K.Span, [m, d]);
        NpyFile.Write(Path.Combine(dir, "v.npy"), p.V.Span, [m, dv]);
        NpyFile.Write(Path.Combine(dir, "do.npy"), dO, [n, dv]);
        string outDir = Path.Combine(dir, "grads");
        string[] args = ["backward", "--q", Path.Combine(dir, "q.npy"), "--k", Path.Combine(dir, "k.npy"), "--v", Path.Combine(dir, "v.npy"),
            "--do", Path.Combine(dir, "do.npy"), "--scale", "0.5", "--out-dir", outDir];
        var (code, _, err) = CliRunner.Run(causal ? [.. args, "--causal"] : args);
        Assert.True(code == 0, err);
        var (rq, rk, rv) = BackwardReference.Compute(p, dO);
        foreach (var (file, reference, shape) in new[] { ("dQ.npy", rq, new[] { n, d }), ("dK.npy", rk, new[] { m, d }), ("dV.npy", rv, new[] { m, dv }) })
        {
            var a = NpyFile.Read(Path.Combine(outDir, file));
            Assert.Equal(shape, a.Shape);
            Assert.False(a.IsFloat32);
            Assert.True(TestData.MaxAbsDiff(a.ToFloat64(), reference) <= 1e-11 * Math.Max(1, GradientTestData.MaxAbs(reference)), file);
        }
    }

    [Fact]
    public void Backward_command_rejects_a_do_of_the_wrong_shape()
    {
        string dir = CliRunner.TempDir();
        var p = TestData.Problem(5, 5, 2, 2, 1.0, 93);
        NpyFile.Write(Path.Combine(dir, "q.npy"), p.Q.Span, [5, 2]);
        NpyFile.Write(Path.Combine(dir, "k.npy"), p.K.Span, [5, 2]);
        NpyFile.Write(Path.Combine(dir, "v.npy"), p.V.Span, [5, 2]);
        NpyFile.Write(Path.Combine(dir, "do.npy"), new double[12], [6, 2]);
        var (code, _, err) = CliRunner.Run("backward", "--q", Path.Combine(dir, "q.npy"), "--k", Path.Combine(dir, "k.npy"), "--v", Path.Combine(dir, "v.npy"),
            "--do", Path.Combine(dir, "do.npy"), "--out-dir", Path.Combine(dir, "out"));
        Assert.Equal(2, code);
        Assert.StartsWith("fastattn: --do:", err);
        Assert.False(File.Exists(Path.Combine(dir, "out", "dQ.npy")));
    }

    [Fact]
    public void Bench_gradient_prints_the_promised_json()
    {
        var (code, stdout, err) = CliRunner.Run("bench", "gradient", "--n", "48", "--d", "3", "--bound", "1", "--oracle", "exact", "--json");
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        foreach (var key in new[] { "seconds", "exactSeconds", "speedupVsExact", "maxAbsError", "epsilon", "oracleCalls" })
            Assert.True(root.TryGetProperty(key, out _), key);
        Assert.True(root.GetProperty("oracleCalls").GetInt32() <= 2 * 3 + 4);
        Assert.True(root.GetProperty("maxAbsError").GetDouble() <= 1e-9 * root.GetProperty("maxAbsGradient").GetDouble());
    }

    [Fact]
    public void Bench_backward_prints_forward_backward_and_their_ratio()
    {
        var (code, stdout, err) = CliRunner.Run("bench", "backward", "--n", "64", "--d", "8", "--json");
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(stdout);
        var root = json.RootElement;
        double f = root.GetProperty("forwardSeconds").GetDouble(), b = root.GetProperty("backwardSeconds").GetDouble();
        Assert.True(f > 0 && b > 0);
        Assert.Equal(b / f, root.GetProperty("ratio").GetDouble(), 9);
        Assert.True(root.GetProperty("savingForwardMaxAbsError").GetDouble() < 1e-5);
    }
}
