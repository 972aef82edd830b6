using System.Runtime.Intrinsics;

namespace FastAttention.Exact;

/// <summary>Which SIMD width the exact kernel uses on this machine.</summary>
public static class SimdInfo
{
    /// <summary>Lanes of float32 per vector the kernel uses: 16 (Vector512), 8 (Vector256), 4 (Vector128) or 1.</summary>
    public static int Float32Lanes =>
        Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : Vector128.IsHardwareAccelerated ? 4 : 1;

    /// <summary>The kernel's vector width for people, e.g. "Vector256 (8 × f32, 4 × f64)" or "scalar".</summary>
    public static string Describe() => Float32Lanes switch
    {
        16 => "Vector512 (16 × f32, 8 × f64)",
        8 => "Vector256 (8 × f32, 4 × f64)",
        4 => "Vector128 (4 × f32, 2 × f64)",
        _ => "scalar",
    };
}
