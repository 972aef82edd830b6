using FastAttention.Exact;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.RangeSearch;

/// <summary>Inputs for the range-search family's tests: seeded, with the adversarial shapes the brief lists.</summary>
internal static class RangeTestData
{
    public static AttentionProblem<double> Problem(double[] q, double[] k, double[] v, int n, int m, int d, int dv, double scale) =>
        new(q, k, v, n, m, d, dv, 1, scale);

    /// <summary>Uniform entries in [−B, B] for Q, K and V.</summary>
    public static AttentionProblem<double> Uniform(int n, int m, int d, int dv, double bound, int seed, double scale) =>
        TestData.Problem(n, m, d, dv, bound, seed, scale);

    /// <summary>Keys on the diagonal line t·(1, …, 1), t uniform in [−B, B].</summary>
    public static double[] LineKeys(int m, int d, double bound, int seed)
    {
        var t = TestData.Uniform(m, bound, seed);
        var k = new double[m * d];
        for (int j = 0; j < m; j++) for (int c = 0; c < d; c++) k[j * d + c] = t[j];
        return k;
    }

    /// <summary>V with alternating signs ±B (worst case for cancellation in the numerator).</summary>
    public static double[] Alternating(int m, int dv, double bound)
    {
        var v = new double[m * dv];
        for (int i = 0; i < v.Length; i++) v[i] = (i % 2 == 0 ? 1 : -1) * bound;
        return v;
    }

    /// <summary>Runs the algorithm, checks the certificate and the measured error against the float64 reference. For the
    /// range family the range-search plan is checked too where the algorithm's own choice was the exact kernel (small
    /// test problems often are), so the range path is always exercised.</summary>
    public static double Check(AttentionAlgorithm alg, AttentionProblem<double> p, double epsilon)
    {
        double err = TestData.AssertWithinEpsilon(alg, p, epsilon);
        if (alg is FastAttention.RangeSearch.RangeSearchFamily f && f.AllowExactPlan && f.ForcedHalfWidth is null && f is not FastAttention.RangeSearch.RoundingAttention)
        {
            var r = (FastAttention.RangeSearch.RangeSearchFamily)AttentionAlgorithms.Create(alg.Name);
            r.AllowExactPlan = false;
            err = Math.Max(err, TestData.AssertWithinEpsilon(r, p, epsilon));
        }
        return err;
    }

    /// <summary>The range family's typed parameters of head 0.</summary>
    public static FastAttention.RangeSearch.RangeFamilyParameters P<T>(AttentionResult<T> r) where T : unmanaged =>
        r.Certificate.ParametersOf<FastAttention.RangeSearch.RangeFamilyParameters>();

    public static double[] Reference(AttentionProblem<double> p) => ReferenceAttention.Compute(p);
}
