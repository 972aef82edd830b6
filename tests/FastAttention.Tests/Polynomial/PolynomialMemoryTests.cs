using FastAttention.Polynomial;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Polynomial;

[CollectionDefinition(nameof(PolynomialMemoryCollection), DisableParallelization = true)]
public sealed class PolynomialMemoryCollection;

/// <summary>Runs alone (no other test allocating at the same time), so the process-wide allocation count is ours.</summary>
[Collection(nameof(PolynomialMemoryCollection))]
public class PolynomialMemoryTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Never_allocates_anything_like_an_n_by_m_or_n_by_r_buffer(bool causal)
    {
        const int n = 20000, m = 18000, d = 2;
        var p = TestData.Problem(n, m, d, d, 1, 81, 0.5, causal);
        var alg = new PolynomialAttention();
        var settings = new AttentionSettings { Epsilon = 1e-6, Threads = 2 };
        var first = alg.Compute(p, settings); // JIT and first-touch allocations outside the measurement
        int r = first.Certificate.ParametersOf<PolynomialParameters>().Rank;
        long before = GC.GetTotalAllocatedBytes(true);
        alg.Compute(p, settings);
        long allocated = GC.GetTotalAllocatedBytes(true) - before;
        long output = (long)n * d * sizeof(double);
        // n×m doubles would be 2.9 GB and n×r doubles (r ≥ 21 here) ≥ 3.4 MB; we allow the output plus 3 MB of scratch.
        Assert.True(r >= 21, $"rank {r}");
        Assert.True(allocated < output + 3_000_000, $"allocated {allocated:N0} bytes (output {output:N0}, n×r = {8L * n * r:N0})");
    }
}
