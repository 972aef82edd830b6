using FastAttention.Exact;

namespace FastAttention.Tests.TestSupport;

/// <summary>A theory that runs a kernel at a forced SIMD width: skipped, with the reason, on a CPU that lacks that width
/// (the kernels throw rather than silently run a narrower one, so the test would otherwise fail, not pass falsely).</summary>
public sealed class SimdTheoryAttribute : TheoryAttribute
{
    public SimdTheoryAttribute(int float32Lanes)
    {
        if (!SimdInfo.IsSupported(float32Lanes))
            Skip = $"this CPU does not accelerate {SimdInfo.Describe(float32Lanes)}";
    }
}
