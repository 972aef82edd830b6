using System.Numerics;

namespace FastAttention.Tests.TestSupport;

/// <summary>Seeded masked, grouped-query problems in any element type, and the masks transformer models use.</summary>
public static class MaskedData
{
    /// <summary>Q [batch·hq, n, d], K/V [batch·hkv, m, d|dv], entries uniform in [−bound, bound] (rounded to T).</summary>
    public static AttentionProblem<T> Problem<T>(int batch, int hq, int hkv, int n, int m, int d, int dv, int seed,
        bool causal = false, AttentionMask? mask = null, double bound = 1, double? scale = null)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var q = Convert<T>(TestData.Uniform(batch * hq * n * d, bound, seed));
        var k = Convert<T>(TestData.Uniform(batch * hkv * m * d, bound, seed + 1));
        var v = Convert<T>(TestData.Uniform(batch * hkv * m * dv, bound, seed + 2));
        return new AttentionProblem<T>(q, k, v, n, m, d, dv, batch * hq, scale, causal, mask, batch * hkv, batch);
    }

    public static T[] Convert<T>(double[] a) where T : unmanaged, IBinaryFloatingPointIeee754<T> => Array.ConvertAll(a, T.CreateTruncating);

    /// <summary>A seeded random boolean mask of the given broadcast shape, about <paramref name="density"/> true.</summary>
    public static BroadcastTensor<bool> BooleanMask(int[] shape, double density, int seed)
    {
        var rng = new Random(seed);
        var data = new bool[shape.Aggregate(1, (a, b) => a * b)];
        for (int i = 0; i < data.Length; i++) data[i] = rng.NextDouble() < density;
        return new BroadcastTensor<bool>(data, shape);
    }

    /// <summary>An ALiBi bias −slope_h·|i − j| of shape [1, h, n, m].</summary>
    public static BroadcastTensor<double> Alibi(int h, int n, int m)
    {
        var data = new double[h * n * m];
        for (int hh = 0; hh < h; hh++)
        {
            double slope = Math.Pow(2, -8.0 * (hh + 1) / h);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < m; j++) data[(hh * n + i) * m + j] = -slope * Math.Abs(i - j);
        }
        return new BroadcastTensor<double>(data, 1, h, n, m);
    }

    /// <summary>A seeded random bias of the given broadcast shape, uniform in [−bound, bound].</summary>
    public static BroadcastTensor<double> RandomBias(int[] shape, double bound, int seed) =>
        new(TestData.Uniform(shape.Aggregate(1, (a, b) => a * b), bound, seed), shape);

    /// <summary>The same problem with K and V repeated per query head (multi-head attention with copies).</summary>
    public static AttentionProblem<T> Replicated<T>(AttentionProblem<T> p) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int g = p.GroupSize, m = p.M, d = p.D, dv = p.Dv;
        var k = new T[p.Heads * m * d];
        var v = new T[p.Heads * m * dv];
        for (int h = 0; h < p.Heads; h++)
        {
            p.K.Span.Slice(h / g * m * d, m * d).CopyTo(k.AsSpan(h * m * d));
            p.V.Span.Slice(h / g * m * dv, m * dv).CopyTo(v.AsSpan(h * m * dv));
        }
        return new AttentionProblem<T>(p.Q, k, v, p.N, m, d, dv, p.Heads, p.Scale, p.Causal, p.Mask, p.Heads, p.Batch);
    }

    /// <summary>max |a − b| with NaN counting as ∞.</summary>
    public static double MaxAbsDiff<T>(ReadOnlySpan<T> a, ReadOnlySpan<double> b) where T : unmanaged, INumberBase<T> => TestData.MaxAbsDiff(a, b);
}
