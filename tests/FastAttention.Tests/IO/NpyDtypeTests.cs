using FastAttention.IO;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.IO;

/// <summary>The dtypes masks and float16 inputs bring: &lt;f2 read and written, |b1 and integers read.</summary>
public class NpyDtypeTests
{
    [Fact]
    public void Float16_round_trips_exactly_and_widens_to_float32_exactly()
    {
        string path = Path.Combine(CliRunnerDir(), "h.npy");
        Half[] data = [(Half)1.5, Half.MaxValue, Half.Epsilon, (Half)(-0.333), Half.NegativeInfinity, Half.NaN];
        NpyFile.Write(path, data, [2, 3]);
        var a = NpyFile.Read(path);
        Assert.Equal(NpyDType.Float16, a.DType);
        Assert.True(a.IsFloat16);
        Assert.False(a.IsFloat32);
        Assert.Equal(new[] { 2, 3 }, a.Shape);
        Assert.Equal(data, a.ToHalf());
        var f = a.ToFloat32();
        for (int i = 0; i < data.Length; i++) Assert.Equal((float)data[i], f[i]);
        Assert.Contains("'descr': '<f2'", System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(path), 0, 64));
    }

    [Fact]
    public void Booleans_and_integers_are_read_with_their_dtype()
    {
        string dir = CliRunnerDir();
        NpyRaw.Bool(Path.Combine(dir, "b.npy"), [true, false, true, true], 2, 2);
        NpyRaw.Int32(Path.Combine(dir, "i.npy"), [3, -1, int.MaxValue], 3);
        NpyRaw.Int64(Path.Combine(dir, "l.npy"), [1L << 40, 7], 2);
        var b = NpyFile.Read(Path.Combine(dir, "b.npy"));
        Assert.Equal(NpyDType.Bool, b.DType);
        Assert.Equal(new double[] { 1, 0, 1, 1 }, b.ToFloat64());
        var i = NpyFile.Read(Path.Combine(dir, "i.npy"));
        Assert.Equal(NpyDType.Int32, i.DType);
        Assert.Equal(new double[] { 3, -1, int.MaxValue }, i.ToFloat64());
        var l = NpyFile.Read(Path.Combine(dir, "l.npy"));
        Assert.Equal(NpyDType.Int64, l.DType);
        Assert.Equal(new double[] { 1L << 40, 7 }, l.ToFloat64());
    }

    [Fact]
    public void Big_endian_float16_is_refused_with_the_fix()
    {
        string path = Path.Combine(CliRunnerDir(), "be.npy");
        NpyRaw.Write(path, ">f2", [1], [0, 1]);
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read(path));
        Assert.Contains("big-endian", e.Message);
    }

    private static string CliRunnerDir() => FastAttention.Tests.Cli.CliRunner.TempDir();
}
