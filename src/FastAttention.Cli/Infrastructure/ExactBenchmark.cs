using FastAttention.Exact;

namespace FastAttention.Cli.Infrastructure;

/// <summary>The measurements behind <c>fastattn bench exact</c>.</summary>
internal static class ExactBenchmark
{
    public static List<KeyValuePair<string, object?>> Run(int n, int m, int d, int threads, bool f32, bool causal)
    {
        var q = Instances.Matrix(n, d, 1, 11, Distribution.Normal);
        var k = Instances.Matrix(m, d, 1, 12, Distribution.Normal);
        var v = Instances.Matrix(m, d, 1, 13, Distribution.Normal);
        double flops = (causal ? 2.0 : 4.0) * n * m * d;
        var settings = new AttentionSettings { Threads = threads };
        var alg = new FlashAttention();
        double seconds;
        long allocated;
        if (f32)
        {
            var p = new AttentionProblem<float>(Instances.ToFloat32(q), Instances.ToFloat32(k), Instances.ToFloat32(v), n, m, d, d, 1, null, causal);
            alg.Compute(p, settings); // warm-up (JIT, tiered compilation)
            long before = GC.GetTotalAllocatedBytes(true);
            seconds = Measure.BestSeconds(() => alg.Compute(p, settings), 3);
            allocated = (GC.GetTotalAllocatedBytes(true) - before) / 3 - (long)n * d * sizeof(float);
        }
        else
        {
            var p = new AttentionProblem<double>(q, k, v, n, m, d, d, 1, null, causal);
            alg.Compute(p, settings);
            long before = GC.GetTotalAllocatedBytes(true);
            seconds = Measure.BestSeconds(() => alg.Compute(p, settings), 3);
            allocated = (GC.GetTotalAllocatedBytes(true) - before) / 3 - (long)n * d * sizeof(double);
        }
        double gflops = flops / seconds / 1e9;
        double peak = FmaPeak.MeasureGflops(threads, f32);
        return
        [
            new("n", n), new("m", m), new("d", d), new("threads", threads), new("precision", f32 ? "f32" : "f64"), new("causal", causal),
            new("seconds", seconds), new("gflops", gflops), new("peakGflops", peak), new("fractionOfPeak", gflops / peak),
            new("extraBytesAllocated", allocated),
        ];
    }
}
