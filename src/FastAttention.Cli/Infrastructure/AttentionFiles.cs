using System.Numerics;
using FastAttention.IO;

namespace FastAttention.Cli.Infrastructure;

/// <summary>Q, K, V loaded from .npy files: 2-D [n, d], 3-D [h, n, d] or 4-D [b, h, n, d], leading dims equal.</summary>
internal sealed class AttentionFiles
{
    public required NpyArray Q { get; init; }
    public required NpyArray K { get; init; }
    public required NpyArray V { get; init; }
    public required int[] Leading { get; init; }
    public int Heads => Leading.Aggregate(1, (a, b) => a * b);
    public int N => Q.Shape[^2];
    public int M => K.Shape[^2];
    public int D => Q.Shape[^1];
    public int Dv => V.Shape[^1];
    public bool AnyFloat64 => !Q.IsFloat32 || !K.IsFloat32 || !V.IsFloat32;
    public bool AllFloat64 => !Q.IsFloat32 && !K.IsFloat32 && !V.IsFloat32;
    public bool Mixed => AnyFloat64 && !AllFloat64;

    /// <summary>
    /// Checks the three headers (dtype, rank, agreeing shapes) and the memory the run needs before reading any data,
    /// then reads the data and checks it is finite. <paramref name="computeFloat32"/> (null: decided by the files)
    /// and <paramref name="extraOutputBytes"/> enter the memory estimate. Every problem names the option.
    /// </summary>
    public static AttentionFiles Load(string q, string k, string v, bool? computeFloat32 = null, long extraOutputBytes = 0)
    {
        var qh = Header(q, "--q"); var kh = Header(k, "--k"); var vh = Header(v, "--v");
        int r = qh.Shape.Length;
        if (r != kh.Shape.Length || r != vh.Shape.Length)
            throw new UsageException($"--q, --k, --v must have the same rank (got {qh.Shape.Length}-D, {kh.Shape.Length}-D, {vh.Shape.Length}-D).");
        for (int i = 0; i < r - 2; i++)
            if (qh.Shape[i] != kh.Shape[i] || qh.Shape[i] != vh.Shape[i])
                throw new UsageException($"--q, --k, --v must agree on the batch/head dimensions (Q {Shape(qh.Shape)}, K {Shape(kh.Shape)}, V {Shape(vh.Shape)}).");
        if (qh.Shape[^1] != kh.Shape[^1])
            throw new UsageException($"--q and --k must have the same head dimension d (Q {Shape(qh.Shape)} has d = {qh.Shape[^1]}, K {Shape(kh.Shape)} has d = {kh.Shape[^1]}).");
        if (kh.Shape[^2] != vh.Shape[^2])
            throw new UsageException($"--k and --v must have the same number of keys m (K {Shape(kh.Shape)} has m = {kh.Shape[^2]}, V {Shape(vh.Shape)} has m = {vh.Shape[^2]}).");
        CheckMemory(qh, kh, vh, computeFloat32, extraOutputBytes);
        var qa = Read(q, "--q"); var ka = Read(k, "--k"); var va = Read(v, "--v");
        return new AttentionFiles { Q = qa, K = ka, V = va, Leading = qh.Shape.Take(r - 2).ToArray() };
    }

    public int[] OutputShape => [.. Leading, N, Dv];

    public AttentionProblem<T> Problem<T>(double? scale, bool causal) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return (AttentionProblem<T>)(object)new AttentionProblem<float>(Float32(Q, "--q"), Float32(K, "--k"), Float32(V, "--v"), N, M, D, Dv, Heads, scale, causal);
        return (AttentionProblem<T>)(object)new AttentionProblem<double>(Q.ToFloat64(), K.ToFloat64(), V.ToFloat64(), N, M, D, Dv, Heads, scale, causal);
    }

    /// <summary>The array as float32, refusing values beyond float32's range (they would become ±∞).</summary>
    public static float[] Float32(NpyArray a, string option)
    {
        var f = a.ToFloat32();
        if (!a.IsFloat32)
            for (long i = 0; i < f.Length; i++)
                if (!float.IsFinite(f[i]))
                    throw new UsageException($"{option}: the value {a.ToFloat64()[i]:G6} at index {Index(i, a.Shape)} does not fit float32; use --precision f64.");
        return f;
    }

    /// <summary>The header of an attention input, checked: a readable .npy, float32/float64, 2–4-D, no empty dimension.</summary>
    public static NpyHeader Header(string path, string option)
    {
        CheckFile(path, option);
        var h = Wrap(option, () => NpyFile.ReadHeader(path));
        if (h.DType is not (NpyDType.Float32 or NpyDType.Float64))
            throw new UsageException($"{option}: {path} has dtype {h.DType}; attention inputs must be float32 (<f4) or float64 (<f8).");
        if (h.Shape.Length is < 2 or > 4)
            throw new UsageException($"{option}: {path} is {h.Shape.Length}-D; attention inputs must be 2-D [n, d], 3-D [h, n, d] or 4-D [b, h, n, d].");
        if (h.Shape.Any(s => s == 0))
            throw new UsageException($"{option}: {path} has an empty dimension {Shape(h.Shape)}.");
        return h;
    }

    /// <summary>An input file that exists and is not a folder.</summary>
    public static void CheckFile(string path, string option)
    {
        if (Directory.Exists(path)) throw new UsageException($"{option}: '{path}' is a folder, not a file.");
        if (!File.Exists(path)) throw new UsageException($"{option}: the file '{path}' does not exist.");
    }

    /// <summary>Reads an .npy input, naming the option in any problem, and checks that every value is finite.</summary>
    public static NpyArray Read(string path, string option)
    {
        CheckFile(path, option);
        var a = Wrap(option, () => NpyFile.Read(path));
        long bad = a.IsFloat32 ? IndexOfNonFinite(a.Float32) : IndexOfNonFinite(a.ToFloat64());
        if (bad >= 0)
        {
            double value = a.IsFloat32 ? a.Float32[bad] : a.ToFloat64()[bad];
            throw new UsageException($"{option}: {path} holds a non-finite value ({value}) at index {Index(bad, a.Shape)}; attention needs finite inputs.");
        }
        return a;
    }

    /// <summary>Runs an .npy read, turning its format errors into one line that names the option.</summary>
    public static T Wrap<T>(string option, Func<T> read)
    {
        try { return read(); }
        catch (NpyFormatException e) { throw new UsageException($"{option}: {e.Message}"); }
    }

    private static void CheckMemory(NpyHeader q, NpyHeader k, NpyHeader v, bool? computeFloat32, long extraOutputBytes)
    {
        long inputs = q.MemoryBytes + k.MemoryBytes + v.MemoryBytes;
        bool f32 = computeFloat32 ?? (q.DType == NpyDType.Float32 && k.DType == NpyDType.Float32 && v.DType == NpyDType.Float32);
        int size = f32 ? 4 : 8;
        // Converted copies for the compute precision (a file already in it is used as is).
        long converted = 0;
        foreach (var h in new[] { q, k, v })
            if ((h.DType == NpyDType.Float32) != f32) converted += h.Count * size;
        long output = (v.Count / v.Shape[^2]) * q.Shape[^2] * (long)size;
        long needed = inputs + converted + output + extraOutputBytes;
        long available = NpyFile.AvailableMemory();
        if (needed > available)
            throw new UsageException($"--q, --k, --v: this run needs at least {NpyFile.FormatBytes(needed)} of memory (inputs {NpyFile.FormatBytes(inputs + converted)}, output {NpyFile.FormatBytes(output + extraOutputBytes)}), more than this machine's {NpyFile.FormatBytes(available)}.");
    }

    private static long IndexOfNonFinite(float[] a)
    {
        for (long i = 0; i < a.Length; i++) if (!float.IsFinite(a[i])) return i;
        return -1;
    }

    private static long IndexOfNonFinite(double[] a)
    {
        for (long i = 0; i < a.Length; i++) if (!double.IsFinite(a[i])) return i;
        return -1;
    }

    /// <summary>The multi-index [i, j, …] of a flat C-order index.</summary>
    private static string Index(long flat, IReadOnlyList<int> shape)
    {
        var idx = new long[shape.Count];
        for (int d = shape.Count - 1; d >= 0; d--) { idx[d] = flat % shape[d]; flat /= shape[d]; }
        return "[" + string.Join(", ", idx) + "]";
    }

    private static string Shape(IReadOnlyList<int> s) => "(" + string.Join(", ", s) + ")";
}
