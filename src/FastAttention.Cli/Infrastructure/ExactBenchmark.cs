using FastAttention.Exact;

namespace FastAttention.Cli.Infrastructure;

/// <summary>The measurements behind <c>fastattn bench exact</c>.</summary>
internal static class ExactBenchmark
{
    /// <summary>Timed runs per contender; the fastest counts (the machine may be shared).</summary>
    private const int DefaultRepeats = 7;

    public static BenchExactReport Run(int n, int m, int d, int threads, bool f32, bool causal)
    {
        var q = Instances.Matrix(n, d, 1, 11, Distribution.Normal);
        var k = Instances.Matrix(m, d, 1, 12, Distribution.Normal);
        var v = Instances.Matrix(m, d, 1, 13, Distribution.Normal);
        double flops = (causal ? 2.0 : 4.0) * n * m * d;
        int Repeats = flops > 1e11 ? 2 : DefaultRepeats; // minutes-long problems: fewer repeats
        var settings = new AttentionSettings { Threads = threads };
        var alg = new FlashAttention();
        double seconds;
        long allocated;
        if (f32)
        {
            var p = new AttentionProblem<float>(Instances.ToFloat32(q), Instances.ToFloat32(k), Instances.ToFloat32(v), n, m, d, d, 1, null, causal);
            alg.Compute(p, settings); // warm-up (JIT, tiered compilation)
            long before = GC.GetTotalAllocatedBytes(true);
            seconds = Measure.BestSeconds(() => alg.Compute(p, settings), Repeats);
            allocated = (GC.GetTotalAllocatedBytes(true) - before) / Repeats - (long)n * d * sizeof(float);
        }
        else
        {
            var p = new AttentionProblem<double>(q, k, v, n, m, d, d, 1, null, causal);
            alg.Compute(p, settings);
            long before = GC.GetTotalAllocatedBytes(true);
            seconds = Measure.BestSeconds(() => alg.Compute(p, settings), Repeats);
            allocated = (GC.GetTotalAllocatedBytes(true) - before) / Repeats - (long)n * d * sizeof(double);
        }
        double gflops = flops / seconds / 1e9;
        double peak = FmaPeak.MeasureGflops(threads, f32);
        // The peer: ONNX Runtime's CPU MultiHeadAttention (float32 only; causal only for n = m, where its
        // bottom-right alignment equals PyTorch's top-left one).
        double? onnxSeconds = null, onnxError = null;
        // ORT materialises the n×m score matrix: skip it beyond 2 GiB of scores.
        if (f32 && (!causal || n == m) && (long)n * m * sizeof(float) <= 2L << 30)
        {
            float[] qf = Instances.ToFloat32(q), kf = Instances.ToFloat32(k), vf = Instances.ToFloat32(v);
            using var peer = new OnnxAttentionPeer(n, m, d, d, 1 / Math.Sqrt(d), causal, threads);
            float[] ours = alg.Compute(new AttentionProblem<float>(qf, kf, vf, n, m, d, d, 1, null, causal), settings).Output;
            float[] theirs = peer.Run(qf, kf, vf);
            onnxError = 0;
            for (int i = 0; i < ours.Length; i++) onnxError = Math.Max(onnxError.Value, Math.Abs(ours[i] - theirs[i]));
            peer.Run(qf, kf, vf);
            onnxSeconds = Measure.BestSeconds(() => peer.Run(qf, kf, vf), Repeats);
        }
        return new BenchExactReport(n, m, d, threads, f32 ? "f32" : "f64", causal, seconds, gflops, peak, gflops / peak,
            onnxSeconds, onnxSeconds / seconds, onnxError, allocated);
    }
}
