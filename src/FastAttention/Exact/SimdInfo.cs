using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace FastAttention.Exact;

/// <summary>Which SIMD width the kernels use on this machine, and which widths it can run.</summary>
public static class SimdInfo
{
    /// <summary>Lanes of float32 per vector the kernels use by default: 16 (Vector512), 8 (Vector256), 4 (Vector128) or 1.</summary>
    public static int Float32Lanes =>
        Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : Vector128.IsHardwareAccelerated ? 4 : 1;

    /// <summary>True when vectors of this many float32 lanes (16, 8, 4 or 1) are hardware-accelerated here.</summary>
    public static bool IsSupported(int float32Lanes) => float32Lanes switch
    {
        16 => Vector512.IsHardwareAccelerated,
        8 => Vector256.IsHardwareAccelerated,
        4 => Vector128.IsHardwareAccelerated,
        1 => true,
        _ => false,
    };

    /// <summary>Architectural vector registers: 32 with AVX-512 (EVEX encodings, at every width) and on ARM64, else 16.
    /// Register blocks are sized from this (12 accumulators for 16 registers, 24 for 32).</summary>
    public static int VectorRegisters => Avx512F.IsSupported || AdvSimd.Arm64.IsSupported ? 32 : 16;

    /// <summary>The width a kernel runs: <paramref name="forcedFloat32Lanes"/> when positive (it must be supported), else the widest.</summary>
    /// <exception cref="PlatformNotSupportedException">The forced width is not accelerated on this CPU (never silently narrowed).</exception>
    internal static int Resolve(int forcedFloat32Lanes)
    {
        if (forcedFloat32Lanes <= 0) return Float32Lanes;
        if (forcedFloat32Lanes is not (16 or 8 or 4 or 1))
            throw new ArgumentOutOfRangeException(nameof(forcedFloat32Lanes), $"a SIMD width is 16, 8, 4 or 1 float32 lanes (got {forcedFloat32Lanes}).");
        if (!IsSupported(forcedFloat32Lanes))
            throw new PlatformNotSupportedException($"{Describe(forcedFloat32Lanes)} is not hardware-accelerated on this CPU.");
        return forcedFloat32Lanes;
    }

    /// <summary>The kernel's vector width for people, e.g. "Vector256 (8 × f32, 4 × f64)" or "scalar".</summary>
    public static string Describe() => Describe(Float32Lanes);

    /// <summary>A width in words, e.g. "Vector256 (8 × f32, 4 × f64)".</summary>
    public static string Describe(int float32Lanes) => float32Lanes switch
    {
        16 => "Vector512 (16 × f32, 8 × f64)",
        8 => "Vector256 (8 × f32, 4 × f64)",
        4 => "Vector128 (4 × f32, 2 × f64)",
        _ => "scalar",
    };
}
