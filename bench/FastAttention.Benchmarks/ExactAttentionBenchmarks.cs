using BenchmarkDotNet.Attributes;
using FastAttention.Exact;

namespace FastAttention.Benchmarks;

/// <summary>The exact kernel across n and d, float32 and float64 (all threads), with allocations reported.</summary>
[MemoryDiagnoser]
public class ExactAttentionBenchmarks
{
    private AttentionProblem<float> _f32 = null!;
    private AttentionProblem<double> _f64 = null!;
    private readonly FlashAttention _kernel = new();

    [Params(1024, 4096)]
    public int N { get; set; }

    [Params(16, 64, 128)]
    public int D { get; set; }

    [Params(false, true)]
    public bool Causal { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        double[] Make(int count) { var a = new double[count]; for (int i = 0; i < count; i++) a[i] = 2 * rng.NextDouble() - 1; return a; }
        double[] q = Make(N * D), k = Make(N * D), v = Make(N * D);
        _f64 = new AttentionProblem<double>(q, k, v, N, N, D, D, causal: Causal);
        _f32 = new AttentionProblem<float>(Array.ConvertAll(q, x => (float)x), Array.ConvertAll(k, x => (float)x), Array.ConvertAll(v, x => (float)x), N, N, D, D, causal: Causal);
    }

    [Benchmark(Baseline = true)]
    public float[] Float32() => _kernel.Compute(_f32).Output;

    [Benchmark]
    public double[] Float64() => _kernel.Compute(_f64).Output;
}
