using System.Numerics;
using System.Runtime.Intrinsics;

namespace FastAttention.Exact;

/// <summary>
/// Exact attention with the FlashAttention-2 kernel (<see cref="FlashKernel{T,TV,TS}"/>): tiles of queries × keys,
/// online softmax, SIMD micro-kernels with FMA (Vector512 where the CPU has AVX-512, else Vector256, else scalar),
/// multi-threaded over query tiles, float32 and float64, causal mask skipping fully masked key blocks.
/// Extreme logits give the correct near-one-hot rows: the max is subtracted before every exp. Should float32
/// logits themselves overflow (|s·q·k| &gt; 3·10³⁸), the affected rows are recomputed in float64.
/// </summary>
public sealed class FlashAttention : AttentionAlgorithm
{
    public override string Name => "exact";
    public override bool IsExact => true;

    /// <summary>Forces a SIMD width (16, 8 or 1 float32 lanes) for tests; 0 = the widest the CPU has.</summary>
    internal int ForcedFloat32Lanes { get; init; }

    protected override unsafe HeadReport ComputeHead<T>(AttentionHead<T> head, Span<T> output, AttentionSettings settings)
    {
        int lanes = ForcedFloat32Lanes > 0 ? ForcedFloat32Lanes : SimdInfo.Float32Lanes;
        using var qh = head.QMemory.Pin();
        using var kh = head.KMemory.Pin();
        using var vh = head.VMemory.Pin();
        fixed (T* o = output)
        {
            var args = (head.N, head.M, head.D, head.Dv, head.Scale, head.Causal, settings.EffectiveThreads);
            if (typeof(T) == typeof(float))
            {
                float* q = (float*)qh.Pointer, k = (float*)kh.Pointer, v = (float*)vh.Pointer, of = (float*)o;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) FlashKernel<float, Vector512<float>, Simd512F>.Run(q, k, v, of, args.N, args.M, args.D, args.Dv, args.Scale, args.Causal, args.EffectiveThreads);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) FlashKernel<float, Vector256<float>, Simd256F>.Run(q, k, v, of, args.N, args.M, args.D, args.Dv, args.Scale, args.Causal, args.EffectiveThreads);
                else FlashKernel<float, float, ScalarSimd<float>>.Run(q, k, v, of, args.N, args.M, args.D, args.Dv, args.Scale, args.Causal, args.EffectiveThreads);
            }
            else
            {
                double* q = (double*)qh.Pointer, k = (double*)kh.Pointer, v = (double*)vh.Pointer, od = (double*)o;
                if (lanes >= 16 && Vector512.IsHardwareAccelerated) FlashKernel<double, Vector512<double>, Simd512D>.Run(q, k, v, od, args.N, args.M, args.D, args.Dv, args.Scale, args.Causal, args.EffectiveThreads);
                else if (lanes >= 8 && Vector256.IsHardwareAccelerated) FlashKernel<double, Vector256<double>, Simd256D>.Run(q, k, v, od, args.N, args.M, args.D, args.Dv, args.Scale, args.Causal, args.EffectiveThreads);
                else FlashKernel<double, double, ScalarSimd<double>>.Run(q, k, v, od, args.N, args.M, args.D, args.Dv, args.Scale, args.Causal, args.EffectiveThreads);
            }
        }
        RecomputeNonFinite(head, output);
        return HeadReport.Exact;
    }

    /// <summary>Rows whose float logits overflowed (only possible for |s·q·k| beyond the type's range) are redone in float64.</summary>
    private static void RecomputeNonFinite<T>(AttentionHead<T> head, Span<T> output) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        double[]? q = null, k = null, v = null;
        double[]? row = null;
        for (int i = 0; i < head.N; i++)
        {
            var oi = output.Slice(i * head.Dv, head.Dv);
            bool bad = false;
            foreach (var x in oi) if (!T.IsFinite(x)) { bad = true; break; }
            if (!bad) continue;
            if (q is null) (q, k, v) = head.ToDouble();
            row ??= new double[head.Dv];
            ReferenceAttention.Row(q, k!, v!, head.M, head.D, head.Dv, head.Scale, head.Causal, i, row);
            for (int c = 0; c < head.Dv; c++) oi[c] = T.CreateTruncating(row[c]);
        }
    }
}
