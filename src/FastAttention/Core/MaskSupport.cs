using System.Numerics;

namespace FastAttention;

/// <summary>Marks an approximate algorithm that honours both causal alignments (<see cref="CausalAlignment"/>).</summary>
public interface ISupportsCausalAlignment;

/// <summary>
/// The one place that refuses problem semantics an approximate algorithm cannot honour, before any work. Key lengths
/// and grouped-query heads need nothing here: they only change which keys exist and which K/V head a query head
/// reads, which <see cref="AttentionHead{T}"/> already expresses (its K, V spans and <see cref="AttentionHead{T}.M"/>).
/// </summary>
internal static class MaskSupport
{
    /// <summary>Why <paramref name="algorithm"/> cannot serve <paramref name="problem"/>'s semantics, or null when it can.</summary>
    public static Refusal? Refusal<T>(AttentionAlgorithm algorithm, AttentionProblem<T> problem) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        try { Check(algorithm, problem); return null; }
        catch (AttentionRefusedException r) { return r.Refusal; }
    }

    private static void Check<T>(AttentionAlgorithm algorithm, AttentionProblem<T> problem) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (algorithm.IsExact) return;
        var mask = problem.Mask;
        if (typeof(T) == typeof(Half))
            ThrowHelper.Refused(algorithm.Name, RefusalReason.Unsupported,
                "float16 problems are served by 'exact' (float32 accumulation); approximate algorithms certify float32 or float64 outputs — convert the inputs to float32.", "exact");
        if (mask.HasElementMask)
        {
            string what = string.Join(", ", new[]
            {
                mask.BooleanMask is not null ? $"a boolean mask {mask.BooleanMask.ShapeText}" : null,
                mask.Bias is not null ? $"a bias {mask.Bias.ShapeText}" : null,
                mask.Window is { } w ? $"a window of {w}" : null,
            }.Where(x => x is not null));
            ThrowHelper.Refused(algorithm.Name, RefusalReason.MaskUnsupported,
                $"{what} cannot be honoured: the method sums over all keys (or a prefix) at once, not over an arbitrary set per query; use 'exact'.", "exact");
        }
        if (problem.Causal && mask.CausalAlignment == CausalAlignment.BottomRight && algorithm is not ISupportsCausalAlignment)
            ThrowHelper.Refused(algorithm.Name, RefusalReason.CausalUnsupported,
                "the bottom-right causal alignment is not supported by this method; use 'exact' or 'polynomial'.", "exact", "polynomial");
    }
}
