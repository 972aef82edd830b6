using System.Text.Json;
using FastAttention.Cli;
using FastAttention.Cli.Infrastructure;
using FastAttention.Exact;
using FastAttention.IO;
using FastAttention.Tests.TestSupport;
using static FastAttention.Tests.Cli.CliHarness;

namespace FastAttention.Tests.Cli;

/// <summary>
/// Issue 13, one test per item, through the tool's entry point: no wrong answer with exit 0, no stack trace, no lost
/// or half-written file, messages that name the option.
/// </summary>
public class RobustnessCliTests
{
    private static (string Dir, string Q, string K, string V, AttentionProblem<double> P) Inputs(int n = 20, int m = 12, int d = 3, int dv = 2, int seed = 5)
    {
        string dir = CliRunner.TempDir();
        var p = TestData.Problem(n, m, d, dv, 1, seed);
        return (dir, Save(dir, "q.npy", p.Q.ToArray(), n, d), Save(dir, "k.npy", p.K.ToArray(), m, d), Save(dir, "v.npy", p.V.ToArray(), m, dv), p);
    }

    // ---- Certificate holes ------------------------------------------------------------------------------------

    /// <summary>The input: d = 1, q ≈ 1000, keys in [999.999, 1000.001], V uniform in ±1000, ε = 1e-2, as
    /// float64 files asked for float32 output. Rounding the inputs to float32 moves the answer by far more than ε
    /// (checked first, so the test can fail); the tool must stay within ε of the float64 reference.</summary>
    [Theory]
    [InlineData("vector")]
    [InlineData("rounding")]
    [InlineData("range")]
    public void Float32_output_of_float64_inputs_is_certified_against_the_float64_reference(string algorithm)
    {
        int n = 64, m = 256;
        var rng = new Random(13);
        var q = Enumerable.Range(0, n).Select(_ => 1000 + (rng.NextDouble() - 0.5) * 1e-3).ToArray();
        var k = Enumerable.Range(0, m).Select(_ => 999.999 + 0.002 * rng.NextDouble()).ToArray();
        var v = Enumerable.Range(0, m).Select(_ => (2 * rng.NextDouble() - 1) * 1000).ToArray();
        var p = new AttentionProblem<double>(q, k, v, n, m, 1, 1);
        var reference = ReferenceAttention.Compute(p);
        var rounded = new AttentionProblem<double>(TestData.ToDouble(TestData.ToFloat(q)), TestData.ToDouble(TestData.ToFloat(k)), TestData.ToDouble(TestData.ToFloat(v)), n, m, 1, 1);
        Assert.True(TestData.MaxAbsDiff(ReferenceAttention.Compute(rounded), reference) > 0.05, "rounding the inputs should move this answer by more than ε");

        string dir = CliRunner.TempDir();
        string o = Path.Combine(dir, "o.npy"), rep = Path.Combine(dir, "r.json");
        var r = Run("run", "--q", Save(dir, "q.npy", q, n, 1), "--k", Save(dir, "k.npy", k, m, 1), "--v", Save(dir, "v.npy", v, m, 1),
            "--out", o, "--report", rep, "--algorithm", algorithm, "--epsilon", "1e-2", "--precision", "f32", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        var output = NpyFile.Read(o);
        Assert.True(output.IsFloat32);
        double err = TestData.MaxAbsDiff(output.Float32, reference);
        using var report = JsonDocument.Parse(File.ReadAllText(rep));
        double bound = report.RootElement.GetProperty("errorBound").GetDouble();
        Assert.Equal("f32", report.RootElement.GetProperty("precision").GetString());
        Assert.True(err <= bound && bound <= 1e-2, $"{algorithm}: error {err:E3}, bound {bound:E3}");
        Assert.Contains("float32 output rounding", report.RootElement.GetProperty("budget").ToString());
    }

    [Fact]
    public void Float32_output_rounding_above_epsilon_is_refused_before_computing()
    {
        string dir = CliRunner.TempDir();
        var v = Enumerable.Repeat(1e6, 8).ToArray();
        string o = Path.Combine(dir, "o.npy");
        var r = Run("run", "--q", Save(dir, "q.npy", new double[8], 8, 1), "--k", Save(dir, "k.npy", new double[8], 8, 1), "--v", Save(dir, "v.npy", v, 8, 1),
            "--out", o, "--algorithm", "vector", "--epsilon", "1e-3", "--precision", "f32");
        AssertUsage(r, "float32 output rounding", "--precision f64");
        Assert.False(File.Exists(o));
    }

    // ---- Crashes ----------------------------------------------------------------------------------------------

    [Fact]
    public void Lowrank_with_entries_of_1e154_and_a_tiny_scale_is_computed_or_refused_never_crashes()
    {
        int n = 48, d = 3;
        var rng = new Random(2);
        double[] M(int count, double b) => Enumerable.Range(0, count).Select(_ => (2 * rng.NextDouble() - 1) * b).ToArray();
        var q = M(n * d, 1e154); var k = M(n * d, 1e154); var v = M(n * 2, 1);
        string dir = CliRunner.TempDir(), o = Path.Combine(dir, "o.npy");
        var r = Run("run", "--q", Save(dir, "q.npy", q, n, d), "--k", Save(dir, "k.npy", k, n, d), "--v", Save(dir, "v.npy", v, n, 2),
            "--out", o, "--algorithm", "lowrank", "--epsilon", "1e-3", "--scale", "1e-300", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        // The reference on the same logits without overflowing q·k: q, k scaled by 2⁻⁵¹², s by 2¹⁰²⁴ (exact).
        double[] Down(double[] a) => Array.ConvertAll(a, x => Math.ScaleB(x, -512));
        var reference = ReferenceAttention.Compute(new AttentionProblem<double>(Down(q), Down(k), v, n, n, d, 2, 1, Math.ScaleB(1e-300, 1024)));
        Assert.All(reference, x => Assert.True(double.IsFinite(x)));
        Assert.True(TestData.MaxAbsDiff(NpyFile.Read(o).ToFloat64(), reference) <= 1e-3);
    }

    [Fact]
    public void A_two_gigabyte_header_is_checked_without_reading_or_allocating()
    {
        var (dir, _, k, v, _) = Inputs();
        string big = Path.Combine(dir, "big.npy");
        // [1, 32, 131072, 128] float32 (2 GiB) declared, three values present.
        using (var fs = File.Create(big))
        {
            var header = NpyFile.Header("<f4", [1, 32, 131072, 128]);
            fs.Write(header);
            fs.Write(new byte[12]);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var r = Run("run", "--q", big, "--k", k, "--v", v, "--out", Path.Combine(dir, "o.npy"));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20);
        AssertUsage(r, "--q", "truncated data", "2147483648 bytes");
    }

    [Fact]
    public void Float64_values_beyond_float32_with_precision_f32_are_refused_naming_the_input()
    {
        var (dir, q, k, _, _) = Inputs();
        var v = TestData.Uniform(24, 1, 4); v[5] = 1e300;
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", Save(dir, "big.npy", v, 12, 2), "--out", Path.Combine(dir, "o.npy"), "--precision", "f32"),
            "--v", "does not fit float32", "[2, 1]");
    }

    /// <summary>A 2.1 GiB float32 input through the whole tool (read in chunks, computed, output written): Q is
    /// [4300000, 128] with 16 keys, so the attention itself is cheap. Minutes of disk and ~5 GiB of memory: Slow.</summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void A_query_file_over_two_gigabytes_runs_through_the_tool()
    {
        int n = 4_300_000, m = 16, d = 128;
        string dir = CliRunner.TempDir();
        try
        {
            var rng = new Random(7);
            var q = new float[(long)n * d];
            for (long i = 0; i < q.Length; i++) q[i] = (float)(rng.NextDouble() - 0.5);
            Assert.True((long)q.Length * 4 > int.MaxValue);
            string qPath = Save(dir, "q.npy", q, n, d);
            var k = TestData.ToFloat(TestData.Uniform(m * d, 0.5, 8)); var v = TestData.ToFloat(TestData.Uniform(m, 1, 9));
            string o = Path.Combine(dir, "o.npy");
            var r = Run("run", "--q", qPath, "--k", Save(dir, "k.npy", k, m, d), "--v", Save(dir, "v.npy", v, m, 1), "--out", o);
            Assert.True(r.Code == 0, r.Err);
            var output = NpyFile.Read(o).Float32;
            int[] rows = [0, 1, n / 2, n - 1];
            var p = new AttentionProblem<float>(q, k, v, n, m, d, 1);
            var reference = ReferenceAttention.ComputeRows(p, 0, rows);
            for (int i = 0; i < rows.Length; i++) Assert.True(Math.Abs(output[rows[i]] - reference[i]) <= 1e-5);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Out_naming_a_folder_and_out_dir_naming_a_file_exit_2_naming_the_option()
    {
        var (dir, q, k, v, _) = Inputs();
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "sub")), "--out", "is a folder");
        string dO = Save(dir, "do.npy", new double[20 * 2], 20, 2);
        AssertUsage(Run("backward", "--q", q, "--k", k, "--v", v, "--do", dO, "--out-dir", q), "--out-dir", "is a file");
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(dir, "sub")));
    }

    [Fact]
    public void Library_bugs_are_internal_errors_on_one_line_and_only_user_input_is_exit_2()
    {
        var e = new StringWriter();
        var context = new CliContext(TextWriter.Null, e, CancellationToken.None, false);
        // An ArgumentException from the library is a bug, not the user's fault.
        Assert.Equal(1, Program.Handle(new ArgumentException("threads must be positive", "threads"), context, debug: false));
        Assert.Equal(1, Program.Handle(new InvalidOperationException("certificate above ε; this is a bug"), context, debug: false));
        var lines = e.ToString().Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.All(lines, l => Assert.StartsWith("fastattn: internal error: ", l));
        Assert.Contains("FASTATTN_DEBUG=1", lines[0]);
        Assert.DoesNotContain("   at ", e.ToString());
        var debug = new StringWriter();
        try { throw new InvalidOperationException("boom"); }
        catch (Exception ex) { Assert.Equal(1, Program.Handle(ex, new CliContext(TextWriter.Null, debug, default, false), debug: true)); }
        Assert.Contains("   at ", debug.ToString());
        // The user's errors: the CLI's own type, .npy format problems, refusals (also wrapped by parallel heads).
        Assert.Equal(2, Program.Handle(new UsageException("--x: bad"), context, false));
        Assert.Equal(2, Program.Handle(new NpyFormatException("q.npy", "bad"), context, false));
        var refusal = new AttentionRefusedException("vector", RefusalReason.EntryRange, "too large");
        Assert.Equal(2, Program.Handle(new AggregateException(refusal, refusal), context, false));
        Assert.Equal(1, Program.Handle(new AggregateException(refusal, new NullReferenceException()), context, false));
    }

    // ---- Lost or wrong files ----------------------------------------------------------------------------------

    [Fact]
    public void Outputs_that_would_overwrite_an_input_or_each_other_are_refused_before_computing()
    {
        var (dir, q, k, v, _) = Inputs();
        byte[] qBytes = File.ReadAllBytes(q);
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", v, "--out", q), "--out", "also the --q input");
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, ".", "v.npy")), "--out", "--v");
        string o = Path.Combine(dir, "o.npy");
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", v, "--out", o, "--report", o), "--report", "also the --out output");
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", v, "--out", o, "--report", Path.Combine(dir, "nodir", "r.json")), "--report", "does not exist");
        Assert.Equal(qBytes, File.ReadAllBytes(q));
        Assert.Equal(["k.npy", "q.npy", "v.npy"], Entries(dir));
    }

    [Fact]
    public void A_refused_run_leaves_an_existing_output_untouched_and_no_temporary_file()
    {
        var (dir, q, k, v, _) = Inputs();
        string o = Path.Combine(dir, "o.npy");
        File.WriteAllText(o, "previous result");
        // Causal masks are refused by the range family: after the outputs were declared and the inputs read.
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", v, "--out", o, "--report", Path.Combine(dir, "r.json"), "--algorithm", "vector", "--epsilon", "1e-3", "--causal"), "vector");
        Assert.Equal("previous result", File.ReadAllText(o));
        Assert.Equal(["k.npy", "o.npy", "q.npy", "v.npy"], Entries(dir));
    }

    [Fact]
    public void Backward_writes_all_three_gradients_or_none_and_removes_a_folder_it_created()
    {
        var (dir, q, k, v, _) = Inputs();
        string outDir = Path.Combine(dir, "grads", "deep");
        string badDo = Save(dir, "do.npy", new double[5], 5, 1); // wrong shape: found after the folder was created
        AssertUsage(Run("backward", "--q", q, "--k", k, "--v", v, "--do", badDo, "--out-dir", outDir), "--do", "shape");
        Assert.False(Directory.Exists(Path.Combine(dir, "grads")));
        string dO = Save(dir, "do2.npy", TestData.Uniform(40, 1, 3), 20, 2);
        var r = Run("backward", "--q", q, "--k", k, "--v", v, "--do", dO, "--out-dir", outDir);
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(["dK.npy", "dQ.npy", "dV.npy"], Entries(outDir));
    }

    // ---- Messages ---------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("--epsilon", "abc", "--epsilon: 'abc' is not a number")]
    [InlineData("--threads", "lots", "--threads: 'lots' is not an integer")]
    [InlineData("--scale", "NaN", "--scale must be a finite number")]
    [InlineData("--scale", "1e400", "--scale")]
    [InlineData("--algorithm", "magic", "--algorithm: unknown algorithm 'magic'")]
    [InlineData("--precision", "bf16", "--precision must be f16, f32 or f64")]
    [InlineData("--threads", "-3", "--threads must be 0")]
    public void Bad_option_values_name_the_option_as_typed_without_type_names(string option, string value, string expected)
    {
        var (dir, q, k, v, _) = Inputs();
        var r = Run("run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "o.npy"), option, value);
        AssertUsage(r, expected);
        Assert.DoesNotContain("Nullable", r.Err);
        Assert.False(File.Exists(Path.Combine(dir, "o.npy")));
    }

    [Fact]
    public void Input_problems_name_the_input_option()
    {
        var (dir, q, k, v, _) = Inputs();
        string o = Path.Combine(dir, "o.npy");
        AssertUsage(Run("run", "--q", Path.Combine(dir, "none.npy"), "--k", k, "--v", v, "--out", o), "--q", "does not exist");
        AssertUsage(Run("run", "--q", q, "--k", dir, "--v", v, "--out", o), "--k", "is a folder");
        var bad = TestData.Uniform(24, 1, 1); bad[7] = double.NaN;
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", Save(dir, "nan.npy", bad, 12, 2), "--out", o), "--v", "non-finite", "[3, 1]");
        File.WriteAllText(Path.Combine(dir, "junk.npy"), "junk");
        AssertUsage(Run("run", "--q", q, "--k", Path.Combine(dir, "junk.npy"), "--v", v, "--out", o), "--k", "junk.npy");
        AssertUsage(Run("run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "missing", "o.npy")), "--out", "does not exist");
        Assert.DoesNotContain(".tmp", Run("run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "missing", "o.npy")).Err);
    }

    [Fact]
    public void Threads_above_the_processor_count_are_clamped_and_said_once()
    {
        var (dir, q, k, v, _) = Inputs();
        string rep = Path.Combine(dir, "r.json");
        var r = Run("run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "o.npy"), "--report", rep, "--threads", "1000");
        Assert.True(r.Code == 0, r.Err);
        Assert.Single(r.ErrLines);
        Assert.Contains($"--threads 1000 is more than the {Environment.ProcessorCount} processor", r.Err);
        using var doc = JsonDocument.Parse(File.ReadAllText(rep));
        Assert.Equal(Environment.ProcessorCount, doc.RootElement.GetProperty("threads").GetInt32());
    }

    [Fact]
    public void Epsilon_with_an_exact_algorithm_and_mixed_precisions_each_get_one_line_saying_what_was_done()
    {
        var (dir, q, k, v, p) = Inputs();
        string o = Path.Combine(dir, "o.npy");
        var r = Run("run", "--q", q, "--k", k, "--v", v, "--out", o, "--algorithm", "exact", "--epsilon", "1e-3");
        Assert.True(r.Code == 0, r.Err);
        Assert.Single(r.ErrLines);
        Assert.Contains("--epsilon is ignored", r.Err);
        string k32 = Save(dir, "k32.npy", TestData.ToFloat(p.K.ToArray()), 12, 3);
        r = Run("run", "--q", q, "--k", k32, "--v", v, "--out", o);
        Assert.True(r.Code == 0, r.Err);
        Assert.Single(r.ErrLines);
        Assert.Contains("mix float32 and float64: computing in float64", r.Err);
        Assert.False(NpyFile.Read(o).IsFloat32);
    }

    // ---- Long work --------------------------------------------------------------------------------------------

    [Fact]
    public void Ctrl_c_stops_with_130_and_leaves_no_output_and_no_temporary_file()
    {
        var (dir, q, k, v, _) = Inputs();
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        var r = Run(cancel.Token, "run", "--q", q, "--k", k, "--v", v, "--out", Path.Combine(dir, "o.npy"), "--report", Path.Combine(dir, "r.json"));
        Assert.Equal(130, r.Code);
        Assert.Contains("stopped by Ctrl-C", r.Err);
        Assert.Single(r.ErrLines);
        Assert.Equal(["k.npy", "q.npy", "v.npy"], Entries(dir));
    }

    [Fact]
    public void An_interactive_stderr_shows_the_progress_bar_and_the_output_is_unchanged()
    {
        var (dir, q, k, v, p) = Inputs(n: 300, m: 300, d: 8, dv: 4);
        string o = Path.Combine(dir, "o.npy");
        var r = RunInteractive("run", "--q", q, "--k", k, "--v", v, "--out", o, "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("exact attention", r.Err);
        Assert.True(TestData.MaxAbsDiff(NpyFile.Read(o).ToFloat64(), ReferenceAttention.Compute(p)) <= 1e-12);
        // Not a terminal: no bar.
        var plain = Run("run", "--q", q, "--k", k, "--v", v, "--out", o, "--threads", "1");
        Assert.Equal("", plain.Err);
    }

    [Fact]
    public void Long_commands_say_what_they_are_doing_on_stderr_only()
    {
        var r = Run("bench", "exact", "--n", "64", "--d", "8", "--threads", "1", "--json");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("fastattn: bench exact: timing", r.Err);
        using var _ = JsonDocument.Parse(r.Out); // stdout stays one JSON object
    }
}
