using System.CommandLine;
using System.Numerics;
using FastAttention.Cli.Infrastructure;
using FastAttention.Gradient;
using FastAttention.IO;

namespace FastAttention.Cli.Commands;

/// <summary><c>fastattn backward</c>: dQ, dK, dV of ⟨dO, Attention(Q, K, V)⟩ (FlashAttention-2 style), each written atomically.</summary>
internal static class BackwardCommand
{
    public static Command Create()
    {
        var q = new Option<string>("--q") { Description = "Queries .npy: [n, d], [h, n, d] or [b, h, n, d] (float16, float32 or float64).", Required = true };
        var k = new Option<string>("--k") { Description = "Keys .npy: [m, d] (same leading dims; fewer heads than Q for grouped-query attention).", Required = true };
        var v = new Option<string>("--v") { Description = "Values .npy: [m, dv] (K's leading dims).", Required = true };
        var dO = new Option<string>("--do") { Description = "Upstream gradient dO .npy: the output's shape [.., n, dv].", Required = true };
        var masks = new MaskOptions();
        var scale = new Option<double?>("--scale") { Description = "Logit scale s in exp(s·QKᵀ); default 1/√d." };
        var outDir = new Option<string>("--out-dir") { Description = "Folder for dQ.npy, dK.npy, dV.npy (created if missing).", Required = true };
        var precision = new Option<string?>("--precision") { Description = "Element type: f16 (float32 accumulation), f32 or f64; default from the inputs." };
        var threads = CommonOptions.Threads();
        var cmd = new Command("backward", "Attention backward pass: dQ, dK, dV from dO (recomputed tiles, no n×m matrix).")
            { q, k, v, dO, scale, outDir, precision, threads };
        foreach (var o in masks.All) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            var files = AttentionFiles.Load(r.GetValue(q)!, r.GetValue(k)!, r.GetValue(v)!);
            var (causal, mask, _) = masks.Load(r, files);
            string doPath = r.GetValue(dO)!;
            if (!File.Exists(doPath)) throw new UsageException($"--do: the file '{doPath}' does not exist.");
            var g = NpyFile.Read(doPath);
            if (g.DType is not (NpyDType.Float16 or NpyDType.Float32 or NpyDType.Float64))
                throw new UsageException($"--do: {doPath} has dtype {g.DType}; it must be float16 (<f2), float32 (<f4) or float64 (<f8).");
            if (!g.Shape.SequenceEqual(files.OutputShape))
                throw new UsageException($"--do: {doPath} has shape ({string.Join(", ", g.Shape)}) but the attention output is ({string.Join(", ", files.OutputShape)}).");
            int t = r.GetValue(threads);
            CommonOptions.AtLeast("--threads", t, 0);
            double? s = r.GetValue(scale);
            if (s is { } sv && !double.IsFinite(sv)) throw new UsageException($"--scale must be a finite number (got {sv}).");
            var prec = files.ChoosePrecision(r.GetValue(precision), g.DType == NpyDType.Float64, g.IsFloat16);
            string dir = r.GetValue(outDir)!;
            switch (prec)
            {
                case Precision.F32: Execute(files, RunCommand.Build<float>(files, s, causal, mask), g.ToFloat32(), dir, t); break;
                case Precision.F64: Execute(files, RunCommand.Build<double>(files, s, causal, mask), g.ToFloat64(), dir, t); break;
                default: Execute(files, RunCommand.Build<Half>(files, s, causal, mask), g.ToHalf(), dir, t); break;
            }
            return 0;
        });
        return cmd;
    }

    private static void Execute<T>(AttentionFiles files, AttentionProblem<T> problem, T[] dO, string dir, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var grads = AttentionBackward.Compute(problem, dO, threads);
        Directory.CreateDirectory(dir);
        Write(Path.Combine(dir, "dQ.npy"), grads.DQ.Span, [.. files.Q.Shape]);
        Write(Path.Combine(dir, "dK.npy"), grads.DK.Span, [.. files.K.Shape]);
        Write(Path.Combine(dir, "dV.npy"), grads.DV.Span, [.. files.V.Shape]);
    }

    private static void Write<T>(string path, ReadOnlySpan<T> data, int[] shape) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) NpyFile.Write(path, System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(data), shape);
        else if (typeof(T) == typeof(Half)) NpyFile.Write(path, System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(data), shape);
        else NpyFile.Write(path, System.Runtime.InteropServices.MemoryMarshal.Cast<T, double>(data), shape);
    }
}
