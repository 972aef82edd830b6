using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;

namespace FastAttention.Benchmarks;

/// <summary>
/// Issue 15's strided target through the public tensor API (StridedLayoutBenchmarks measures the kernel itself): the same Q, K, V (b = 1, h = 4, n = m = 4096, d = 64, float32, all threads) through
/// <see cref="Attention.Exact{T}(ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, ReadOnlyTensorSpan{T}, TensorSpan{T}, AttentionLayout, Nullable{double}, bool, int, CancellationToken)"/>
/// in [b, h, n, d] (the baseline) and in [b, n, h, d] (row stride h·d, read in place). The ratio of the two means is the
/// target (≥ 0.95× the speed, i.e. a time ratio ≤ 1.05).
/// </summary>
[MemoryDiagnoser]
public class TensorLayoutBenchmarks
{
    private const int B = 1, H = 4, N = 4096, D = 64;
    private float[] _qh = null!, _kh = null!, _vh = null!, _qn = null!, _kn = null!, _vn = null!;
    private readonly float[] _output = new float[B * H * N * D];

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        float[] Make() { var a = new float[B * H * N * D]; for (int i = 0; i < a.Length; i++) a[i] = (float)(2 * rng.NextDouble() - 1); return a; }
        _qh = Make(); _kh = Make(); _vh = Make();
        _qn = ToBnhd(_qh); _kn = ToBnhd(_kh); _vn = ToBnhd(_vh);
    }

    private static float[] ToBnhd(float[] x)
    {
        var r = new float[x.Length];
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++)
                x.AsSpan((h * N + i) * D, D).CopyTo(r.AsSpan((i * H + h) * D));
        return r;
    }

    [Benchmark(Baseline = true, Description = "[b, h, n, d]")]
    public void Bhnd() => Attention.Exact(new ReadOnlyTensorSpan<float>(_qh, [B, H, N, D]), new ReadOnlyTensorSpan<float>(_kh, [B, H, N, D]),
        new ReadOnlyTensorSpan<float>(_vh, [B, H, N, D]), new TensorSpan<float>(_output, [B, H, N, D]), AttentionLayout.Bhnd);

    [Benchmark(Description = "[b, n, h, d] strided")]
    public void Bnhd() => Attention.Exact(new ReadOnlyTensorSpan<float>(_qn, [B, N, H, D]), new ReadOnlyTensorSpan<float>(_kn, [B, N, H, D]),
        new ReadOnlyTensorSpan<float>(_vn, [B, N, H, D]), new TensorSpan<float>(_output, [B, N, H, D]), AttentionLayout.Bnhd);
}
