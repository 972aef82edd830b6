using System.CommandLine;
using FastAttention.IO;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// The mask options <c>run</c> and <c>backward</c> share: --causal, --causal-align, --key-lengths, --mask, --bias,
/// --window. Every file is checked against the inputs' shapes (and its dtype) before anything is computed; a mismatch
/// names the option and both shapes.
/// </summary>
internal sealed class MaskOptions
{
    public Option<bool> Causal { get; } = new("--causal") { Description = "Causal mask (query i sees keys j ≤ i, or j ≤ i + m − n with --causal-align bottom-right)." };
    public Option<string?> Align { get; } = new("--causal-align") { Description = "Where the causal diagonal (and window) sits when n ≠ m: top-left (PyTorch is_causal, default) or bottom-right (KV cache)." };
    public Option<string?> KeyLengths { get; } = new("--key-lengths") { Description = "Per-batch key lengths .npy, int32 or int64 [b]: keys j ≥ len[b] are padding (never read)." };
    public Option<string?> Mask { get; } = new("--mask") { Description = "Boolean mask .npy (|b1), broadcastable to [b, h, n, m]: true = the pair takes part." };
    public Option<string?> Bias { get; } = new("--bias") { Description = "Additive logit bias .npy, float32 or float64, broadcastable to [b, h, n, m] (−inf hides a pair)." };
    public Option<int?> Window { get; } = new("--window") { Description = "Sliding window w: query i sees keys i − w < j ≤ i (in the chosen alignment; implies the causal bound)." };

    public IEnumerable<Option> All => [Causal, Align, KeyLengths, Mask, Bias, Window];

    /// <summary>The mask files given, with their options (for the input/output path checks before any work).</summary>
    public IEnumerable<(string Option, string Path)> Paths(ParseResult r)
    {
        if (r.GetValue(KeyLengths) is { } l) yield return ("--key-lengths", l);
        if (r.GetValue(Mask) is { } m) yield return ("--mask", m);
        if (r.GetValue(Bias) is { } b) yield return ("--bias", b);
    }

    /// <summary>The causal flag and mask the options describe, validated against <paramref name="files"/>.</summary>
    public (bool Causal, AttentionMask Mask, bool BiasIsFloat64) Load(ParseResult r, AttentionFiles files)
    {
        bool causal = r.GetValue(Causal);
        int? window = r.GetValue(Window);
        if (window is { } w && w < 1) throw new UsageException($"--window must be at least 1 (got {w}).");
        var alignment = r.GetValue(Align) switch
        {
            null or "top-left" => CausalAlignment.TopLeft,
            "bottom-right" => CausalAlignment.BottomRight,
            var s => throw new UsageException($"--causal-align must be top-left or bottom-right (got '{s}')."),
        };
        if (r.GetValue(Align) is not null && !causal && window is null)
            throw new UsageException("--causal-align needs --causal or --window (it places their diagonal).");
        int[] full = [files.Batch, files.QueryHeads, files.N, files.M];
        string fullText = $"[b, h, n, m] = ({string.Join(", ", full)})";
        ReadOnlyMemory<int> lengths = default;
        if (r.GetValue(KeyLengths) is { } lp)
        {
            var a = Read(lp, "--key-lengths");
            if (a.DType is not (NpyDType.Int32 or NpyDType.Int64))
                throw new UsageException($"--key-lengths: {lp} has dtype {a.DType}; key lengths must be int32 (<i4) or int64 (<i8).");
            if (a.Shape.Count != 1 || a.Shape[0] != files.Batch)
                throw new UsageException($"--key-lengths: {lp} has shape {AttentionFiles.Shape(a)} but the batch is ({files.Batch}) (Q {AttentionFiles.Shape(files.Q)}).");
            var values = a.ToFloat64();
            var l = new int[values.Length];
            for (int b = 0; b < l.Length; b++)
            {
                if (values[b] < 0 || values[b] > files.M)
                    throw new UsageException($"--key-lengths: {lp} gives length {values[b]} for batch element {b}, outside [0, m = {files.M}].");
                l[b] = (int)values[b];
            }
            lengths = l;
        }
        BroadcastTensor<bool>? boolMask = null;
        if (r.GetValue(Mask) is { } mp)
        {
            var a = Read(mp, "--mask");
            if (a.DType != NpyDType.Bool) throw new UsageException($"--mask: {mp} has dtype {a.DType}; the mask must be boolean (|b1).");
            CheckBroadcast("--mask", mp, a, full, fullText);
            var values = a.ToFloat64();
            var data = new bool[values.Length];
            for (int i = 0; i < data.Length; i++) data[i] = values[i] != 0;
            boolMask = new BroadcastTensor<bool>(data, [.. a.Shape]);
        }
        BroadcastTensor<double>? bias = null;
        bool biasF64 = false;
        if (r.GetValue(Bias) is { } bp)
        {
            var a = Read(bp, "--bias");
            if (a.DType is not (NpyDType.Float32 or NpyDType.Float64))
                throw new UsageException($"--bias: {bp} has dtype {a.DType}; the bias must be float32 (<f4) or float64 (<f8).");
            CheckBroadcast("--bias", bp, a, full, fullText);
            bias = new BroadcastTensor<double>(a.ToFloat64(), [.. a.Shape]);
            biasF64 = a.DType == NpyDType.Float64;
        }
        var mask = new AttentionMask { KeyLengths = lengths, BooleanMask = boolMask, Bias = bias, Window = window, CausalAlignment = alignment };
        return (causal, mask, biasF64);
    }

    private static NpyArray Read(string path, string option) => AttentionFiles.Read(path, option, checkFinite: false);

    private static void CheckBroadcast(string option, string path, NpyArray a, int[] full, string fullText)
    {
        if (a.Shape.Count is < 1 or > 4)
            throw new UsageException($"{option}: {path} has shape {AttentionFiles.Shape(a)}, which does not broadcast to {fullText}.");
        for (int i = 0; i < a.Shape.Count; i++)
        {
            int dim = a.Shape[a.Shape.Count - 1 - i], want = full[3 - i];
            if (dim != 1 && dim != want)
                throw new UsageException($"{option}: {path} has shape {AttentionFiles.Shape(a)}, which does not broadcast to {fullText}.");
        }
    }
}
