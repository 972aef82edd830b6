using FastAttention.Approximation;
using FastAttention.Polynomial;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Polynomial;

public class LowRankFactorsTests
{
    [Fact]
    public void Factor_product_equals_the_polynomial_of_the_scaled_logits_entrywise()
    {
        // Tiny problem: U₁U₂ᵀ must equal P(s·QKᵀ) entry by entry (Lemma 3.2), up to float64 rounding of r products.
        const int n = 5, m = 7, d = 3;
        double s = 0.4;
        var q = TestData.Uniform(n * d, 1.2, 11);
        var k = TestData.Uniform(m * d, 0.9, 12);
        double qn = MaxNorm(q, d), kn = MaxNorm(k, d), r = s * qn * kn;
        var poly = ExpPolynomial.Create(-r, r, 1e-7);
        var f = new LowRankFactors(poly.MonomialCoefficients(), d, s * kn / r, 1 / kn);
        var u1 = f.QueryFactor<double>(q, n);
        var u2 = f.KeyFactor<double>(k, m);
        Assert.Equal(n * f.Rank, u1.Length);
        Assert.Equal(m * f.Rank, u2.Length);
        double absSum = f.AbsoluteCoefficientSum;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < m; j++)
            {
                double prod = 0, x = 0;
                for (int a = 0; a < f.Rank; a++) prod += u1[i * f.Rank + a] * u2[j * f.Rank + a];
                for (int c = 0; c < d; c++) x += q[i * d + c] * k[j * d + c];
                x *= s;
                double expected = f.Polynomial(x / r);
                // Rounding of ~r + 4g operations on terms whose absolute sum is ≤ Σ|a_ℓ|.
                Assert.True(Math.Abs(prod - expected) <= 1e-13 * absSum, $"({i},{j}): U₁U₂ᵀ = {prod:R}, P = {expected:R}");
                // And it is the polynomial of exp: the Chebyshev form agrees to rounding, exp to the target error.
                Assert.True(Math.Abs(prod - poly.Evaluate(x)) <= 1e-12 * poly.MonomialConditionNumber);
                Assert.True(Math.Abs(prod / Math.Exp(x) - 1) <= 1e-7);
            }
    }

    [Fact]
    public void Square_of_the_inner_product_is_reproduced_exactly_on_small_integers()
    {
        // P(t) = t² in d = 2: ⟨φ(q), ψ(k)⟩ = (q·k)², with integer inputs every operation is exact.
        var f = new LowRankFactors([0, 0, 1], 2, 1, 1);
        Assert.Equal(6, f.Rank); // 1, x, y, x², xy, y²
        double[] q = [1, 2, -3, 1], k = [2, -1, 4, 5, 0, 3];
        var u1 = f.QueryFactor<double>(q, 2);
        var u2 = f.KeyFactor<double>(k, 3);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
            {
                double dot = q[2 * i] * k[2 * j] + q[2 * i + 1] * k[2 * j + 1], prod = 0;
                for (int a = 0; a < 6; a++) prod += u1[i * 6 + a] * u2[j * 6 + a];
                Assert.Equal(dot * dot, prod);
            }
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(3, 1)]
    [InlineData(6, 4)]
    [InlineData(9, 2)]
    [InlineData(4, 8)]
    public void Rank_is_the_number_of_monomials_and_below_the_paper_bound(int g, int d)
    {
        var coeffs = Enumerable.Range(0, g + 1).Select(l => 1.0 / (l + 1)).ToArray();
        var f = new LowRankFactors(coeffs, d, 1, 1);
        Assert.Equal(LowRankFactors.Binomial(g + d, d), f.Rank);
        Assert.Equal(LowRankFactors.Binomial(2 * (g + d), 2 * g), f.PaperRankBound);
        Assert.True(f.Rank <= f.PaperRankBound);
        // Every multi-index with |α| ≤ g appears once, with coefficient a_{|α|}·multinomial(α).
        var seen = new HashSet<string>();
        for (int a = 0; a < f.Rank; a++)
        {
            var e = f.Exponents(a).ToArray();
            int l = e.Sum();
            Assert.InRange(l, 0, g);
            Assert.True(seen.Add(string.Join(",", e)));
            double multinomial = Factorial(l);
            foreach (int x in e) multinomial /= Factorial(x);
            Assert.Equal(coeffs[l] * multinomial, f.Coefficients[a], 12);
        }
    }

    [Fact]
    public void Binomials_are_exact()
    {
        Assert.Equal(210, LowRankFactors.Binomial(10, 4));
        Assert.Equal(125970, LowRankFactors.Binomial(20, 8));
        Assert.Equal(47905, LowRankFactors.Binomial(67, 64));
        Assert.Equal(0, LowRankFactors.Binomial(3, 5));
    }

    private static double Factorial(int k) => k <= 1 ? 1 : k * Factorial(k - 1);

    private static double MaxNorm(double[] x, int d)
    {
        double best = 0;
        for (int i = 0; i < x.Length / d; i++)
        {
            double s = 0;
            for (int c = 0; c < d; c++) s += x[i * d + c] * x[i * d + c];
            best = Math.Max(best, Math.Sqrt(s));
        }
        return best * (1 + 1e-14);
    }
}
