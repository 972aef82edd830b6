using System.Numerics;
using FastAttention.IO;

namespace FastAttention.Cli.Infrastructure;

/// <summary>The element type attention is computed in.</summary>
internal enum Precision { F16, F32, F64 }

/// <summary>
/// Q, K, V loaded from .npy files: 2-D [n, d], 3-D [h, n, d] or 4-D [b, h, n, d] (float16, float32 or float64). K and V
/// may have fewer heads than Q (grouped-query / multi-query attention: h_kv dividing h_q); the batch dimension must agree.
/// </summary>
internal sealed class AttentionFiles
{
    public required NpyArray Q { get; init; }
    public required NpyArray K { get; init; }
    public required NpyArray V { get; init; }
    public required int[] Leading { get; init; }
    /// <summary>Batch b (1 below 4-D).</summary>
    public required int Batch { get; init; }
    /// <summary>Query heads per batch element (1 for 2-D).</summary>
    public required int QueryHeads { get; init; }
    /// <summary>K/V heads per batch element.</summary>
    public required int KvHeadsPerBatch { get; init; }
    public int Heads => Batch * QueryHeads;
    public int KvHeads => Batch * KvHeadsPerBatch;
    public int N => Q.Shape[^2];
    public int M => K.Shape[^2];
    public int D => Q.Shape[^1];
    public int Dv => V.Shape[^1];
    public bool AnyFloat64 => Q.DType == NpyDType.Float64 || K.DType == NpyDType.Float64 || V.DType == NpyDType.Float64;
    public bool AllFloat64 => Q.DType == NpyDType.Float64 && K.DType == NpyDType.Float64 && V.DType == NpyDType.Float64;
    public bool Mixed => AnyFloat64 && !AllFloat64;
    public bool AllFloat16 => Q.IsFloat16 && K.IsFloat16 && V.IsFloat16;

    /// <summary>"(2, 8, 128, 64)" for messages.</summary>
    public static string Shape(NpyArray a) => Shape(a.Shape);

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
            if (kh.Shape[i] != vh.Shape[i])
                throw new UsageException($"--k, --v must agree on the batch/head dimensions (K {Shape(kh.Shape)}, V {Shape(vh.Shape)}).");
        if (r == 4 && qh.Shape[0] != kh.Shape[0])
            throw new UsageException($"--q, --k must agree on the batch dimension (Q {Shape(qh.Shape)}, K {Shape(kh.Shape)}).");
        int batch = r == 4 ? qh.Shape[0] : 1;
        int hq = r >= 3 ? qh.Shape[r - 3] : 1, hkv = r >= 3 ? kh.Shape[r - 3] : 1;
        if (hq % hkv != 0)
            throw new UsageException($"--k: K has {hkv} heads, which does not divide Q's {hq} (grouped-query attention needs h_q a multiple of h_kv; Q {Shape(qh.Shape)}, K {Shape(kh.Shape)}).");
        if (qh.Shape[^1] != kh.Shape[^1])
            throw new UsageException($"--q and --k must have the same head dimension d (Q {Shape(qh.Shape)} has d = {qh.Shape[^1]}, K {Shape(kh.Shape)} has d = {kh.Shape[^1]}).");
        if (kh.Shape[^2] != vh.Shape[^2])
            throw new UsageException($"--k and --v must have the same number of keys m (K {Shape(kh.Shape)} has m = {kh.Shape[^2]}, V {Shape(vh.Shape)} has m = {vh.Shape[^2]}).");
        CheckMemory(qh, kh, vh, computeFloat32, extraOutputBytes);
        // K and V rows past a key length may hold anything (padding): the problem checks the rows that exist.
        var qa = Read(q, "--q"); var ka = Read(k, "--k", checkFinite: false); var va = Read(v, "--v", checkFinite: false);
        return new AttentionFiles { Q = qa, K = ka, V = va, Leading = qh.Shape.Take(r - 2).ToArray(), Batch = batch, QueryHeads = hq, KvHeadsPerBatch = hkv };
    }

    public int[] OutputShape => [.. Leading, N, Dv];

    /// <summary>The precision to compute in: --precision when given, else float64 if any input is, float16 if all are, else float32.</summary>
    public Precision ChoosePrecision(string? precision, bool extraFloat64 = false, bool extraAllFloat16 = true) => precision switch
    {
        null => AnyFloat64 || extraFloat64 ? Precision.F64 : AllFloat16 && extraAllFloat16 ? Precision.F16 : Precision.F32,
        "f16" or "float16" => Precision.F16,
        "f32" or "float32" => Precision.F32,
        "f64" or "float64" => Precision.F64,
        _ => throw new UsageException($"--precision must be f16, f32 or f64 (got '{precision}')."),
    };

    public AttentionProblem<T> Problem<T>(double? scale, bool causal, AttentionMask? mask = null) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return (AttentionProblem<T>)(object)new AttentionProblem<float>(Float32(Q, "--q"), Float32(K, "--k"), Float32(V, "--v"), N, M, D, Dv, Heads, scale, causal, mask, KvHeads, Batch);
        if (typeof(T) == typeof(Half))
            return (AttentionProblem<T>)(object)new AttentionProblem<Half>(Float16(Q, "--q"), Float16(K, "--k"), Float16(V, "--v"), N, M, D, Dv, Heads, scale, causal, mask, KvHeads, Batch);
        return (AttentionProblem<T>)(object)new AttentionProblem<double>(Q.ToFloat64(), K.ToFloat64(), V.ToFloat64(), N, M, D, Dv, Heads, scale, causal, mask, KvHeads, Batch);
    }

    /// <summary>K and V must be finite in every row that exists (rows below each batch element's key length; rows past it
    /// are padding and may hold anything): the first offender is named with its option and multi-index.</summary>
    public void CheckKeysFinite(AttentionMask mask)
    {
        foreach (var (a, option) in new[] { (K, "--k"), (V, "--v") })
        {
            int m = a.Shape[^2], width = a.Shape[^1];
            bool f32 = a.IsFloat32 || a.IsFloat16;
            float[]? f = f32 ? a.Float32 : null;
            double[]? x = f32 ? null : a.ToFloat64();
            long rows = a.Length / width;
            for (long row = 0; row < rows; row++)
            {
                int j = (int)(row % m), b = (int)(row / m) / KvHeadsPerBatch;
                if (mask.HasKeyLengths && j >= mask.KeyLengths.Span[b]) continue;
                for (long t = row * width; t < (row + 1) * width; t++)
                {
                    double value = f32 ? f![t] : x![t];
                    if (!double.IsFinite(value))
                        throw new UsageException($"{option}: {option[2..]} holds a non-finite value ({value}) at index {Index(t, a.Shape)}, a key that exists; attention needs finite inputs (rows past a key length may hold anything).");
                }
            }
        }
    }

    /// <summary>The array as float32, refusing finite values beyond float32's range (they would become ±∞; non-finite
    /// values, allowed only in K/V padding, pass through for the problem's own check).</summary>
    public static float[] Float32(NpyArray a, string option)
    {
        var f = a.ToFloat32();
        if (!a.IsFloat32 && !a.IsFloat16)
            for (long i = 0; i < f.Length; i++)
                if (!float.IsFinite(f[i]) && double.IsFinite(a.ToFloat64()[i]))
                    throw new UsageException($"{option}: the value {a.ToFloat64()[i]:G6} at index {Index(i, a.Shape)} does not fit float32; use --precision f64.");
        return f;
    }

    /// <summary>The array as float16, refusing finite values beyond float16's range (±65504).</summary>
    public static Half[] Float16(NpyArray a, string option)
    {
        var h = a.ToHalf();
        if (!a.IsFloat16)
        {
            var x = a.ToFloat64();
            for (long i = 0; i < h.Length; i++)
                if (!Half.IsFinite(h[i]) && double.IsFinite(x[i]))
                    throw new UsageException($"{option}: the value {x[i]:G6} at index {Index(i, a.Shape)} does not fit float16; use --precision f32.");
        }
        return h;
    }

    /// <summary>The header of an attention input, checked: a readable .npy, float16/float32/float64, 2–4-D, no empty dimension.</summary>
    public static NpyHeader Header(string path, string option)
    {
        CheckFile(path, option);
        var h = Wrap(option, () => NpyFile.ReadHeader(path));
        if (h.DType is not (NpyDType.Float16 or NpyDType.Float32 or NpyDType.Float64))
            throw new UsageException($"{option}: {path} has dtype {h.DType}; attention inputs must be float16 (<f2), float32 (<f4) or float64 (<f8).");
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

    /// <summary>Reads an .npy input, naming the option in any problem, and (unless told not to) checks that every value is finite.</summary>
    public static NpyArray Read(string path, string option, bool checkFinite = true)
    {
        CheckFile(path, option);
        var a = Wrap(option, () => NpyFile.Read(path));
        if (!checkFinite) return a;
        long bad = a.IsFloat32 || a.IsFloat16 ? IndexOfNonFinite(a.Float32) : IndexOfNonFinite(a.ToFloat64());
        if (bad >= 0)
        {
            double value = a.IsFloat32 || a.IsFloat16 ? a.Float32[bad] : a.ToFloat64()[bad];
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
        bool f32 = computeFloat32 ?? (q.DType != NpyDType.Float64 && k.DType != NpyDType.Float64 && v.DType != NpyDType.Float64);
        int size = f32 ? 4 : 8;
        // Converted copies for the compute precision (a file already in it is used as is).
        long converted = 0;
        foreach (var h in new[] { q, k, v })
            if ((h.DType != NpyDType.Float64) != f32 || h.DType == NpyDType.Float16) converted += h.Count * size;
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
