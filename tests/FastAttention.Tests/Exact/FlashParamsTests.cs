using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Exact;

public class FlashParamsTests
{
    /// <summary>[b, h, n, d] → [b, n, h, d].</summary>
    private static float[] ToBnhd(float[] x, int b, int h, int n, int d)
    {
        var y = new float[x.Length];
        for (int bi = 0; bi < b; bi++)
            for (int hi = 0; hi < h; hi++)
                for (int i = 0; i < n; i++)
                    Array.Copy(x, ((bi * h + hi) * n + i) * d, y, ((bi * n + i) * h + hi) * d, d);
        return y;
    }

    [Theory]
    [InlineData("General", 70, 130, 16, 8)]
    [InlineData("SmallD", 70, 130, 3, 2)]
    [InlineData("Decode", 5, 300, 16, 24)]
    public unsafe void Bnhd_layout_runs_in_place_and_equals_the_bhnd_result_bitwise(string pathName, int n, int m, int d, int dv)
    {
        var path = Enum.Parse<FlashPath>(pathName);
        // The same problem in [b, h, n, d] and in [b, n, h, d] (row stride h·d, head stride d): no transposing copy, the
        // same arithmetic in the same order, so the same bits.
        int b = 2, h = 3;
        var p = FlashAttentionTests.ToFloat32(TestData.Problem(n, m, d, dv, 1.0, seed: 8, heads: b * h));
        float[] q = p.Q.ToArray(), k = p.K.ToArray(), v = p.V.ToArray();
        float[] qs = ToBnhd(q, b, h, n, d), ks = ToBnhd(k, b, h, m, d), vs = ToBnhd(v, b, h, m, dv);
        var oContiguous = new float[b * h * n * dv];
        var oStrided = new float[b * h * n * dv];
        var lseContiguous = new float[b * h * n];
        var lseStrided = new float[b * h * n];
        var tuning = new FlashTuning(Path: path, KeySplits: path == FlashPath.Decode ? 2 : 0);
        fixed (float* pq = q) fixed (float* pk = k) fixed (float* pv = v) fixed (float* po = oContiguous) fixed (float* pl = lseContiguous)
        {
            var c = FlashParams<float>.Contiguous(pq, pk, pv, po, pl, b * h, n, m, d, dv, p.Scale, causal: true);
            FlashKernels.Run(c, threads: 2, tuning);
        }
        fixed (float* pq = qs) fixed (float* pk = ks) fixed (float* pv = vs) fixed (float* po = oStrided) fixed (float* pl = lseStrided)
        {
            var s = new FlashParams<float>
            {
                Q = pq, K = pk, V = pv, O = po, Lse = pl, Batch = b, Heads = h, N = n, M = m, D = d, Dv = dv, Scale = p.Scale, Causal = true,
                QRowStride = h * d, QHeadStride = d, QBatchStride = (long)n * h * d,
                KRowStride = h * d, KHeadStride = d, KBatchStride = (long)m * h * d,
                VRowStride = h * dv, VHeadStride = dv, VBatchStride = (long)m * h * dv,
                ORowStride = h * dv, OHeadStride = dv, OBatchStride = (long)n * h * dv,
                LseHeadStride = n, LseBatchStride = (long)h * n,
            };
            var plan = FlashKernels.Run(s, threads: 2, tuning);
            Assert.Equal(path, plan.Path);
        }
        Assert.True(ToBnhd(oContiguous, b, h, n, dv).AsSpan().SequenceEqual(oStrided), "outputs differ");
        Assert.True(lseContiguous.AsSpan().SequenceEqual(lseStrided), "log-sum-exps differ");
        var causal = new AttentionProblem<float>(q, k, v, n, m, d, dv, b * h, p.Scale, causal: true);
        Assert.True(TestData.MaxAbsDiff(oContiguous, ReferenceAttention.Compute(causal)) <= FlashAttentionTests.Float32Tolerance(d, m, causal.VMax));
    }

    [Fact]
    public void Causal_blocks_are_classified_hidden_partial_or_full()
    {
        var p = new FlashParams<float> { N = 100, M = 80, Causal = true };
        Assert.Equal(BlockVisibility.Full, p.Classify(0, 0, 40, 50, 0, 32));       // keys 0..31 ≤ every row 40..49
        Assert.Equal(BlockVisibility.Partial, p.Classify(0, 0, 40, 50, 32, 64));   // row 40 sees up to 40 only
        Assert.Equal(BlockVisibility.Hidden, p.Classify(0, 0, 10, 20, 32, 64));    // rows ≤ 19 see no key ≥ 32
        Assert.Equal(BlockVisibility.Full, p.Classify(0, 0, 90, 100, 64, 80));     // past m: rows see all 80 keys
        var nc = new FlashParams<float> { N = 10, M = 80 };
        Assert.Equal(BlockVisibility.Full, nc.Classify(0, 0, 0, 10, 64, 80));
        Assert.Equal(BlockVisibility.Hidden, nc.Classify(0, 0, 0, 10, 80, 96));
    }
}
