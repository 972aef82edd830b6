using FastAttention.Exact;
using FastAttention.Gradient;
using FastAttention.IO;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Cli;

/// <summary><c>run</c> and <c>backward</c> with masks, grouped-query shapes and float16, and every mismatch rejected
/// before computing (exit 2, one line naming the option and both shapes, nothing written).</summary>
public class MaskOptionsTests
{
    private const int B = 2, Hq = 4, Hkv = 2, N = 19, M = 23, D = 4, Dv = 3;

    private sealed record Files(string Dir, string Q, string K, string V, double[] Qd, double[] Kd, double[] Vd);

    private static Files Inputs(bool half = false)
    {
        string dir = CliRunner.TempDir();
        var q = TestData.Uniform(B * Hq * N * D, 1, 1); var k = TestData.Uniform(B * Hkv * M * D, 1, 2); var v = TestData.Uniform(B * Hkv * M * Dv, 1, 3);
        if (half) { q = Round(q); k = Round(k); v = Round(v); }
        void Save(string name, double[] x, int[] shape)
        {
            if (half) NpyFile.Write(Path.Combine(dir, name), MaskedData.Convert<Half>(x), shape);
            else NpyFile.Write(Path.Combine(dir, name), x, shape);
        }
        Save("q.npy", q, [B, Hq, N, D]); Save("k.npy", k, [B, Hkv, M, D]); Save("v.npy", v, [B, Hkv, M, Dv]);
        return new Files(dir, Path.Combine(dir, "q.npy"), Path.Combine(dir, "k.npy"), Path.Combine(dir, "v.npy"), q, k, v);

        static double[] Round(double[] x) => Array.ConvertAll(x, t => (double)(Half)t);
    }

    private static (AttentionMask Mask, string[] Args) Masks(string dir)
    {
        long[] lens = [M, 11];
        var vis = MaskedData.BooleanMask([N, M], 0.8, 4);
        var bias = TestData.ToFloat(TestData.Uniform(Hq * M, 2, 5));
        NpyRaw.Int64(Path.Combine(dir, "len.npy"), lens, B);
        NpyRaw.Bool(Path.Combine(dir, "mask.npy"), vis.Data.ToArray(), N, M);
        NpyFile.Write(Path.Combine(dir, "bias.npy"), bias, [1, Hq, 1, M]);
        var mask = new AttentionMask
        {
            KeyLengths = new[] { M, 11 }, BooleanMask = vis, Bias = new BroadcastTensor<double>(TestData.ToDouble(bias), 1, Hq, 1, M),
            Window = 6, CausalAlignment = CausalAlignment.BottomRight,
        };
        return (mask, ["--key-lengths", Path.Combine(dir, "len.npy"), "--mask", Path.Combine(dir, "mask.npy"), "--bias", Path.Combine(dir, "bias.npy"),
            "--window", "6", "--causal", "--causal-align", "bottom-right"]);
    }

    private static AttentionProblem<double> Problem(Files f, AttentionMask mask) =>
        new(f.Qd, f.Kd, f.Vd, N, M, D, Dv, B * Hq, null, true, mask, B * Hkv, B);

    [Fact]
    public void Run_applies_every_mask_to_grouped_query_inputs()
    {
        var f = Inputs();
        var (mask, args) = Masks(f.Dir);
        string o = Path.Combine(f.Dir, "o.npy"), r = Path.Combine(f.Dir, "r.json");
        var (code, _, err) = CliRunner.Run(["run", "--q", f.Q, "--k", f.K, "--v", f.V, "--out", o, "--report", r, .. args]);
        Assert.True(code == 0, err);
        var output = NpyFile.Read(o);
        Assert.Equal(new[] { B, Hq, N, Dv }, output.Shape);
        Assert.True(TestData.MaxAbsDiff(output.ToFloat64(), ReferenceAttention.Compute(Problem(f, mask))) <= 1e-12);
        using (var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(r)))
        {
            var semantics = report.RootElement.GetProperty("semantics");
            Assert.Equal(B * Hkv, semantics.GetProperty("kvHeads").GetInt32());
            Assert.Equal("bottom-right", semantics.GetProperty("causalAlign").GetString());
            Assert.Equal(new[] { M, 11 }, semantics.GetProperty("keyLengths").EnumerateArray().Select(x => x.GetInt32()));
            Assert.True(report.RootElement.GetProperty("errorBound").GetDouble() > 0); // the exact certificate's rounding bound
        }
        // int32 key lengths are accepted as well.
        NpyRaw.Int32(Path.Combine(f.Dir, "len32.npy"), [M, 11], B);
        string o2 = Path.Combine(f.Dir, "o2.npy");
        var (code2, _, err2) = CliRunner.Run(["run", "--q", f.Q, "--k", f.K, "--v", f.V, "--out", o2, "--key-lengths", Path.Combine(f.Dir, "len32.npy"), .. args[2..]]);
        Assert.True(code2 == 0, err2);
        Assert.Equal(output.ToFloat64(), NpyFile.Read(o2).ToFloat64());
        // Padding rows of K and V (past batch element 1's key length 11) may hold NaN: never read, same output.
        var kNan = f.Kd.ToArray(); var vNan = f.Vd.ToArray();
        for (int g = Hkv; g < 2 * Hkv; g++)
            for (int j = 11; j < M; j++) { kNan[(g * M + j) * D] = double.NaN; vNan[(g * M + j) * Dv] = double.PositiveInfinity; }
        NpyFile.Write(Path.Combine(f.Dir, "knan.npy"), kNan, [B, Hkv, M, D]);
        NpyFile.Write(Path.Combine(f.Dir, "vnan.npy"), vNan, [B, Hkv, M, Dv]);
        string o3 = Path.Combine(f.Dir, "o3.npy");
        var (code3, _, err3) = CliRunner.Run(["run", "--q", f.Q, "--k", Path.Combine(f.Dir, "knan.npy"), "--v", Path.Combine(f.Dir, "vnan.npy"), "--out", o3, .. args]);
        Assert.True(code3 == 0, err3);
        Assert.Equal(output.ToFloat64(), NpyFile.Read(o3).ToFloat64());
        // A NaN in a key that exists is refused, naming the option and the index.
        kNan[(Hkv * M + 3) * D + 1] = double.NaN;
        NpyFile.Write(Path.Combine(f.Dir, "knan2.npy"), kNan, [B, Hkv, M, D]);
        var (code4, _, err4) = CliRunner.Run(["run", "--q", f.Q, "--k", Path.Combine(f.Dir, "knan2.npy"), "--v", Path.Combine(f.Dir, "vnan.npy"), "--out", o3, .. args]);
        Assert.Equal(2, code4);
        Assert.Contains("--k", err4);
        Assert.Contains("[1, 0, 3, 1]", err4);
    }

    [Fact]
    public void Float16_inputs_give_float16_or_float32_outputs()
    {
        var f = Inputs(half: true);
        var (mask, args) = Masks(f.Dir);
        var reference = ReferenceAttention.Compute(Problem(f, mask));
        string o = Path.Combine(f.Dir, "o.npy"), o32 = Path.Combine(f.Dir, "o32.npy");
        var (code, _, err) = CliRunner.Run(["run", "--q", f.Q, "--k", f.K, "--v", f.V, "--out", o, .. args]);
        Assert.True(code == 0, err);
        var h = NpyFile.Read(o);
        Assert.Equal(NpyDType.Float16, h.DType);
        Assert.True(TestData.MaxAbsDiff(h.ToFloat64(), reference) <= Math.ScaleB(1.0, -11) * 1.01);
        (code, _, err) = CliRunner.Run(["run", "--q", f.Q, "--k", f.K, "--v", f.V, "--out", o32, "--out-dtype", "f32", .. args]);
        Assert.True(code == 0, err);
        var w = NpyFile.Read(o32);
        Assert.Equal(NpyDType.Float32, w.DType);
        Assert.True(TestData.MaxAbsDiff(w.ToFloat64(), reference) <= 1e-5);
    }

    [Fact]
    public void Backward_takes_the_same_options()
    {
        var f = Inputs();
        var (mask, args) = Masks(f.Dir);
        var dO = TestData.Uniform(B * Hq * N * Dv, 1, 9);
        NpyFile.Write(Path.Combine(f.Dir, "do.npy"), dO, [B, Hq, N, Dv]);
        string outDir = Path.Combine(f.Dir, "grads");
        var (code, _, err) = CliRunner.Run(["backward", "--q", f.Q, "--k", f.K, "--v", f.V, "--do", Path.Combine(f.Dir, "do.npy"), "--out-dir", outDir, .. args]);
        Assert.True(code == 0, err);
        var (rq, rk, rv) = BackwardReference.Compute(Problem(f, mask), dO);
        var dk = NpyFile.Read(Path.Combine(outDir, "dK.npy"));
        Assert.Equal(new[] { B, Hkv, M, D }, dk.Shape);
        Assert.True(TestData.MaxAbsDiff(NpyFile.Read(Path.Combine(outDir, "dQ.npy")).ToFloat64(), rq) <= 1e-11);
        Assert.True(TestData.MaxAbsDiff(dk.ToFloat64(), rk) <= 1e-11);
        Assert.True(TestData.MaxAbsDiff(NpyFile.Read(Path.Combine(outDir, "dV.npy")).ToFloat64(), rv) <= 1e-11);
    }

    [Fact]
    public void Every_mismatch_exits_2_naming_the_option_and_both_shapes_before_computing()
    {
        var f = Inputs();
        string d = f.Dir, o = Path.Combine(d, "o.npy");
        NpyRaw.Int64(Path.Combine(d, "len3.npy"), [1, 2, 3], 3);
        NpyFile.Write(Path.Combine(d, "lenf.npy"), new float[] { 1, 2 }, [2]);
        NpyRaw.Int32(Path.Combine(d, "lenbig.npy"), [5, 99], 2);
        NpyFile.Write(Path.Combine(d, "maskf.npy"), new double[N * M], [N, M]);
        NpyRaw.Bool(Path.Combine(d, "mask7.npy"), new bool[N * 7], N, 7);
        NpyRaw.Bool(Path.Combine(d, "biasb.npy"), new bool[M], M);
        NpyFile.Write(Path.Combine(d, "bias3.npy"), new double[3 * M], [3, 1, M]);
        var nanBias = new double[M]; nanBias[0] = double.NaN;
        NpyFile.Write(Path.Combine(d, "biasnan.npy"), nanBias, [M]);
        NpyFile.Write(Path.Combine(d, "k3.npy"), TestData.Uniform(B * 3 * M * D, 1, 1), [B, 3, M, D]);
        NpyFile.Write(Path.Combine(d, "v3.npy"), TestData.Uniform(B * 3 * M * Dv, 1, 1), [B, 3, M, Dv]);
        string[] run = ["run", "--q", f.Q, "--k", f.K, "--v", f.V, "--out", o];
        var cases = new (string[] Args, string[] Expected)[]
        {
            ([.. run, "--key-lengths", Path.Combine(d, "len3.npy")], ["--key-lengths", "(3)", "(2)"]),
            ([.. run, "--key-lengths", Path.Combine(d, "lenf.npy")], ["--key-lengths", "int32"]),
            ([.. run, "--key-lengths", Path.Combine(d, "lenbig.npy")], ["--key-lengths", "99", "m = 23"]),
            ([.. run, "--mask", Path.Combine(d, "maskf.npy")], ["--mask", "boolean"]),
            ([.. run, "--mask", Path.Combine(d, "mask7.npy")], ["--mask", "(19, 7)", "(2, 4, 19, 23)"]),
            ([.. run, "--bias", Path.Combine(d, "biasb.npy")], ["--bias", "float32"]),
            ([.. run, "--bias", Path.Combine(d, "bias3.npy")], ["--bias", "(3, 1, 23)", "(2, 4, 19, 23)"]),
            ([.. run, "--bias", Path.Combine(d, "biasnan.npy")], ["--bias", "NaN"]),
            ([.. run, "--window", "0"], ["--window"]),
            ([.. run, "--causal", "--causal-align", "sideways"], ["--causal-align", "sideways"]),
            ([.. run, "--causal-align", "bottom-right"], ["--causal-align", "--causal"]),
            (["run", "--q", f.Q, "--k", Path.Combine(d, "k3.npy"), "--v", Path.Combine(d, "v3.npy"), "--out", o], ["--k", "(2, 4, 19, 4)", "(2, 3, 23, 4)"]),
            (["backward", "--q", f.Q, "--k", f.K, "--v", f.V, "--do", f.Q, "--out-dir", Path.Combine(d, "g"), "--mask", Path.Combine(d, "mask7.npy")], ["--mask", "(19, 7)"]),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, stdout, stderr) = CliRunner.Run(args);
            string all = string.Join(" ", args);
            Assert.True(code == 2, $"{all} → exit {code}: {stderr}");
            var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(lines.Length == 1, $"{all}: expected one line, got: {stderr}");
            foreach (var x in expected) Assert.True(lines[0].Contains(x, StringComparison.Ordinal), $"{all}: '{lines[0]}' lacks '{x}'");
            Assert.DoesNotContain("   at ", stderr);
            Assert.False(File.Exists(o), $"{all}: an output was written");
            Assert.False(Directory.Exists(Path.Combine(d, "g")), $"{all}: an output folder was created");
        }
    }
}
