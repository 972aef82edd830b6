using System.Numerics;
using FastAttention.IO;

namespace FastAttention.Cli.Infrastructure;

/// <summary>The element type attention is computed in.</summary>
internal enum Precision { F16, F32, F64 }

/// <summary>
/// Q, K, V loaded from .npy files: 2-D [n, d], 3-D [h, n, d] or 4-D [b, h, n, d]. K and V may have fewer heads than Q
/// (grouped-query / multi-query attention: h_kv dividing h_q); the batch dimension must agree.
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
    public bool AllFloat16 => Q.IsFloat16 && K.IsFloat16 && V.IsFloat16;

    /// <summary>"(2, 8, 128, 64)" for messages.</summary>
    public static string Shape(NpyArray a) => "(" + string.Join(", ", a.Shape) + ")";

    public static AttentionFiles Load(string q, string k, string v)
    {
        var qa = LoadFloat(q, "--q"); var ka = LoadFloat(k, "--k"); var va = LoadFloat(v, "--v");
        if (qa.Shape.Count != ka.Shape.Count || qa.Shape.Count != va.Shape.Count)
            throw new UsageException($"Q, K and V must have the same rank (got {qa.Shape.Count}-D, {ka.Shape.Count}-D, {va.Shape.Count}-D).");
        int r = qa.Shape.Count;
        for (int i = 0; i < r - 2; i++)
            if (ka.Shape[i] != va.Shape[i])
                throw new UsageException($"--v: K and V must agree on the batch/head dimensions (K {Shape(ka)}, V {Shape(va)}).");
        if (r == 4 && qa.Shape[0] != ka.Shape[0])
            throw new UsageException($"--k: Q and K must agree on the batch dimension (Q {Shape(qa)}, K {Shape(ka)}).");
        int batch = r == 4 ? qa.Shape[0] : 1;
        int hq = r >= 3 ? qa.Shape[r - 3] : 1, hkv = r >= 3 ? ka.Shape[r - 3] : 1;
        if (hq % hkv != 0)
            throw new UsageException($"--k: K has {hkv} heads, which does not divide Q's {hq} (grouped-query attention needs h_q a multiple of h_kv; Q {Shape(qa)}, K {Shape(ka)}).");
        if (qa.Shape[^1] != ka.Shape[^1])
            throw new UsageException($"Q and K must have the same head dimension d (Q {Shape(qa)} has d = {qa.Shape[^1]}, K {Shape(ka)} has d = {ka.Shape[^1]}).");
        if (ka.Shape[^2] != va.Shape[^2])
            throw new UsageException($"K and V must have the same number of keys m (K {Shape(ka)} has m = {ka.Shape[^2]}, V {Shape(va)} has m = {va.Shape[^2]}).");
        return new AttentionFiles { Q = qa, K = ka, V = va, Leading = qa.Shape.Take(r - 2).ToArray(), Batch = batch, QueryHeads = hq, KvHeadsPerBatch = hkv };
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
            return (AttentionProblem<T>)(object)new AttentionProblem<float>(Q.ToFloat32(), K.ToFloat32(), V.ToFloat32(), N, M, D, Dv, Heads, scale, causal, mask, KvHeads, Batch);
        if (typeof(T) == typeof(Half))
            return (AttentionProblem<T>)(object)new AttentionProblem<Half>(Q.ToHalf(), K.ToHalf(), V.ToHalf(), N, M, D, Dv, Heads, scale, causal, mask, KvHeads, Batch);
        return (AttentionProblem<T>)(object)new AttentionProblem<double>(Q.ToFloat64(), K.ToFloat64(), V.ToFloat64(), N, M, D, Dv, Heads, scale, causal, mask, KvHeads, Batch);
    }

    private static NpyArray LoadFloat(string path, string option)
    {
        if (!File.Exists(path)) throw new UsageException($"{option}: the file '{path}' does not exist.");
        var a = NpyFile.Read(path);
        if (a.DType is not (NpyDType.Float16 or NpyDType.Float32 or NpyDType.Float64))
            throw new UsageException($"{option}: {path} has dtype {a.DType}; attention inputs must be float16 (<f2), float32 (<f4) or float64 (<f8).");
        if (a.Shape.Count is < 2 or > 4)
            throw new UsageException($"{option}: {path} is {a.Shape.Count}-D; attention inputs must be 2-D [n, d], 3-D [h, n, d] or 4-D [b, h, n, d].");
        if (a.Shape.Any(s => s == 0))
            throw new UsageException($"{option}: {path} has an empty dimension {Shape(a)}.");
        return a;
    }
}
