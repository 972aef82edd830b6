using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace FastAttention.Exact;

/// <summary>
/// Exact attention, streaming (online-softmax) over keys: never an n×m matrix. Multi-threaded over query rows.
/// </summary>
public sealed class FlashAttention : AttentionAlgorithm
{
    public override string Name => "exact";
    public override bool IsExact => true;

    protected override HeadReport ComputeHead<T>(AttentionHead<T> head, Span<T> output, AttentionSettings settings)
    {
        int n = head.N, m = head.M, d = head.D, dv = head.Dv;
        var q = head.QMemory; var k = head.KMemory; var v = head.VMemory;
        double scale = head.Scale; bool causal = head.Causal;
        var outArr = new T[n * dv];
        Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = settings.EffectiveThreads }, i =>
        {
            int visible = causal ? Math.Min(i + 1, m) : m;
            var qi = q.Span.Slice(i * d, d);
            var ks = k.Span; var vs = v.Span;
            var acc = new double[dv];
            double max = double.NegativeInfinity, z = 0;
            for (int j = 0; j < visible; j++)
            {
                double l = scale * double.CreateTruncating(TensorPrimitives.Dot(qi, ks.Slice(j * d, d)));
                if (l > max)
                {
                    double r = Math.Exp(max - l);
                    z *= r;
                    for (int c = 0; c < dv; c++) acc[c] *= r;
                    max = l;
                }
                double w = Math.Exp(l - max);
                z += w;
                var vj = vs.Slice(j * dv, dv);
                for (int c = 0; c < dv; c++) acc[c] += w * double.CreateTruncating(vj[c]);
            }
            for (int c = 0; c < dv; c++) outArr[i * dv + c] = T.CreateTruncating(acc[c] / z);
        });
        outArr.CopyTo(output);
        return HeadReport.Exact;
    }
}
