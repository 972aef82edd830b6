using FastAttention.Approximation;

namespace FastAttention.Tests.Approximation;

public class ExpPolynomialTests
{
    // Minimum Chebyshev-interpolant degree for max relative error ≤ ε, measured in 60-digit arithmetic
    // (shared/notes/numerics.md). Our degree may exceed it by at most 1 (the safety margin).
    public static TheoryData<double, double, int> ReferenceDegrees => new()
    {
        { 1, 1e-3, 3 }, { 1, 1e-6, 6 }, { 1, 1e-9, 8 }, { 1, 1e-12, 9 },
        { 2, 1e-3, 5 }, { 2, 1e-6, 7 }, { 2, 1e-9, 10 }, { 2, 1e-12, 12 },
        { 4, 1e-3, 7 }, { 4, 1e-6, 10 }, { 4, 1e-9, 13 }, { 4, 1e-12, 15 },
        { 8, 1e-3, 11 }, { 8, 1e-6, 15 }, { 8, 1e-9, 18 },
        { 16, 1e-3, 20 }, { 16, 1e-6, 24 },
    };

    [Theory]
    [MemberData(nameof(ReferenceDegrees))]
    public void Degree_is_within_one_of_the_chebyshev_reference_and_error_holds(double length, double eps, int referenceDegree)
    {
        var p = ExpPolynomial.Create(-3 - length / 2, -3 + length / 2, eps);
        Assert.InRange(p.Degree, referenceDegree - 1, referenceDegree + 1);
        Assert.True(p.VerifiedRelativeError <= eps / 2);
        AssertRelativeError(p, eps, 20011);
    }

    [Theory]
    [InlineData(-100.0, -99.5, 1e-10)]
    [InlineData(250.0, 262.0, 1e-8)]
    [InlineData(-700.0, -690.0, 1e-6)]
    [InlineData(-0.001, 0.001, 1e-14)]
    public void Shifted_intervals_keep_the_relative_error(double a, double b, double eps)
    {
        var p = ExpPolynomial.Create(a, b, eps);
        AssertRelativeError(p, eps, 7919);
    }

    [Fact]
    public void Monomial_coefficients_reproduce_the_chebyshev_series_on_short_intervals()
    {
        var p = ExpPolynomial.Create(-2, 2, 1e-10);
        var a = p.MonomialCoefficients();
        for (int i = 0; i <= 100; i++)
        {
            double t = -1 + i / 50.0;
            double mono = 0;
            for (int l = a.Length - 1; l >= 0; l--) mono = mono * t + a[l];
            Assert.True(Math.Abs(mono - p.EvaluateScaled(t)) <= 1e-13 * p.MonomialConditionNumber * Math.Exp(-2 * t) + 1e-14);
            Assert.True(Math.Abs(mono * Math.Exp(-2 * t) - 1) <= 1e-10);
        }
    }

    [Fact]
    public void Refusals_are_specific()
    {
        Assert.Equal("relativeError", Assert.Throws<ArgumentOutOfRangeException>(() => ExpPolynomial.Create(0, 1, 0)).ParamName);
        Assert.Equal("relativeError", Assert.Throws<ArgumentOutOfRangeException>(() => ExpPolynomial.Create(0, 1, 1)).ParamName);
        Assert.Equal("b", Assert.Throws<ArgumentOutOfRangeException>(() => ExpPolynomial.Create(1, 1, 0.1)).ParamName);
        var e = Assert.Throws<AttentionRefusedException>(() => ExpPolynomial.Create(0, 40, 1e-6));
        Assert.Contains("floor", e.Message);
        // The table's L = 32, ε = 1e-3 entry was measured in 60-digit arithmetic; float64's floor there is ≈ 9e-3.
        Assert.Throws<AttentionRefusedException>(() => ExpPolynomial.Create(0, 32, 1e-3));
    }

    [Fact]
    public void Theory_degree_grows_with_length_and_precision()
    {
        Assert.True(ExpPolynomial.TheoryDegree(8, 1e-9) >= 8);
        Assert.True(ExpPolynomial.TheoryDegree(1, 1e-12) > ExpPolynomial.TheoryDegree(1, 1e-3));
    }

    private static void AssertRelativeError(ExpPolynomial p, double eps, int samples)
    {
        var rng = new Random(5);
        for (int i = 0; i < samples; i++)
        {
            double x = i == 0 ? p.A : i == 1 ? p.B : p.A + rng.NextDouble() * p.Length;
            double rel = Math.Abs(p.Evaluate(x) / Math.Exp(x) - 1);
            Assert.True(rel <= eps, $"relative error {rel:E3} > {eps:E3} at x = {x} (degree {p.Degree})");
        }
    }
}
