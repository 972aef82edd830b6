using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace FastAttention.IO;

/// <summary>The element types this library reads from .npy files.</summary>
public enum NpyDType
{
    /// <summary>&lt;f4: IEEE float32, little-endian (kept as float32).</summary>
    Float32,
    /// <summary>&lt;f8: IEEE float64, little-endian.</summary>
    Float64,
    /// <summary>|i1: signed byte (widened to float64 exactly).</summary>
    Int8,
    /// <summary>|u1: unsigned byte (widened to float64 exactly).</summary>
    UInt8,
    /// <summary>|b1: bool, 0 or 1 (widened to float64).</summary>
    Bool,
    /// <summary>&lt;i4: int32, little-endian (widened to float64 exactly).</summary>
    Int32,
    /// <summary>&lt;i8: int64, little-endian (widened to float64, exactly up to 2⁵³ in magnitude).</summary>
    Int64,
    /// <summary>&lt;f2: IEEE float16, little-endian (held widened to float32, exactly).</summary>
    Float16,
}

/// <summary>A C-ordered array read from a .npy file. Float data stays in its precision (float16 is held widened to
/// float32, exactly); integers and booleans widen to double.</summary>
public sealed class NpyArray
{
    internal NpyArray(NpyDType dtype, int[] shape, float[]? f32, double[]? f64)
    {
        DType = dtype; Shape = shape; _f32 = f32; _f64 = f64;
    }

    private readonly float[]? _f32;
    private readonly double[]? _f64;

    /// <summary>The element type the file declared.</summary>
    public NpyDType DType { get; }
    /// <summary>The shape, C order (last index fastest); rank 0 to <see cref="NpyFile.MaxRank"/>.</summary>
    public IReadOnlyList<int> Shape { get; }
    /// <summary>Number of elements (the product of <see cref="Shape"/>).</summary>
    public long Length => _f32?.Length ?? _f64!.Length;
    /// <summary>True when the data is float32 (the file was &lt;f4 or the array was made from float32).</summary>
    public bool IsFloat32 => _f32 is not null && DType == NpyDType.Float32;
    /// <summary>True when the file was &lt;f2 (the data is held widened to float32).</summary>
    public bool IsFloat16 => DType == NpyDType.Float16;

    /// <summary>The data as float16 (exact when the file was &lt;f2; otherwise rounded).</summary>
    public Half[] ToHalf()
    {
        var r = new Half[Length];
        if (_f32 is not null) for (int i = 0; i < r.Length; i++) r[i] = (Half)_f32[i];
        else for (int i = 0; i < r.Length; i++) r[i] = (Half)_f64![i];
        return r;
    }

    /// <summary>The data as float32 (only when the file was &lt;f4).</summary>
    public float[] Float32 => _f32 ?? throw new InvalidOperationException($"the array is {DType}, not float32.");
    /// <summary>The data as float64 (converted from float32 if needed; integers widened exactly).</summary>
    public double[] ToFloat64()
    {
        if (_f64 is not null) return _f64;
        var r = new double[_f32!.Length];
        for (int i = 0; i < r.Length; i++) r[i] = _f32[i];
        return r;
    }

    /// <summary>The data as float32 (converted from float64 if needed).</summary>
    public float[] ToFloat32()
    {
        if (_f32 is not null) return _f32;
        var r = new float[_f64!.Length];
        for (int i = 0; i < r.Length; i++) r[i] = (float)_f64[i];
        return r;
    }

    /// <summary>Wraps float32 data (not copied) with a C-order shape; throws <see cref="ArgumentException"/> when the shape's product is not the length or an entry is negative.</summary>
    public static NpyArray FromFloat32(float[] data, params int[] shape) => new(NpyDType.Float32, Check(shape, data.Length), data, null);
    /// <summary>Wraps float64 data (not copied) with a C-order shape; throws <see cref="ArgumentException"/> when the shape's product is not the length or an entry is negative.</summary>
    public static NpyArray FromFloat64(double[] data, params int[] shape) => new(NpyDType.Float64, Check(shape, data.Length), null, data);

    private static int[] Check(int[] shape, long length)
    {
        long p = 1;
        foreach (int s in shape) { if (s < 0) throw new ArgumentException("shape entries must be non-negative.", nameof(shape)); p *= s; }
        if (p != length) throw new ArgumentException($"shape ({string.Join(", ", shape)}) has {p} elements but the data has {length}.", nameof(shape));
        return (int[])shape.Clone();
    }
}

/// <summary>A malformed or unsupported .npy file; the message names the file and the problem.</summary>
public sealed class NpyFormatException(string file, string problem) : Exception($"{file}: {problem}")
{
    /// <summary>The file (or stream name) that was being read.</summary>
    public string File { get; } = file;
    /// <summary>What is wrong with it, as a sentence.</summary>
    public string Problem { get; } = problem;
}

/// <summary>
/// NumPy .npy reading and writing per the NEP-1 format specification: magic "\x93NUMPY", version 1.0 (uint16 header
/// length), 2.0 and 3.0 (uint32; 3.0 allows UTF-8), an ASCII Python-dict header with 'descr', 'fortran_order' and
/// 'shape', padded with spaces and a newline so the data starts on a multiple of 64 bytes.
/// </summary>
public static class NpyFile
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    /// <summary>The largest rank read or written ([b, h, n, d]).</summary>
    public const int MaxRank = 4;

    /// <summary>Reads a .npy file (format 1.0–3.0, C order, a dtype of <see cref="NpyDType"/>).</summary>
    /// <exception cref="NpyFormatException">The file cannot be opened, is not .npy, is truncated, is Fortran-ordered,
    /// has an unsupported dtype or version, or a malformed header; the message names the file and the problem.</exception>
    public static NpyArray Read(string path)
    {
        FileStream fs;
        try { fs = File.OpenRead(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new NpyFormatException(path, $"cannot open the file ({e.Message})."); }
        using (fs) return Read(fs, path);
    }

    /// <summary>Reads a .npy array from <paramref name="stream"/>; <paramref name="name"/> names it in error messages.</summary>
    /// <exception cref="NpyFormatException">As <see cref="Read(string)"/>.</exception>
    public static NpyArray Read(Stream stream, string name)
    {
        Span<byte> pre = stackalloc byte[8];
        if (ReadFully(stream, pre) < 8 || !pre[..6].SequenceEqual(Magic))
            throw new NpyFormatException(name, "not a .npy file (missing the \\x93NUMPY magic string).");
        byte major = pre[6], minor = pre[7];
        if (major is < 1 or > 3 || minor != 0)
            throw new NpyFormatException(name, $"unsupported .npy format version {major}.{minor} (supported: 1.0, 2.0, 3.0).");
        int lenBytes = major == 1 ? 2 : 4;
        Span<byte> lb = stackalloc byte[4];
        if (ReadFully(stream, lb[..lenBytes]) < lenBytes) throw new NpyFormatException(name, "truncated header length.");
        long headerLen = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(lb) : BinaryPrimitives.ReadUInt32LittleEndian(lb);
        if (headerLen > 1 << 20) throw new NpyFormatException(name, $"header length {headerLen} is implausibly large.");
        var hb = new byte[headerLen];
        if (ReadFully(stream, hb) < headerLen) throw new NpyFormatException(name, $"truncated header: expected {headerLen} bytes.");
        string header;
        try { header = (major == 3 ? new UTF8Encoding(false, true) : Encoding.Latin1).GetString(hb); }
        catch (DecoderFallbackException) { throw new NpyFormatException(name, "the header is not valid UTF-8."); }
        if (major < 3 && header.Any(c => c > 127)) throw new NpyFormatException(name, $"a version {major}.0 header must be ASCII.");
        var (descr, fortran, shape) = ParseHeader(header, name);
        if (fortran) throw new NpyFormatException(name, "Fortran-ordered arrays are not supported; save with numpy.ascontiguousarray(x).");
        if (shape.Length > MaxRank) throw new NpyFormatException(name, $"{shape.Length}-D arrays are not supported (at most {MaxRank}-D).");
        var dtype = descr switch
        {
            "<f4" => NpyDType.Float32,
            "<f8" => NpyDType.Float64,
            "<f2" => NpyDType.Float16,
            "<i4" => NpyDType.Int32,
            "<i8" => NpyDType.Int64,
            "|i1" => NpyDType.Int8,
            "|u1" => NpyDType.UInt8,
            "|b1" => NpyDType.Bool,
            ">f2" or ">f4" or ">f8" or ">i4" or ">i8" => throw new NpyFormatException(name, $"big-endian dtype '{descr}' is not supported; convert with x.astype('<f8')."),
            _ => throw new NpyFormatException(name, $"dtype '{descr}' is not supported (supported: <f2, <f4, <f8, and for integer inputs <i4, <i8, |i1, |u1, |b1)."),
        };
        long count = 1;
        foreach (int s in shape) count *= s;
        if (count > Array.MaxLength) throw new NpyFormatException(name, $"{count} elements exceed the largest supported array.");
        int size = dtype switch { NpyDType.Float32 or NpyDType.Int32 => 4, NpyDType.Float64 or NpyDType.Int64 => 8, NpyDType.Float16 => 2, _ => 1 };
        var raw = new byte[count * size];
        int got = ReadFully(stream, raw);
        if (got < raw.Length)
            throw new NpyFormatException(name, $"truncated data: shape ({string.Join(", ", shape)}) needs {raw.Length} bytes of {descr}, the file has {got}.");
        if (stream.ReadByte() != -1)
            throw new NpyFormatException(name, $"trailing bytes after the {raw.Length} data bytes the header declares.");
        switch (dtype)
        {
            case NpyDType.Float32:
            {
                var f = new float[count];
                MemoryMarshal.Cast<byte, float>(raw).CopyTo(f); // little-endian host assumed
                return new NpyArray(dtype, shape, f, null);
            }
            case NpyDType.Float16:
            {
                var f = new float[count];
                var h = MemoryMarshal.Cast<byte, Half>(raw);
                for (long i = 0; i < count; i++) f[i] = (float)h[(int)i]; // exact widening
                return new NpyArray(dtype, shape, f, null);
            }
            case NpyDType.Float64:
            {
                var f = new double[count];
                MemoryMarshal.Cast<byte, double>(raw).CopyTo(f);
                return new NpyArray(dtype, shape, null, f);
            }
            default:
            {
                var f = new double[count];
                for (long i = 0; i < count; i++)
                    f[i] = dtype switch
                    {
                        NpyDType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(raw.AsSpan((int)(i * 4))),
                        NpyDType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan((int)(i * 8))),
                        NpyDType.Int8 => (sbyte)raw[i],
                        _ => raw[i],
                    };
                return new NpyArray(dtype, shape, null, f);
            }
        }
    }

    /// <summary>Writes float32 data atomically (temporary file, then rename).</summary>
    public static void Write(string path, ReadOnlySpan<float> data, ReadOnlySpan<int> shape) =>
        WriteAtomic(path, MemoryMarshal.AsBytes(data), "<f4", shape, data.Length);

    /// <summary>Writes float16 data atomically (temporary file, then rename).</summary>
    public static void Write(string path, ReadOnlySpan<Half> data, ReadOnlySpan<int> shape) =>
        WriteAtomic(path, MemoryMarshal.AsBytes(data), "<f2", shape, data.Length);

    /// <summary>Writes float64 data atomically (temporary file, then rename).</summary>
    public static void Write(string path, ReadOnlySpan<double> data, ReadOnlySpan<int> shape) =>
        WriteAtomic(path, MemoryMarshal.AsBytes(data), "<f8", shape, data.Length);

    /// <summary>Writes a float32 array (&lt;f4, C order) to <paramref name="stream"/>; the shape's product must equal the length.</summary>
    public static void Write(Stream stream, ReadOnlySpan<float> data, ReadOnlySpan<int> shape) =>
        WriteTo(stream, MemoryMarshal.AsBytes(data), "<f4", shape, data.Length);

    /// <summary>Writes a float64 array (&lt;f8, C order) to <paramref name="stream"/>; the shape's product must equal the length.</summary>
    public static void Write(Stream stream, ReadOnlySpan<double> data, ReadOnlySpan<int> shape) =>
        WriteTo(stream, MemoryMarshal.AsBytes(data), "<f8", shape, data.Length);

    /// <summary>Builds the header bytes (magic, version, length, dict, padding) for a C-ordered array.</summary>
    public static byte[] Header(string descr, ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder();
        sb.Append("{'descr': '").Append(descr).Append("', 'fortran_order': False, 'shape': (");
        for (int i = 0; i < shape.Length; i++)
        {
            sb.Append(shape[i].ToString(CultureInfo.InvariantCulture));
            if (shape.Length == 1 || i < shape.Length - 1) sb.Append(shape.Length == 1 ? "," : ", ");
        }
        sb.Append("), }");
        string dict = sb.ToString();
        int major = 1;
        int prefix = 10;
        int total = Align(prefix + dict.Length + 1);
        if (total - prefix > ushort.MaxValue) { major = 2; prefix = 12; total = Align(prefix + dict.Length + 1); }
        int pad = total - prefix - dict.Length - 1;
        var bytes = new byte[total];
        Magic.CopyTo(bytes);
        bytes[6] = (byte)major; bytes[7] = 0;
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)(total - prefix));
        else BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), (uint)(total - prefix));
        Encoding.ASCII.GetBytes(dict + new string(' ', pad) + "\n", bytes.AsSpan(prefix));
        return bytes;

        static int Align(int x) => (x + 63) / 64 * 64;
    }

    private static void WriteAtomic(string path, ReadOnlySpan<byte> data, string descr, ReadOnlySpan<int> shape, long count)
    {
        string full = Path.GetFullPath(path);
        string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write))
            {
                WriteTo(fs, data, descr, shape, count);
                fs.Flush(true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    private static void WriteTo(Stream stream, ReadOnlySpan<byte> data, string descr, ReadOnlySpan<int> shape, long count)
    {
        long p = 1;
        foreach (int s in shape) { if (s < 0) throw new ArgumentException("shape entries must be non-negative.", nameof(shape)); p *= s; }
        if (p != count) throw new ArgumentException($"shape ({string.Join(", ", shape.ToArray())}) has {p} elements but the data has {count}.", nameof(shape));
        stream.Write(Header(descr, shape));
        stream.Write(data);
    }

    private static int ReadFully(Stream s, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int r = s.Read(buffer[total..]);
            if (r == 0) break;
            total += r;
        }
        return total;
    }

    /// <summary>Parses the header dict literal: {'descr': '&lt;f8', 'fortran_order': False, 'shape': (3, 4), }.</summary>
    internal static (string Descr, bool Fortran, int[] Shape) ParseHeader(string header, string name)
    {
        string h = header.TrimEnd('\n', ' ', '\0');
        if (!header.EndsWith('\n')) throw new NpyFormatException(name, "bad header: it must end with a newline.");
        var p = new HeaderParser(h, name);
        return p.Parse();
    }

    private ref struct HeaderParser(string s, string name)
    {
        private int _i;

        public (string, bool, int[]) Parse()
        {
            string? descr = null; bool? fortran = null; int[]? shape = null;
            Skip(); Expect('{');
            while (true)
            {
                Skip();
                if (Peek() == '}') { _i++; break; }
                string key = ReadString();
                Skip(); Expect(':'); Skip();
                switch (key)
                {
                    case "descr": descr = ReadString(); break;
                    case "fortran_order": fortran = ReadBool(); break;
                    case "shape": shape = ReadShape(); break;
                    default: throw Bad($"unexpected key '{key}'");
                }
                Skip();
                if (Peek() == ',') { _i++; continue; }
                Skip(); Expect('}'); break;
            }
            Skip();
            if (_i != s.Length) throw Bad("text after the closing brace");
            if (descr is null) throw Bad("the key 'descr' is missing");
            if (fortran is null) throw Bad("the key 'fortran_order' is missing");
            if (shape is null) throw Bad("the key 'shape' is missing");
            return (descr, fortran.Value, shape);
        }

        private NpyFormatException Bad(string what) => new(name, $"bad header ({what}): {s}");
        private char Peek() => _i < s.Length ? s[_i] : '\0';
        private void Skip() { while (_i < s.Length && char.IsWhiteSpace(s[_i])) _i++; }
        private void Expect(char c) { if (Peek() != c) throw Bad($"expected '{c}' at position {_i}"); _i++; }

        private string ReadString()
        {
            char quote = Peek();
            if (quote is not ('\'' or '"')) throw Bad($"expected a quoted string at position {_i}");
            int start = ++_i;
            while (_i < s.Length && s[_i] != quote) _i++;
            if (_i >= s.Length) throw Bad("unterminated string");
            return s[start.._i++];
        }

        private bool ReadBool()
        {
            if (string.CompareOrdinal(s, _i, "True", 0, 4) == 0) { _i += 4; return true; }
            if (string.CompareOrdinal(s, _i, "False", 0, 5) == 0) { _i += 5; return false; }
            throw Bad($"expected True or False at position {_i}");
        }

        private int[] ReadShape()
        {
            Expect('(');
            var dims = new List<int>();
            while (true)
            {
                Skip();
                if (Peek() == ')') { _i++; break; }
                int start = _i;
                while (_i < s.Length && char.IsAsciiDigit(s[_i])) _i++;
                if (start == _i) throw Bad($"expected a dimension at position {_i}");
                string digits = s[start.._i];
                if (_i < s.Length && s[_i] == 'L') _i++; // Python 2 long suffix
                if (!int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int dim))
                    throw Bad($"dimension {digits} is too large");
                dims.Add(dim);
                Skip();
                if (Peek() == ',') { _i++; continue; }
                Skip(); Expect(')'); break;
            }
            return dims.ToArray();
        }
    }
}
