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

    public static AttentionFiles Load(string q, string k, string v)
    {
        var qa = LoadFloat(q, "--q"); var ka = LoadFloat(k, "--k"); var va = LoadFloat(v, "--v");
        if (qa.Shape.Count != ka.Shape.Count || qa.Shape.Count != va.Shape.Count)
            throw new UsageException($"Q, K and V must have the same rank (got {qa.Shape.Count}-D, {ka.Shape.Count}-D, {va.Shape.Count}-D).");
        int r = qa.Shape.Count;
        for (int i = 0; i < r - 2; i++)
            if (qa.Shape[i] != ka.Shape[i] || qa.Shape[i] != va.Shape[i])
                throw new UsageException($"Q, K and V must agree on the batch/head dimensions (Q {Shape(qa)}, K {Shape(ka)}, V {Shape(va)}).");
        if (qa.Shape[^1] != ka.Shape[^1])
            throw new UsageException($"Q and K must have the same head dimension d (Q {Shape(qa)} has d = {qa.Shape[^1]}, K {Shape(ka)} has d = {ka.Shape[^1]}).");
        if (ka.Shape[^2] != va.Shape[^2])
            throw new UsageException($"K and V must have the same number of keys m (K {Shape(ka)} has m = {ka.Shape[^2]}, V {Shape(va)} has m = {va.Shape[^2]}).");
        return new AttentionFiles { Q = qa, K = ka, V = va, Leading = qa.Shape.Take(r - 2).ToArray() };
    }

    public int[] OutputShape => [.. Leading, N, Dv];

    public AttentionProblem<T> Problem<T>(double? scale, bool causal) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (typeof(T) == typeof(float))
            return (AttentionProblem<T>)(object)new AttentionProblem<float>(Q.ToFloat32(), K.ToFloat32(), V.ToFloat32(), N, M, D, Dv, Heads, scale, causal);
        return (AttentionProblem<T>)(object)new AttentionProblem<double>(Q.ToFloat64(), K.ToFloat64(), V.ToFloat64(), N, M, D, Dv, Heads, scale, causal);
    }

    private static NpyArray LoadFloat(string path, string option)
    {
        if (!File.Exists(path)) throw new UsageException($"{option}: the file '{path}' does not exist.");
        var a = NpyFile.Read(path);
        if (a.DType is not (NpyDType.Float32 or NpyDType.Float64))
            throw new UsageException($"{option}: {path} has dtype {a.DType}; attention inputs must be float32 (<f4) or float64 (<f8).");
        if (a.Shape.Count is < 2 or > 4)
            throw new UsageException($"{option}: {path} is {a.Shape.Count}-D; attention inputs must be 2-D [n, d], 3-D [h, n, d] or 4-D [b, h, n, d].");
        if (a.Shape.Any(s => s == 0))
            throw new UsageException($"{option}: {path} has an empty dimension {Shape(a)}.");
        return a;
    }

    private static string Shape(NpyArray a) => "(" + string.Join(", ", a.Shape) + ")";
}
