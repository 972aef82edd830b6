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
            var context = CliContext.Current;
            string qPath = r.GetValue(q)!, kPath = r.GetValue(k)!, vPath = r.GetValue(v)!, doPath = r.GetValue(dO)!;
            int t = CommonOptions.ThreadCount(r.GetValue(threads));
            double? s = r.GetValue(scale);
            if (s is { } sv) CommonOptions.Finite("--scale", sv);
            string? precisionText = r.GetValue(precision);
            bool requestedF16 = precisionText is "f16" or "float16";
            bool? requestedF32 = precisionText is null ? null : requestedF16 || CommonOptions.IsFloat32(precisionText, false, "f16, f32 or f64");
            using var outputs = new OutputFiles();
            outputs.Input("--q", qPath); outputs.Input("--k", kPath); outputs.Input("--v", vPath); outputs.Input("--do", doPath);
            foreach (var (option, path) in masks.Paths(r)) outputs.Input(option, path);
            var paths = outputs.Folder("--out-dir", r.GetValue(outDir)!, "dQ.npy", "dK.npy", "dV.npy");
            var gh = AttentionFiles.Header(doPath, "--do");
            var files = AttentionFiles.Load(qPath, kPath, vPath, requestedF32, extraOutputBytes: gh.MemoryBytes);
            var (causal, mask, _) = masks.Load(r, files);
            files.CheckKeysFinite(mask);
            if (!gh.Shape.SequenceEqual(files.OutputShape))
                throw new UsageException($"--do: {doPath} has shape ({string.Join(", ", gh.Shape)}) but the attention output is ({string.Join(", ", files.OutputShape)}).");
            var g = AttentionFiles.Read(doPath, "--do");
            bool gF64 = g.DType == NpyDType.Float64;
            bool anyF64 = files.AnyFloat64 || gF64, allF64 = files.AllFloat64 && gF64;
            bool f16 = requestedF16 || (precisionText is null && files.AllFloat16 && g.IsFloat16);
            bool f32 = requestedF32 ?? !anyF64;
            if (requestedF32 is null && anyF64 && !allF64)
                context.Note("the inputs mix float32 and float64: computing in float64 and writing float64 (--precision f32 for float32).");
            if (f16) Execute(files, RunCommand.Build<Half>(files, s, causal, mask), AttentionFiles.Float16(g, "--do"), outputs, paths, t);
            else if (f32) Execute(files, RunCommand.Build<float>(files, s, causal, mask), AttentionFiles.Float32(g, "--do"), outputs, paths, t);
            else Execute(files, RunCommand.Build<double>(files, s, causal, mask), g.ToFloat64(), outputs, paths, t);
            outputs.Commit();
            return 0;
        });
        return cmd;
    }

    private static void Execute<T>(AttentionFiles files, AttentionProblem<T> problem, T[] dO, OutputFiles outputs, string[] paths, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var grads = LongWork.Run("attention backward", _ => AttentionBackward.Compute(problem, dO, threads));
        CliContext.Current.ThrowIfCancelled();
        RequireFinite(grads.DQ.Span); RequireFinite(grads.DK.Span); RequireFinite(grads.DV.Span);
        Write(outputs, paths[0], grads.DQ.Span, [.. files.Q.Shape]);
        Write(outputs, paths[1], grads.DK.Span, [.. files.K.Shape]);
        Write(outputs, paths[2], grads.DV.Span, [.. files.V.Shape]);
    }

    private static void RequireFinite<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) CommonOptions.RequireFinite("backward", System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(values));
        else CommonOptions.RequireFinite("backward", System.Runtime.InteropServices.MemoryMarshal.Cast<T, double>(values));
    }

    private static void Write<T>(OutputFiles outputs, string path, ReadOnlySpan<T> data, int[] shape) where T : unmanaged
    {
        if (typeof(T) == typeof(float)) outputs.WriteNpy(path, System.Runtime.InteropServices.MemoryMarshal.Cast<T, float>(data), shape);
        else if (typeof(T) == typeof(Half)) outputs.WriteNpy(path, System.Runtime.InteropServices.MemoryMarshal.Cast<T, Half>(data), shape);
        else outputs.WriteNpy(path, System.Runtime.InteropServices.MemoryMarshal.Cast<T, double>(data), shape);
    }
}
