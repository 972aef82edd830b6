using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace FastAttention.IO;

/// <summary>The element types this library reads from .npy files.</summary>
public enum NpyDType
{
    /// <summary>&lt;f4</summary>
    Float32,
    /// <summary>&lt;f8</summary>
    Float64,
    /// <summary>|i1</summary>
    Int8,
    /// <summary>|u1</summary>
    UInt8,
    /// <summary>|b1</summary>
    Bool,
    /// <summary>&lt;i4</summary>
    Int32,
    /// <summary>&lt;i8</summary>
    Int64,
    /// <summary>&lt;f2 (held widened to float32, exactly)</summary>
    Float16,
}

/// <summary>A C-ordered array read from a .npy file. Float data stays in its precision; integers widen to double.</summary>
public sealed class NpyArray
{
    internal NpyArray(NpyDType dtype, int[] shape, float[]? f32, double[]? f64)
    {
        DType = dtype; Shape = shape; _f32 = f32; _f64 = f64;
    }

    private readonly float[]? _f32;
    private readonly double[]? _f64;

    /// <summary>The dtype as stored in the file.</summary>
    public NpyDType DType { get; }
    /// <summary>The shape (C order).</summary>
    public IReadOnlyList<int> Shape { get; }
    /// <summary>Number of elements.</summary>
    public long Length => _f32?.Length ?? _f64!.Length;
    /// <summary>True when the data is float32 (the file was &lt;f4).</summary>
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

    /// <summary>Wraps float32 data of the given shape (no copy).</summary>
    public static NpyArray FromFloat32(float[] data, params int[] shape) => new(NpyDType.Float32, Check(shape, data.Length), data, null);
    /// <summary>Wraps float64 data of the given shape (no copy).</summary>
    public static NpyArray FromFloat64(double[] data, params int[] shape) => new(NpyDType.Float64, Check(shape, data.Length), null, data);

    private static int[] Check(int[] shape, long length)
    {
        long p = NpyFile.ElementCount(shape);
        if (p != length) throw new ArgumentException($"shape ({string.Join(", ", shape)}) has {(p < 0 ? "more than 2⁶³" : p.ToString(CultureInfo.InvariantCulture))} elements but the data has {length}.", nameof(shape));
        return (int[])shape.Clone();
    }
}

/// <summary>What a .npy header declares: element type, shape, and where the data starts.</summary>
/// <param name="DType">The element type.</param>
/// <param name="Shape">The shape (C order).</param>
/// <param name="DataOffset">Bytes before the data (magic, version, length, header).</param>
public sealed record NpyHeader(NpyDType DType, int[] Shape, long DataOffset)
{
    /// <summary>Number of elements (the product of the shape).</summary>
    public long Count => NpyFile.ElementCount(Shape);
    /// <summary>Bytes per element in the file.</summary>
    public int ElementSize => DType switch { NpyDType.Float32 or NpyDType.Int32 => 4, NpyDType.Float64 or NpyDType.Int64 => 8, NpyDType.Float16 => 2, _ => 1 };
    /// <summary>Bytes of data the header declares.</summary>
    public long DataBytes => Count * ElementSize;
    /// <summary>Bytes the array takes once read (float32 stays float32; everything else widens to float64).</summary>
    public long MemoryBytes => Count * (DType is NpyDType.Float32 or NpyDType.Float16 ? 4 : 8);
}

/// <summary>A malformed or unsupported .npy file; the message names the file and the problem.</summary>
public sealed class NpyFormatException(string file, string problem) : Exception($"{file}: {problem}")
{
    /// <summary>The file (or stream name) at fault.</summary>
    public string File { get; } = file;
    /// <summary>What is wrong with it.</summary>
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

    /// <summary>Bytes moved per read or write call: keeps spans far below 2 GiB whatever the array's size.</summary>
    internal const int DefaultChunkBytes = 1 << 24;

    /// <summary>Largest number of elements one array may hold (.NET's array limit).</summary>
    public static long MaxElements => Array.MaxLength;

    /// <summary>Product of the shape, or −1 when it exceeds 2⁶³ (negative entries are rejected).</summary>
    public static long ElementCount(ReadOnlySpan<int> shape)
    {
        long p = 1;
        foreach (int d in shape)
        {
            if (d < 0) throw new ArgumentException("shape entries must be non-negative.", nameof(shape));
            if (d != 0 && p > long.MaxValue / d) return -1;
            p *= d;
        }
        return p;
    }

    /// <summary>Opens a file for reading, or throws <see cref="NpyFormatException"/> saying why it cannot be.</summary>
    private static FileStream Open(string path)
    {
        if (Directory.Exists(path)) throw new NpyFormatException(path, "is a folder, not a .npy file.");
        try { return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new NpyFormatException(path, $"cannot open the file ({e.Message})."); }
    }

    /// <summary>Reads only the header (dtype, shape, data offset): cheap, for checking shapes and sizes before loading.</summary>
    public static NpyHeader ReadHeader(string path)
    {
        using var fs = Open(path);
        var h = ReadHeader(fs, path);
        CheckSize(h, path, fs.Length - fs.Position, long.MaxValue);
        return h;
    }

    /// <summary>Reads a .npy file (format 1.0–3.0, C order), in chunks; refuses arrays too large for memory before allocating.</summary>
    /// <exception cref="NpyFormatException">The file cannot be opened, is not .npy, is truncated, Fortran-ordered, of an
    /// unsupported dtype or version, malformed, or too large; the message names the file and the problem.</exception>
    public static NpyArray Read(string path)
    {
        using var fs = Open(path);
        return Read(fs, path);
    }

    /// <summary>Reads a .npy array from <paramref name="stream"/>; <paramref name="name"/> names it in error messages.</summary>
    public static NpyArray Read(Stream stream, string name) => Read(stream, name, DefaultChunkBytes, AvailableMemory());

    /// <summary>The memory this process can have at most: the machine's, or the container's limit (the GC's view).</summary>
    public static long AvailableMemory()
    {
        long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return total > 0 ? total : long.MaxValue;
    }

    /// <summary>The reader with its chunk size and memory limit explicit (tests use small ones).</summary>
    internal static NpyArray Read(Stream stream, string name, int chunkBytes, long availableBytes)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException(".npy reading assumes a little-endian host.");
        var h = ReadHeader(stream, name);
        long remaining = stream.CanSeek ? stream.Length - stream.Position : -1;
        CheckSize(h, name, remaining, availableBytes);
        var shape = h.Shape;
        int count = (int)h.Count;
        switch (h.DType)
        {
            case NpyDType.Float32:
            {
                var f = new float[count];
                ReadData(stream, f.Length, 4, chunkBytes, name, h, (from, len) => MemoryMarshal.AsBytes(f.AsSpan(from, len)));
                return new NpyArray(h.DType, shape, f, null);
            }
            case NpyDType.Float16:
            {
                var f = new float[count];
                var buffer = new byte[Math.Max(2, chunkBytes / 2 * 2)];
                for (int from = 0; from < count; from += buffer.Length / 2)
                {
                    int len = Math.Min(buffer.Length / 2, count - from);
                    var raw = buffer.AsSpan(0, len * 2);
                    Fill(stream, raw, name, h, (long)from * 2);
                    var halves = MemoryMarshal.Cast<byte, Half>(raw);
                    for (int i = 0; i < len; i++) f[from + i] = (float)halves[i]; // exact widening
                }
                CheckEnd(stream, name, h);
                return new NpyArray(h.DType, shape, f, null);
            }
            case NpyDType.Float64:
            {
                var f = new double[count];
                ReadData(stream, f.Length, 8, chunkBytes, name, h, (from, len) => MemoryMarshal.AsBytes(f.AsSpan(from, len)));
                return new NpyArray(h.DType, shape, null, f);
            }
            default:
            {
                var f = new double[count];
                int size = h.ElementSize;
                var buffer = new byte[Math.Max(size, chunkBytes / size * size)];
                int per = buffer.Length / size;
                for (int from = 0; from < count; from += per)
                {
                    int len = Math.Min(per, count - from);
                    var raw = buffer.AsSpan(0, len * size);
                    Fill(stream, raw, name, h, (long)from * size);
                    var dst = f.AsSpan(from, len);
                    switch (h.DType)
                    {
                        case NpyDType.Int32: for (int i = 0; i < len; i++) dst[i] = BinaryPrimitives.ReadInt32LittleEndian(raw[(i * 4)..]); break;
                        case NpyDType.Int64: for (int i = 0; i < len; i++) dst[i] = BinaryPrimitives.ReadInt64LittleEndian(raw[(i * 8)..]); break;
                        case NpyDType.Int8: for (int i = 0; i < len; i++) dst[i] = (sbyte)raw[i]; break;
                        default: for (int i = 0; i < len; i++) dst[i] = raw[i]; break;
                    }
                }
                CheckEnd(stream, name, h);
                return new NpyArray(h.DType, shape, null, f);
            }
        }
    }

    /// <summary>Refuses, before anything is allocated, arrays .NET cannot hold, data the file does not have, and
    /// arrays larger than the memory available — each with the size needed.</summary>
    private static void CheckSize(NpyHeader h, string name, long remainingBytes, long availableBytes)
    {
        long count = h.Count;
        string shape = "(" + string.Join(", ", h.Shape) + ")";
        if (count < 0 || count > MaxElements)
            throw new NpyFormatException(name, $"shape {shape} has {(count < 0 ? "more than 2⁶³" : count.ToString(CultureInfo.InvariantCulture))} elements; one array can hold at most {MaxElements} (split the batch or heads into several files).");
        if (remainingBytes >= 0 && remainingBytes < h.DataBytes)
            throw new NpyFormatException(name, $"truncated data: shape {shape} needs {h.DataBytes} bytes of {Descr(h.DType)}, the file has {remainingBytes}.");
        if (remainingBytes > h.DataBytes)
            throw new NpyFormatException(name, $"trailing bytes after the {h.DataBytes} data bytes the header declares.");
        if (h.MemoryBytes > availableBytes)
            throw new NpyFormatException(name, $"shape {shape} needs {FormatBytes(h.MemoryBytes)} of memory once read, more than this machine's {FormatBytes(availableBytes)}.");
    }

    /// <summary>Human-readable byte count (GiB/MiB/KiB).</summary>
    public static string FormatBytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F1} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} bytes"),
    };

    private static string Descr(NpyDType t) => t switch
    {
        NpyDType.Float32 => "<f4", NpyDType.Float64 => "<f8", NpyDType.Float16 => "<f2", NpyDType.Int32 => "<i4", NpyDType.Int64 => "<i8",
        NpyDType.Int8 => "|i1", NpyDType.UInt8 => "|u1", _ => "|b1",
    };

    /// <summary>Reads count elements of elementSize bytes, chunk by chunk, into the spans <paramref name="target"/> gives.</summary>
    private static void ReadData(Stream stream, int count, int elementSize, int chunkBytes, string name, NpyHeader h, Func<int, int, Span<byte>> target)
    {
        int per = Math.Max(1, chunkBytes / elementSize);
        for (int from = 0; from < count; from += per)
        {
            int len = Math.Min(per, count - from);
            Fill(stream, target(from, len), name, h, (long)from * elementSize);
        }
        CheckEnd(stream, name, h);
    }

    private static void Fill(Stream stream, Span<byte> chunk, string name, NpyHeader h, long offset)
    {
        int got = ReadFully(stream, chunk);
        if (got < chunk.Length)
            throw new NpyFormatException(name, $"truncated data: shape ({string.Join(", ", h.Shape)}) needs {h.DataBytes} bytes of {Descr(h.DType)}, the file has {offset + got}.");
    }

    private static void CheckEnd(Stream stream, string name, NpyHeader h)
    {
        if (stream.ReadByte() != -1)
            throw new NpyFormatException(name, $"trailing bytes after the {h.DataBytes} data bytes the header declares.");
    }

    /// <summary>Parses magic, version, header length and the header dict; leaves the stream at the data.</summary>
    private static NpyHeader ReadHeader(Stream stream, string name)
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
        return new NpyHeader(dtype, shape, 8 + lenBytes + headerLen);
    }

    /// <summary>Writes float32 data atomically (temporary file in the same folder, then rename), in chunks.</summary>
    public static void Write(string path, ReadOnlySpan<float> data, ReadOnlySpan<int> shape) => Write(path, data, shape, DefaultChunkBytes);

    /// <summary>Writes float64 data atomically (temporary file in the same folder, then rename), in chunks.</summary>
    public static void Write(string path, ReadOnlySpan<double> data, ReadOnlySpan<int> shape) => Write(path, data, shape, DefaultChunkBytes);

    /// <summary>Writes float16 data (&lt;f2) atomically (temporary file in the same folder, then rename), in chunks.</summary>
    public static void Write(string path, ReadOnlySpan<Half> data, ReadOnlySpan<int> shape) => Write(path, data, shape, DefaultChunkBytes);

    /// <summary>Writes a float32 array (&lt;f4, format 1.0) to <paramref name="stream"/>, in chunks.</summary>
    public static void Write(Stream stream, ReadOnlySpan<float> data, ReadOnlySpan<int> shape) => WriteTo(stream, data, shape, DefaultChunkBytes);

    /// <summary>Writes a float64 array (&lt;f8, format 1.0) to <paramref name="stream"/>, in chunks.</summary>
    public static void Write(Stream stream, ReadOnlySpan<double> data, ReadOnlySpan<int> shape) => WriteTo(stream, data, shape, DefaultChunkBytes);

    /// <summary>Writes a float16 array (&lt;f2, format 1.0) to <paramref name="stream"/>, in chunks.</summary>
    public static void Write(Stream stream, ReadOnlySpan<Half> data, ReadOnlySpan<int> shape) => WriteTo(stream, data, shape, DefaultChunkBytes);

    /// <summary>The atomic writer with its chunk size explicit (tests use small ones).</summary>
    internal static void Write<T>(string path, ReadOnlySpan<T> data, ReadOnlySpan<int> shape, int chunkBytes) where T : unmanaged
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new IOException($"cannot write '{path}': it is a folder.");
        string dir = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"cannot write '{path}': the folder '{dir}' does not exist.");
        string tmp = TemporaryPath(full);
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                WriteTo(fs, data, shape, chunkBytes);
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

    /// <summary>The temporary name an atomic write uses next to <paramref name="fullPath"/> (hidden, unique).</summary>
    public static string TemporaryPath(string fullPath) =>
        Path.Combine(Path.GetDirectoryName(fullPath)!, $".{Path.GetFileName(fullPath)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    internal static void WriteTo<T>(Stream stream, ReadOnlySpan<T> data, ReadOnlySpan<int> shape, int chunkBytes) where T : unmanaged
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException(".npy writing assumes a little-endian host.");
        string descr = typeof(T) == typeof(float) ? "<f4" : typeof(T) == typeof(double) ? "<f8" : typeof(T) == typeof(Half) ? "<f2"
            : throw new ArgumentException($"element type {typeof(T).Name} is not supported (float, double or Half).", nameof(data));
        long p = ElementCount(shape);
        if (p != data.Length) throw new ArgumentException($"shape ({string.Join(", ", shape.ToArray())}) has {(p < 0 ? "more than 2⁶³" : p.ToString(CultureInfo.InvariantCulture))} elements but the data has {data.Length}.", nameof(shape));
        stream.Write(Header(descr, shape));
        int per = Math.Max(1, chunkBytes / System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
        for (int from = 0; from < data.Length; from += per)
            stream.Write(MemoryMarshal.AsBytes(data.Slice(from, Math.Min(per, data.Length - from))));
    }

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
