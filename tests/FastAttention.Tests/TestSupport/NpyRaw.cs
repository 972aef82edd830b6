using System.Runtime.InteropServices;
using FastAttention.IO;

namespace FastAttention.Tests.TestSupport;

/// <summary>Writes .npy files of the dtypes the library only reads (|b1, &lt;i4, &lt;i8), from the public header builder.</summary>
public static class NpyRaw
{
    public static void Write(string path, string descr, int[] shape, ReadOnlySpan<byte> data)
    {
        using var fs = File.Create(path);
        fs.Write(NpyFile.Header(descr, shape));
        fs.Write(data);
    }

    public static void Bool(string path, bool[] data, params int[] shape) =>
        Write(path, "|b1", shape, Array.ConvertAll(data, b => b ? (byte)1 : (byte)0));

    public static void Int32(string path, int[] data, params int[] shape) => Write(path, "<i4", shape, MemoryMarshal.AsBytes(data.AsSpan()));

    public static void Int64(string path, long[] data, params int[] shape) => Write(path, "<i8", shape, MemoryMarshal.AsBytes(data.AsSpan()));
}
