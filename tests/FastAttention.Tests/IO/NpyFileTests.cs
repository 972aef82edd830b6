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

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1000, 7)]
    [InlineData(1003, 64)]
    [InlineData(4096, 4096)]
    public void Chunked_reads_and_writes_round_trip_every_dtype(int count, int chunkBytes)
    {
        var rng = new Random(count + chunkBytes);
        var f64 = Enumerable.Range(0, count).Select(_ => rng.NextDouble() * 2e6 - 1e6).ToArray();
        var f32 = f64.Select(x => (float)x).ToArray();
        foreach (var (descr, size) in new[] { ("<f8", 8), ("<f4", 4), ("<i4", 4), ("<i8", 8), ("|i1", 1), ("|u1", 1) })
        {
            var ms = new MemoryStream();
            if (descr == "<f8") NpyFile.WriteTo<double>(ms, f64, [count], chunkBytes);
            else if (descr == "<f4") NpyFile.WriteTo<float>(ms, f32, [count], chunkBytes);
            else
            {
                var raw = new byte[count * size];
                for (int i = 0; i < count; i++)
                {
                    long v = (long)f64[i] % (size == 1 ? 100 : 1000000);
                    if (size == 4) BinaryPrimitives.WriteInt32LittleEndian(raw.AsSpan(i * 4), (int)v);
                    else if (size == 8) BinaryPrimitives.WriteInt64LittleEndian(raw.AsSpan(i * 8), v);
                    else raw[i] = (byte)(sbyte)v;
                }
                ms.Write(Build(1, $"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({count},), }}", raw));
            }
            ms.Position = 0;
            var a = NpyFile.Read(ms, "chunks.npy", chunkBytes, long.MaxValue);
            Assert.Equal(count, a.Length);
            if (descr == "<f8") Assert.Equal(f64, a.ToFloat64());
            else if (descr == "<f4") Assert.Equal(f32, a.Float32);
            else
                for (int i = 0; i < count; i++)
                {
                    long v = (long)f64[i] % (size == 1 ? 100 : 1000000);
                    double expected = descr == "|u1" ? (byte)(sbyte)v : v;
                    Assert.Equal(expected, a.ToFloat64()[i]);
                }
        }
    }

    [Fact]
    public void A_two_gigabyte_header_on_a_short_file_is_refused_before_allocating()
    {
        // [1, 32, 131072, 128] float32 is 2 GiB: the header alone must not allocate it nor overflow an int.
        var file = Build(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 32, 131072, 128), }", Floats(1, 2, 3));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<NpyFormatException>(() => Read(file));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.Contains("truncated data", e.Message);
        Assert.Contains("2147483648 bytes", e.Message);
    }

    [Theory]
    [InlineData("(65536, 65536)", "4294967296 elements")]
    [InlineData("(2147483647, 2147483647, 2147483647)", "more than 2⁶³")]
    public void Shapes_beyond_one_array_are_refused_with_the_count(string shape, string expected)
    {
        var e = Assert.Throws<NpyFormatException>(() => Read(Build(1, $"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}", Floats(1))));
        Assert.Contains(expected, e.Message);
        Assert.Contains("at most", e.Message);
    }

    [Fact]
    public void Arrays_larger_than_memory_are_refused_with_the_size_needed()
    {
        var file = Build(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (256, 256), }", new byte[256 * 256 * 8]);
        var e = Assert.Throws<NpyFormatException>(() => NpyFile.Read(new MemoryStream(file), "big.npy", 1 << 16, 100_000));
        Assert.Contains("512.0 KiB", e.Message);
        Assert.Contains("97.7 KiB", e.Message);
        Assert.Equal(256 * 256, NpyFile.Read(new MemoryStream(file), "big.npy", 1 << 16, 1 << 20).Length);
    }

    [Fact]
    public void Header_is_read_without_the_data()
    {
        string dir = Path.Combine(Path.GetTempPath(), "npy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "a.npy");
        NpyFile.Write(path, new float[24], [2, 3, 4]);
        var h = NpyFile.ReadHeader(path);
        Assert.Equal(NpyDType.Float32, h.DType);
        Assert.Equal(new[] { 2, 3, 4 }, h.Shape);
        Assert.Equal(96, h.DataBytes);
        Assert.Equal(new FileInfo(path).Length, h.DataOffset + h.DataBytes);
    }

    [Fact]
    public void Writing_into_a_folder_or_a_missing_folder_names_the_path_not_a_temporary_file()
    {
        string dir = Path.Combine(Path.GetTempPath(), "npy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var e1 = Assert.Throws<IOException>(() => NpyFile.Write(dir, new float[1], [1]));
        Assert.Contains("is a folder", e1.Message);
        var e2 = Assert.Throws<DirectoryNotFoundException>(() => NpyFile.Write(Path.Combine(dir, "no", "o.npy"), new float[1], [1]));
        Assert.Contains(Path.Combine(dir, "no", "o.npy"), e2.Message);
        Assert.DoesNotContain(".tmp", e2.Message);
        Assert.Contains("is a folder", Assert.Throws<NpyFormatException>(() => NpyFile.Read(dir)).Message);
        Assert.Empty(Directory.GetFileSystemEntries(dir));
    }

    /// <summary>The real thing: a 2.1 GiB float32 file ([1, 33, 131072, 128]) written and read back through the
    /// public API (spans of more than 2³¹ bytes, long offsets). Minutes of disk and ~5 GiB of memory: Slow.</summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void Files_over_two_gigabytes_round_trip()
    {
        int[] shape = [1, 33, 131072, 128];
        long count = NpyFile.ElementCount(shape);
        Assert.True(count * 4 > int.MaxValue);
        var data = new float[count];
        for (long i = 0; i < count; i += 4099) data[i] = i;
        data[^1] = -7;
        string dir = Path.Combine(Path.GetTempPath(), "npy-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "big.npy");
        try
        {
            NpyFile.Write(path, data, shape);
            Assert.Equal(count * 4 + NpyFile.Header("<f4", shape).Length, new FileInfo(path).Length);
            data = null!;
            var back = NpyFile.Read(path);
            Assert.Equal(shape, back.Shape);
            var f = back.Float32;
            for (long i = 0; i < count - 1; i++) Assert.Equal(i % 4099 == 0 ? i : 0f, f[i]);
            Assert.Equal(-7f, f[^1]);
        }
        finally { Directory.Delete(dir, true); }
    }
}
