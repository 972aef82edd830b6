using BenchmarkDotNet.Attributes;
using FastAttention.Exact;

namespace FastAttention.Benchmarks;

/// <summary>
/// The exact kernel on the four shapes of issue 9, float32, all threads: prefill (n = m = 4096, d = 64), the exp-bound small
/// head dimensions (n = m = 16384, d = 4 and d = 1) and decode (n = 1, m = 65536, d = 64). The ratios against ONNX Runtime,
/// the exp limit and the memory bandwidth are measured in one run by <c>fastattn bench exact</c>; this suite tracks the
/// kernel's own times and allocations.
/// </summary>
[MemoryDiagnoser]
public class ExactShapeBenchmarks
{
    private AttentionProblem<float> _problem = null!;
    private readonly FlashAttention _kernel = new();

    [Params("prefill n=m=4096 d=64", "small-d n=m=16384 d=4", "small-d n=m=16384 d=1", "decode n=1 m=65536 d=64")]
    public string Shape { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        (int n, int m, int d) = Shape switch
        {
            "prefill n=m=4096 d=64" => (4096, 4096, 64),
            "small-d n=m=16384 d=4" => (16384, 16384, 4),
            "small-d n=m=16384 d=1" => (16384, 16384, 1),
            _ => (1, 65536, 64),
        };
        var rng = new Random(42);
        float[] Make(int count) { var a = new float[count]; for (int i = 0; i < count; i++) a[i] = (float)(2 * rng.NextDouble() - 1); return a; }
        _problem = new AttentionProblem<float>(Make(n * d), Make(m * d), Make(m * d), n, m, d, d);
    }

    [Benchmark]
    public float[] Exact() => _kernel.Compute(_problem).Output;
}

/// <summary>
/// [b, n, h, d] against [b, h, n, d]: the kernel reads the interleaved layout in place (row stride h·d), with no transposing
/// copy; the target is ≥ 0.95× the speed of the contiguous layout.
/// </summary>
public unsafe class StridedLayoutBenchmarks
{
    private const int B = 1, H = 8, N = 1024, D = 64;
    private float[] _q = null!, _k = null!, _v = null!, _o = null!;

    [Params(false, true)]
    public bool Interleaved { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(7);
        float[] Make() { var a = new float[B * H * N * D]; for (int i = 0; i < a.Length; i++) a[i] = (float)(2 * rng.NextDouble() - 1); return a; }
        _q = Make(); _k = Make(); _v = Make(); _o = new float[B * H * N * D];
    }

    [Benchmark]
    public float Run()
    {
        fixed (float* q = _q) fixed (float* k = _k) fixed (float* v = _v) fixed (float* o = _o)
        {
            var p = FlashParams<float>.Contiguous(q, k, v, o, null, B * H, N, N, D, D, 1 / Math.Sqrt(D), causal: false);
            if (Interleaved)
            {
                p.Heads = H; p.Batch = B;
                p.QRowStride = p.KRowStride = p.VRowStride = p.ORowStride = H * D;
                p.QHeadStride = p.KHeadStride = p.VHeadStride = p.OHeadStride = D;
                p.QBatchStride = p.KBatchStride = p.VBatchStride = p.OBatchStride = (long)N * H * D;
            }
            FlashKernels.Run(p, Environment.ProcessorCount);
            return o[0];
        }
    }
}
