using System.Buffers.Binary;
using System.Text;
using FastAttention.IO;

namespace FastAttention.Tests.IO;

/// <summary>Tests against the NEP-1 .npy format specification.</summary>
public class NpyFileTests
{
    /// <summary>Builds a file by hand, exactly as the specification lays it out.</summary>
    private static byte[] Build(int major, string header, byte[] data, bool pad = true)
    {
        int lenBytes = major == 1 ? 2 : 4;
        string h = header;
        if (pad)
        {
            int total = 6 + 2 + lenBytes + h.Length + 1;
            h += new string(' ', (64 - total % 64) % 64);
        }
        h += "\n";
        var hb = (major == 3 ? Encoding.UTF8 : Encoding.ASCII).GetBytes(h);
        var ms = new MemoryStream();
        ms.Write([0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, 0]);
        var len = new byte[lenBytes];
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)hb.Length); else BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)hb.Length);
        ms.Write(len);
        ms.Write(hb);
        ms.Write(data);
        return ms.ToArray();
    }

    private static byte[] Doubles(params double[] x) { var b = new byte[x.Length * 8]; for (int i = 0; i < x.Length; i++) BinaryPrimitives.WriteDoubleLittleEndian(b.AsSpan(i * 8), x[i]); return b; }
    private static byte[] Floats(params float[] x) { var b = new byte[x.Length * 4]; for (int i = 0; i < x.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * 4), x[i]); return b; }
    private static NpyArray Read(byte[] file) => NpyFile.Read(new MemoryStream(file), "test.npy");

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Reads_every_format_version(int major)
    {
        var a = Read(Build(major, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", Doubles(1, 2, 3, 4, 5, 6)));
        Assert.Equal(new[] { 2, 3 }, a.Shape);
        Assert.Equal(new[] { 1.0, 2, 3, 4, 5, 6 }, a.ToFloat64());
    }

    [Fact]
    public void Reads_float32_4d_and_tolerates_spacing_and_key_order()
    {
        var a = Read(Build(1, "{ 'shape': (1, 1, 2, 1) , 'fortran_order' : False, 'descr':'<f4' }", Floats(1.5f, -2f)));
        Assert.True(a.IsFloat32);
        Assert.Equal(new[] { 1.5f, -2f }, a.Float32);
        Assert.Equal(4, a.Shape.Count);
    }

    [Fact]
    public void Writes_headers_padded_to_64_bytes_that_read_back()
    {
        foreach (var shape in new[] { new[] { 3 }, new[] { 2, 5 }, new[] { 2, 3, 4 }, new[] { 1, 2, 3, 4 } })
        {
            int count = shape.Aggregate(1, (x, y) => x * y);
            var data = Enumerable.Range(0, count).Select(i => i * 0.5 - 3).ToArray();
            var ms = new MemoryStream();
            NpyFile.Write(ms, data, shape);
            var bytes = ms.ToArray();
            int headerLen = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8));
            Assert.Equal(0, (10 + headerLen) % 64);
            Assert.Equal((byte)'\n', bytes[10 + headerLen - 1]);
            string header = Encoding.ASCII.GetString(bytes, 10, headerLen);
            Assert.StartsWith("{'descr': '<f8', 'fortran_order': False, 'shape': (", header);
            if (shape.Length == 1) Assert.Contains("(3,)", header); // a 1-tuple keeps its comma
            var back = NpyFile.Read(new MemoryStream(bytes), "x");
            Assert.Equal(shape, back.Shape);
            Assert.Equal(data, back.ToFloat64());
        }
    }

    [Fact]
    public void Float32_round_trip_through_a_file_is_atomic_and_exact()
    {
        string dir = Path.Combine(Path.GetTempPath(), "npy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "a.npy");
        var data = new[] { 1f, float.Epsilon, -0f, 3.4e38f };
        NpyFile.Write(path, data, [2, 2]);
        Assert.Single(Directory.GetFiles(dir)); // no temporary file left behind
        Assert.Equal(data, NpyFile.Read(path).Float32);
    }

    [Fact]
    public void Reads_integer_and_boolean_arrays_widened_to_double()
    {
        var i8 = new byte[16]; BinaryPrimitives.WriteInt64LittleEndian(i8, -5); BinaryPrimitives.WriteInt64LittleEndian(i8.AsSpan(8), 7);
        Assert.Equal(new[] { -5.0, 7 }, Read(Build(1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", i8)).ToFloat64());
        Assert.Equal(new[] { 1.0, 0, 1 }, Read(Build(1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", [1, 0, 1])).ToFloat64());
    }

    [Theory]
    [InlineData("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", "Fortran")]
    [InlineData("{'descr': '<c16', 'fortran_order': False, 'shape': (2, 3), }", "dtype '<c16' is not supported")]
    [InlineData("{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3), }", "big-endian")]
    [InlineData("{'descr': '<f8', 'fortran_order': False, }", "'shape' is missing")]
    [InlineData("{'descr': '<f8', 'fortran_order': False, 'shape': (2, x), }", "bad header")]
    [InlineData("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1, 1, 1, 6), }", "5-D")]
    [InlineData("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", "unexpected key")]
    public void Rejects_bad_headers_naming_the_file_and_problem(string header, string expected)
    {
        var e = Assert.Throws<NpyFormatException>(() => Read(Build(1, header, Doubles(1, 2, 3, 4, 5, 6))));
        Assert.Contains("test.npy", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Rejects_truncated_data_bad_magic_versions_and_trailing_bytes()
    {
        var good = Build(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", Doubles(1, 2, 3, 4, 5, 6));
        Assert.Contains("truncated data", Assert.Throws<NpyFormatException>(() => Read(good[..^1])).Message);
        Assert.Contains("truncated header", Assert.Throws<NpyFormatException>(() => Read(good[..20])).Message);
        var badMagic = (byte[])good.Clone(); badMagic[1] = (byte)'X';
        Assert.Contains("magic", Assert.Throws<NpyFormatException>(() => Read(badMagic)).Message);
        var badVersion = (byte[])good.Clone(); badVersion[6] = 4;
        Assert.Contains("version 4.0", Assert.Throws<NpyFormatException>(() => Read(badVersion)).Message);
        Assert.Contains("trailing", Assert.Throws<NpyFormatException>(() => Read([.. good, 0])).Message);
        var noNewline = Build(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", Doubles(1, 2, 3, 4, 5, 6), pad: false);
        noNewline[10 + BinaryPrimitives.ReadUInt16LittleEndian(noNewline.AsSpan(8)) - 1] = (byte)' ';
        Assert.Contains("newline", Assert.Throws<NpyFormatException>(() => Read(noNewline)).Message);
    }

    [Fact]
    public void Missing_file_is_reported_with_its_name()
    {
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read("/nonexistent/q.npy"));
        Assert.Contains("/nonexistent/q.npy", e.Message);
    }
}
