using System.Text.Json;
using FastAttention.Exact;
using FastAttention.IO;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Cli;

public class RunCommandTests
{
    private static (string Dir, AttentionProblem<double> Problem) Inputs(int heads = 1, bool float32 = false)
    {
        string dir = CliRunner.TempDir();
        var p = TestData.Problem(33, 21, 5, 3, 2, seed: 9, heads: heads);
        int[] Shape(int rows, int cols) => heads == 1 ? [rows, cols] : [heads, rows, cols];
        void Save(string name, ReadOnlyMemory<double> data, int[] shape)
        {
            if (float32) NpyFile.Write(Path.Combine(dir, name), TestData.ToFloat(data.ToArray()), shape);
            else NpyFile.Write(Path.Combine(dir, name), data.Span, shape);
        }
        Save("q.npy", p.Q, Shape(33, 5)); Save("k.npy", p.K, Shape(21, 5)); Save("v.npy", p.V, Shape(21, 3));
        return (dir, p);
    }

    [Fact]
    public void Run_writes_the_exact_output_and_a_report()
    {
        var (dir, p) = Inputs(heads: 2);
        string o = Path.Combine(dir, "o.npy"), r = Path.Combine(dir, "r.json");
        var (code, _, err) = CliRunner.Run("run", "--q", Path.Combine(dir, "q.npy"), "--k", Path.Combine(dir, "k.npy"), "--v", Path.Combine(dir, "v.npy"), "--out", o, "--report", r, "--scale", "0.3");
        Assert.True(code == 0, err);
        var output = NpyFile.Read(o);
        Assert.Equal(new[] { 2, 33, 3 }, output.Shape);
        Assert.False(output.IsFloat32); // follows the inputs' dtype
        var reference = ReferenceAttention.Compute(p.With(scale: 0.3));
        Assert.True(TestData.MaxAbsDiff(output.ToFloat64(), reference) <= 1e-12);
        using var report = JsonDocument.Parse(File.ReadAllText(r));
        var root = report.RootElement;
        foreach (var key in new[] { "algorithm", "n", "m", "d", "dv", "heads", "scale", "causal", "entryBound", "epsilon", "errorBound", "seconds", "threads", "parameters" })
            Assert.True(root.TryGetProperty(key, out _), $"report lacks {key}");
        Assert.Equal("exact", root.GetProperty("algorithm").GetString());
        Assert.Equal(2, root.GetProperty("heads").GetInt32());
        Assert.Equal(0.3, root.GetProperty("scale").GetDouble());
        Assert.Equal(p.EntryBound, root.GetProperty("entryBound").GetDouble());
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
    }

    [Fact]
    public void Precision_option_sets_the_output_dtype_and_causal_is_applied()
    {
        var (dir, p) = Inputs(float32: true);
        string o = Path.Combine(dir, "o.npy");
        var (code, _, err) = CliRunner.Run("run", "--q", Path.Combine(dir, "q.npy"), "--k", Path.Combine(dir, "k.npy"), "--v", Path.Combine(dir, "v.npy"), "--out", o, "--precision", "f64", "--causal");
        Assert.True(code == 0, err);
        var output = NpyFile.Read(o);
        Assert.False(output.IsFloat32);
        var p32 = new AttentionProblem<float>(TestData.ToFloat(p.Q.ToArray()), TestData.ToFloat(p.K.ToArray()), TestData.ToFloat(p.V.ToArray()), 33, 21, 5, 3, causal: true);
        Assert.True(TestData.MaxAbsDiff(output.ToFloat64(), ReferenceAttention.Compute(p32)) <= 1e-12);
    }

    [Fact]
    public void Bad_inputs_exit_2_with_one_specific_line_and_leave_no_output()
    {
        var (dir, _) = Inputs();
        string q = Path.Combine(dir, "q.npy"), k = Path.Combine(dir, "k.npy"), v = Path.Combine(dir, "v.npy"), o = Path.Combine(dir, "o.npy");
        NpyFile.Write(Path.Combine(dir, "k4.npy"), new double[21 * 4], [21, 4]);
        File.WriteAllText(Path.Combine(dir, "junk.npy"), "not numpy");
        var cases = new (string[] Args, string Expected)[]
        {
            (["run", "--q", q, "--k", Path.Combine(dir, "k4.npy"), "--v", v, "--out", o], "same head dimension"),
            (["run", "--q", q, "--k", k, "--v", q, "--out", o], "same number of keys"),
            (["run", "--q", Path.Combine(dir, "junk.npy"), "--k", k, "--v", v, "--out", o], "junk.npy"),
            (["run", "--q", Path.Combine(dir, "missing.npy"), "--k", k, "--v", v, "--out", o], "does not exist"),
            (["run", "--q", q, "--k", k, "--v", v, "--out", o, "--algorithm", "magic"], "unknown algorithm 'magic'"),
            (["run", "--q", q, "--k", k, "--v", v, "--out", o, "--precision", "bf16"], "--precision must be f16, f32 or f64"),
            (["run", "--q", q, "--k", k, "--v", v, "--out", o, "--epsilon", "-1"], "--epsilon must be a positive number"),
            (["run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "nodir", "o.npy")], "nodir"),
            (["run", "--q", q, "--k", k, "--v", v], "--out"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, err) = CliRunner.Run(args);
            Assert.True(code == 2, $"{string.Join(' ', args)} → exit {code}: {err}");
            Assert.Contains(expected, err);
            Assert.Single(err.Trim().Split('\n'));
        }
        Assert.False(File.Exists(o));
    }

    [Fact]
    public void Demo_runs_quickly_and_prints_the_table()
    {
        var (code, stdout, err) = CliRunner.Run("demo", "--quick");
        Assert.True(code == 0, err);
        Assert.Contains("exact", stdout);
        Assert.Contains("max error", stdout);
        Assert.DoesNotContain("NaN", stdout);
    }

    [Fact]
    public void Info_reports_simd_and_threads()
    {
        var (code, stdout, _) = CliRunner.Run("info");
        Assert.Equal(0, code);
        Assert.Contains("Vector512", stdout);
        Assert.Contains("processors", stdout);
    }

    [Fact]
    public void Bench_exact_prints_the_json_fields()
    {
        var (code, stdout, err) = CliRunner.Run("bench", "exact", "--n", "256", "--d", "16", "--json", "--repeats", "3");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        foreach (var key in new[] { "seconds", "secondsMin", "secondsMax", "gflops", "peakGflops", "fractionOfPeak", "expLimitGexps", "fractionOfExpLimit",
                     "bandwidthGBs", "fractionOfBandwidth", "onnxRuntimeSeconds", "speedupVsOnnxRuntime", "maxAbsErrorVsOnnxRuntime", "kernel" })
            Assert.True(doc.RootElement.TryGetProperty(key, out _), $"missing {key}");
        foreach (var key in new[] { "path", "vectorBits" })
            Assert.True(doc.RootElement.GetProperty("kernel").TryGetProperty(key, out _), $"missing kernel.{key}");
        var root = doc.RootElement;
        Assert.True(root.GetProperty("maxAbsErrorVsOnnxRuntime").GetDouble() < 1e-5);
        Assert.Equal(3, root.GetProperty("repeats").GetInt32());
        Assert.True(root.GetProperty("secondsMin").GetDouble() <= root.GetProperty("seconds").GetDouble());
        Assert.True(root.GetProperty("seconds").GetDouble() <= root.GetProperty("secondsMax").GetDouble());
        foreach (var limit in new[] { "peakGflops", "expLimitGexps", "bandwidthGBs" }) Assert.True(root.GetProperty(limit).GetDouble() > 0, limit);
    }

    [Fact]
    public void Bench_exact_times_decode_against_onnx_runtime_too()
    {
        var (code, stdout, err) = CliRunner.Run("bench", "exact", "--n", "1", "--m", "3000", "--d", "32", "--json", "--repeats", "1");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal("Decode", doc.RootElement.GetProperty("kernel").GetProperty("path").GetString());
        Assert.True(doc.RootElement.GetProperty("speedupVsOnnxRuntime").GetDouble() > 0);
        Assert.True(doc.RootElement.GetProperty("maxAbsErrorVsOnnxRuntime").GetDouble() < 1e-5);
    }

    [Fact]
    public void Bench_exact_scales_the_entries_and_still_agrees_with_onnx_runtime()
    {
        // Large logits (|s·q·k| up to 30² = 900 at d = 8): near one-hot rows, the reference moving block after block.
        var (code, stdout, err) = CliRunner.Run("bench", "exact", "--n", "300", "--d", "8", "--bound", "30", "--json", "--repeats", "1");
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(30, doc.RootElement.GetProperty("bound").GetDouble());
        Assert.True(doc.RootElement.GetProperty("maxAbsErrorVsOnnxRuntime").GetDouble() < 1e-4);
        var bad = CliRunner.Run("bench", "exact", "--n", "16", "--d", "4", "--bound", "0");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--bound", bad.Stderr);
        Assert.Single(bad.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void Bench_exact_rejects_zero_repeats_with_one_line()
    {
        var (code, _, err) = CliRunner.Run("bench", "exact", "--n", "16", "--d", "4", "--repeats", "0");
        Assert.Equal(2, code);
        Assert.Contains("--repeats", err);
        Assert.Single(err.Trim().Split('\n'));
    }
}
