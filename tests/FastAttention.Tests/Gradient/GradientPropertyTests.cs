using CsCheck;
using FastAttention.Gradient;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Gradient;

/// <summary>Random shapes, scales and masks (CsCheck shrinks a failure to the smallest case).</summary>
public class GradientPropertyTests
{
    [Fact]
    public void Backward_kernel_matches_the_reference_on_random_shapes()
    {
        Gen.Select(Gen.Int[1, 40], Gen.Int[1, 80], Gen.Int[1, 12], Gen.Int[1, 12], Gen.Bool, Gen.Double[0.1, 2.0], Gen.Int[0, 1000])
            .Sample((n, m, d, dv, causal, scale, seed) =>
            {
                var p = TestData.Problem(n, m, d, dv, 1.5, seed, scale: scale, causal: causal);
                var dO = TestData.Uniform(n * dv, 1, seed + 7);
                var (rq, rk, rv) = BackwardReference.Compute(p, dO);
                var g = AttentionBackward.Compute(p, dO, threads: 2);
                double tol(double[] r) => 1e-11 * Math.Max(1, GradientTestData.MaxAbs(r));
                return TestData.MaxAbsDiff(g.DQ.Span, rq) <= tol(rq) && TestData.MaxAbsDiff(g.DK.Span, rk) <= tol(rk) && TestData.MaxAbsDiff(g.DV.Span, rv) <= tol(rv);
            }, iter: 60);
    }

    [Fact]
    public void Reduction_with_the_exact_oracle_matches_the_reference_on_random_shapes()
    {
        Gen.Select(Gen.Int[1, 30], Gen.Int[1, 30], Gen.Int[1, 6], Gen.Double[0.2, 1.5], Gen.Double[-1.0, 1.0], Gen.Int[0, 1000])
            .Sample((n, m, d, bound, scale, seed) =>
            {
                var p = GradientTestData.Problem(n, m, d, bound, seed, scale);
                var reference = AttentionLossReference.Gradient(p, 1);
                var g = AttentionLossGradient.Compute(p, AttentionAlgorithms.Create("exact"), 1e-3, 1);
                // Both terms of dL/dX are bounded by K·α·Δ (see AttentionLossGradient); when they cancel (m = 1 makes the
                // gradient exactly 0) only a rounding-level floor relative to that scale is meaningful.
                var k = AttentionLossGradient.BudgetConstants.Measure(p, p.Values());
                double tol = 1e-9 * GradientTestData.MaxAbs(reference) + 1e-12 * k.K * k.Alpha * k.Delta;
                return g.OracleCalls == d + 2 && TestData.MaxAbsDiff(g.Gradient.Span, reference) <= tol;
            }, iter: 60);
    }
}
