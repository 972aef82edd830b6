using FastAttention.Gradient;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Gradient;

/// <summary>Seeded instances of Gupta et al. Def. B.1 and helpers shared by the gradient tests.</summary>
internal static class GradientTestData
{
    public static DenseMatrix M(int rows, int cols, double bound, int seed) => new(TestData.Uniform(rows * cols, bound, seed), rows, cols);

    public static AttentionLossProblem Problem(int n, int m, int d, double bound, int seed, double scale = 1.0) =>
        new(M(n, d, bound, seed), M(m, d, bound, seed + 1), M(m, d, bound, seed + 2), M(n, d, bound, seed + 3),
            M(d, d, bound, seed + 4), M(d, d, bound, seed + 5), scale);

    /// <summary>The same problem with X replaced.</summary>
    public static AttentionLossProblem WithX(AttentionLossProblem p, double[] x) =>
        new(p.A1, p.A2, p.A3, p.E, new DenseMatrix(x, p.D, p.D), p.Y, p.Scale);

    /// <summary>Central finite differences of L with respect to every entry of X (step h).</summary>
    public static double[] FiniteDifferenceGradient(AttentionLossProblem p, double h)
    {
        int d = p.D;
        var x = p.X.Span.ToArray();
        var g = new double[d * d];
        for (int t = 0; t < d * d; t++)
        {
            double keep = x[t];
            x[t] = keep + h; double plus = AttentionLossReference.Loss(WithX(p, (double[])x.Clone()), 1);
            x[t] = keep - h; double minus = AttentionLossReference.Loss(WithX(p, (double[])x.Clone()), 1);
            x[t] = keep;
            g[t] = (plus - minus) / (2 * h);
        }
        return g;
    }

    public static double MaxAbs(ReadOnlySpan<double> a)
    {
        double r = 0;
        foreach (double v in a) r = Math.Max(r, Math.Abs(v));
        return r;
    }
}
