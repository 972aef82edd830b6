using System.Diagnostics;
using FastAttention.Exact;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// The measurements behind <c>fastattn bench exact</c>. After a warm-up of both peers (at least 3 calls each and 0.3 s,
/// so the JIT has tiered the kernel up), each of the <c>repeats</c> rounds times the exact kernel once and ONNX Runtime
/// once (where it can run the shape), each after 100 ms idle, and one short run of each machine limit (FMA peak, exp limit, STREAM
/// triad bandwidth), interleaved, so all of them see the same moments of a shared machine. The kernel's and ORT's figures
/// are the median of their runs (with min and max); each limit is the best of its runs.
/// </summary>
internal static class ExactBenchmark
{
    public const int DefaultRepeats = 5;

    /// <summary>Idle time before each timed run of either peer (see <see cref="Run"/>).</summary>
    public const int QuietMilliseconds = 100;

    /// <param name="bound">Entry bound of Q and K (normal entries of standard deviation bound/3, clamped): large logits move the
    /// online softmax's reference often, which the kernel pays for in redone exponentials.</param>
    public static BenchExactReport Run(int n, int m, int d, int threads, bool f32, bool causal, int repeats = DefaultRepeats, double bound = 1)
    {
        var q = Instances.Matrix(n, d, bound, 11, Distribution.Normal);
        var k = Instances.Matrix(m, d, bound, 12, Distribution.Normal);
        var v = Instances.Matrix(m, d, 1, 13, Distribution.Normal);
        // Visible (query, key) pairs: Σᵢ min(i + 1, m) under the causal mask; 4d flops and one exp each.
        double pairs = !causal ? (double)n * m : n <= m ? (double)n * (n + 1) / 2 : (double)m * (m + 1) / 2 + (double)(n - m) * m;
        double flops = 4.0 * d * pairs;
        int elementBytes = f32 ? sizeof(float) : sizeof(double);
        double bytesMoved = (double)elementBytes * ((long)n * d + (long)m * d + (long)m * d + (long)n * d); // Q, K, V, O once
        var settings = new AttentionSettings { Threads = threads };
        var alg = new FlashAttention();
        Action kernel;
        Func<IReadOnlyList<KeyValuePair<string, object?>>> plan;
        long allocated;
        float[]? ours = null;
        if (f32)
        {
            var p = new AttentionProblem<float>(Instances.ToFloat32(q), Instances.ToFloat32(k), Instances.ToFloat32(v), n, m, d, d, 1, null, causal);
            var first = alg.Compute(p, settings); // warm-up (JIT, tiered compilation)
            ours = first.Output;
            plan = () => first.Certificate.Parameters!.Describe();
            allocated = Allocated(() => alg.Compute(p, settings), (long)n * d * sizeof(float));
            kernel = () => alg.Compute(p, settings);
        }
        else
        {
            var p = new AttentionProblem<double>(q, k, v, n, m, d, d, 1, null, causal);
            var first = alg.Compute(p, settings);
            plan = () => first.Certificate.Parameters!.Describe();
            allocated = Allocated(() => alg.Compute(p, settings), (long)n * d * sizeof(double));
            kernel = () => alg.Compute(p, settings);
        }

        // The peer: ONNX Runtime's CPU MultiHeadAttention (float32 only; causal only for n = m, where its bottom-right
        // alignment equals PyTorch's top-left one). Its causal path materialises the n×m scores: skip beyond 2 GiB.
        OnnxAttentionPeer? peer = null;
        double? onnxError = null;
        float[] qf = Instances.ToFloat32(q), kf = Instances.ToFloat32(k), vf = Instances.ToFloat32(v);
        if (f32 && (!causal || n == m) && (long)n * m * sizeof(float) <= 2L << 30)
        {
            peer = new OnnxAttentionPeer(n, m, d, d, 1 / Math.Sqrt(d), causal, threads);
            float[] theirs = peer.Run(qf, kf, vf);
            onnxError = 0;
            for (int i = 0; i < ours!.Length; i++) onnxError = Math.Max(onnxError.Value, Math.Abs(ours[i] - theirs[i]));
        }

        var bandwidth = new Bandwidth(threads);
        FmaPeak.MeasureOnce(threads, f32, 0.01); ExpLimit.MeasureOnce(threads, f32, 0.01); bandwidth.MeasureOnce(); // warm-up
        // Steady state before timing, for both: the JIT tiers a method up after 30 calls (and only once 100 ms pass with no
        // new tier-0 code), so a few calls time code still being compiled; ONNX Runtime's native kernels need no such
        // warm-up, but its thread pool and caches do. At least 3 calls each, then until 0.3 s have passed (at most 40).
        var warm = Stopwatch.StartNew();
        for (int c = 0; c < 40 && (c < 3 || warm.Elapsed.TotalSeconds < 0.3); c++)
        {
            kernel();
            peer?.Run(qf, kf, vf);
        }
        var ourTimes = new List<double>();
        var onnxTimes = new List<double>();
        double peak = 0, expLimit = 0, bandwidthGBs = 0;
        for (int r = 0; r < repeats; r++)
        {
            // Each timed run starts after a quiet gap: ONNX Runtime's worker threads spin for a while after a Run, and a
            // kernel started right after it shared the cores with them (measured: 69–70 ms against 43–47 ms with a
            // 200 ms gap, n = m = 4096, d = 64, 2 threads); the same gap precedes ORT's run, for symmetry.
            Thread.Sleep(QuietMilliseconds);
            ourTimes.Add(Seconds(kernel));
            Thread.Sleep(QuietMilliseconds);
            if (peer is not null) onnxTimes.Add(Seconds(() => peer.Run(qf, kf, vf)));
            peak = Math.Max(peak, FmaPeak.MeasureOnce(threads, f32));
            expLimit = Math.Max(expLimit, ExpLimit.MeasureOnce(threads, f32));
            bandwidthGBs = Math.Max(bandwidthGBs, bandwidth.MeasureOnce());
        }
        peer?.Dispose();
        var mine = Spread.Of(ourTimes);
        Spread? onnx = onnxTimes.Count > 0 ? Spread.Of(onnxTimes) : null;
        double seconds = mine.Median;
        double gflops = flops / seconds / 1e9, logitsPerSecond = pairs / seconds / 1e9, gbs = bytesMoved / seconds / 1e9;
        return new BenchExactReport(n, m, d, threads, f32 ? "f32" : "f64", causal, bound, repeats, seconds, mine.Min, mine.Max,
            gflops, peak, gflops / peak, expLimit, logitsPerSecond, logitsPerSecond / expLimit, bandwidthGBs, gbs, gbs / bandwidthGBs,
            onnx?.Median, onnx?.Min, onnx?.Max, onnx?.Median / seconds, onnxError, allocated, [.. plan()]);
    }

    private static double Seconds(Action run)
    {
        var sw = Stopwatch.StartNew();
        run();
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>Bytes one run allocates beyond its output.</summary>
    private static long Allocated(Action run, long outputBytes)
    {
        long before = GC.GetTotalAllocatedBytes(true);
        run();
        return GC.GetTotalAllocatedBytes(true) - before - outputBytes;
    }
}
