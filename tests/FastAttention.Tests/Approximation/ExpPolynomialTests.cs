using FastAttention.Approximation;

namespace FastAttention.Tests.Approximation;

public class ExpPolynomialTests
{
    // Minimum Chebyshev-interpolant degree for max relative error ≤ ε, measured in 60-digit arithmetic
    // (shared/notes/numerics.md). Ours is the truncated series accepted by a proof: within one of it.
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
        Assert.True(p.VerifiedRelativeError <= eps, $"proven {p.VerifiedRelativeError:E3} > ε = {eps:E3}");
        Assert.True(p.ApproximationError + p.EvaluationError <= p.VerifiedRelativeError);
        AssertRelativeError(p, p.VerifiedRelativeError, 20011);
    }

    [Theory]
    [InlineData(-100.0, -99.5, 1e-10)]
    [InlineData(250.0, 262.0, 1e-8)]
    [InlineData(-700.0, -690.0, 1e-6)]
    [InlineData(-0.001, 0.001, 1e-14)]
    public void Shifted_intervals_keep_the_relative_error(double a, double b, double eps)
    {
        var p = ExpPolynomial.Create(a, b, eps);
        Assert.True(p.VerifiedRelativeError <= eps);
        AssertRelativeError(p, p.VerifiedRelativeError, 7919);
    }

    /// <summary>
    /// The proof checked against an independent computation: the error of the stored polynomial in exact arithmetic,
    /// evaluated in 28-digit decimal arithmetic on a fine grid, never exceeds <see cref="ExpPolynomial.ApproximationError"/>,
    /// and the bound is not vacuous: where truncation dominates it is within a factor 3 of the largest error found.
    /// </summary>
    [Theory]
    [InlineData(1.0, 1e-6)]
    [InlineData(2.0, 1e-9)]
    [InlineData(4.0, 1e-3)]
    [InlineData(8.0, 1e-6)]
    [InlineData(12.0, 1e-4)]
    public void Approximation_error_is_a_true_and_tight_bound(double length, double eps)
    {
        var p = ExpPolynomial.Create(-length / 2, length / 2, eps);
        double h = p.HalfWidth;
        var c = p.ChebyshevCoefficients.ToArray();
        double worst = 0;
        for (int i = 0; i <= 4000; i++)
        {
            decimal t = -1m + i / 2000m;
            decimal exact = DecimalExp(Exact(h) * t);
            decimal err = (DecimalClenshaw(c, t) - exact) / exact;
            worst = Math.Max(worst, Math.Abs((double)err));
        }
        Assert.True(worst <= p.ApproximationError, $"measured {worst:E3} > proven {p.ApproximationError:E3}");
        Assert.True(p.ApproximationError <= 3 * worst, $"proven {p.ApproximationError:E3} is more than 3× the measured {worst:E3}");
    }

    [Theory]
    [InlineData(2.0, 1e-10)]
    [InlineData(8.0, 1e-7)]
    public void Monomial_bound_covers_the_monomial_form_in_exact_arithmetic(double length, double eps)
    {
        var p = ExpPolynomial.Create(-length / 2, length / 2, eps);
        var a = p.MonomialCoefficients();
        double bound = p.MonomialRelativeErrorBound();
        Assert.True(bound >= p.ApproximationError && bound <= 2 * eps, $"bound {bound:E3}");
        for (int i = 0; i <= 2000; i++)
        {
            decimal t = -1m + i / 1000m, mono = 0;
            for (int l = a.Length - 1; l >= 0; l--) mono = mono * t + Exact(a[l]);
            decimal exact = DecimalExp(Exact(p.HalfWidth) * t);
            Assert.True(Math.Abs((double)((mono - exact) / exact)) <= bound);
        }
    }

    [Fact]
    public void Near_the_float64_floor_the_proof_decides()
    {
        // L = 8, ε = 1e-12 (3× the floor 2⁻⁵³·e^L): the subinterval bound on Clenshaw's rounding proves it.
        var p = ExpPolynomial.Create(-4, 4, 1e-12);
        Assert.True(p.VerifiedRelativeError <= 1e-12);
        AssertRelativeError(p, p.VerifiedRelativeError, 20011);
        // L = 16, ε = 1e-9 (just above the floor 9.9e-10): no proof, so a refusal rather than a guess.
        var e = Assert.Throws<AttentionRefusedException>(() => ExpPolynomial.Create(-8, 8, 1e-9));
        Assert.Equal(RefusalReason.Float64Reach, e.Reason);
        Assert.Contains("proven", e.Message);
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

    /// <summary>The double's exact value as a decimal (to decimal's 28 digits): mantissa·2^exponent.</summary>
    private static decimal Exact(double x)
    {
        if (x == 0) return 0;
        long bits = BitConverter.DoubleToInt64Bits(x);
        int exp = (int)((bits >> 52) & 0x7FF);
        long mant = bits & 0xFFFFFFFFFFFFFL;
        if (exp == 0) exp = 1; else mant |= 1L << 52;
        exp -= 1075;
        decimal r = mant;
        for (; exp > 0; exp--) r *= 2;
        for (; exp < 0; exp++) r /= 2;
        return bits < 0 ? -r : r;
    }

    /// <summary>e^y for |y| ≤ 10 in decimal: Taylor series of e^{y/32}, squared five times.</summary>
    private static decimal DecimalExp(decimal y)
    {
        decimal z = y / 32, term = 1, sum = 1;
        for (int k = 1; k < 40; k++) { term = term * z / k; sum += term; }
        for (int i = 0; i < 5; i++) sum *= sum;
        return sum;
    }

    private static decimal DecimalClenshaw(double[] c, decimal t)
    {
        decimal b1 = 0, b2 = 0;
        for (int k = c.Length - 1; k >= 1; k--) { decimal b0 = 2 * t * b1 - b2 + Exact(c[k]); b2 = b1; b1 = b0; }
        return t * b1 - b2 + Exact(c[0]);
    }

    private static void AssertRelativeError(ExpPolynomial p, double eps, int samples)
    {
        var rng = new Random(5);
        for (int i = 0; i < samples; i++)
        {
            double x = i == 0 ? p.A : i == 1 ? p.B : p.A + rng.NextDouble() * p.Length;
            // Math.Exp and the division may add a few units of 2⁻⁵³ of their own.
            double rel = Math.Abs(p.Evaluate(x) / Math.Exp(x) - 1);
            Assert.True(rel <= eps + 1e-15, $"relative error {rel:E3} > {eps:E3} at x = {x} (degree {p.Degree})");
        }
    }
}
