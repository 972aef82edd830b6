using FastAttention.Polynomial;

namespace FastAttention.Tests.Polynomial;

public class ErrorBudgetTests
{
    [Fact]
    public void Sharpened_lemma_3_6_bound_holds_for_adversarial_relative_perturbations()
    {
        // For positive A, Ã = A∘(1 + E) with |E| ≤ ε_A and any V: |D̃⁻¹ÃV − D⁻¹AV| ≤ ε_A·H/(1 − ε_A) per column,
        // H the column's half-range. Perturbations at ±ε_A (the extremes) are the adversarial case.
        var rng = new Random(7);
        double worstRatio = 0;
        for (int trial = 0; trial < 4000; trial++)
        {
            int m = 1 + rng.Next(12);
            double epsA = Math.Pow(10, -1 - 6 * rng.NextDouble());
            if (trial % 7 == 0) epsA = 0.5 * rng.NextDouble();
            var a = new double[m]; var at = new double[m]; var v = new double[m];
            for (int j = 0; j < m; j++)
            {
                a[j] = Math.Exp(6 * (rng.NextDouble() - 0.5));
                double e = trial % 2 == 0 ? (rng.Next(2) == 0 ? -epsA : epsA) : epsA * (2 * rng.NextDouble() - 1);
                at[j] = a[j] * (1 + e);
                v[j] = 3 * (2 * rng.NextDouble() - 1);
            }
            double d = a.Sum(), dt = at.Sum(), exact = 0, approx = 0;
            for (int j = 0; j < m; j++) { exact += a[j] * v[j]; approx += at[j] * v[j]; }
            exact /= d; approx /= dt;
            // Lemma 3.5: the row sums inherit the relative error.
            Assert.True(Math.Abs(dt - d) <= epsA * d + 1e-14 * d); // slack: rounding of the two sums
            double half = 0.5 * (v.Max() - v.Min());
            double bound = ErrorBudget.NormalisedError(epsA, half);
            Assert.True(Math.Abs(approx - exact) <= bound + 1e-13, $"trial {trial}: {Math.Abs(approx - exact):E3} > {bound:E3}");
            // Never worse than the paper's (ε_A + ε_D)·‖V‖∞ = 2ε_A‖V‖∞ once ε_A ≤ 1/2.
            Assert.True(bound <= 2 * epsA * v.Max(Math.Abs) + 1e-300 || epsA > 0.5);
            if (bound > 0) worstRatio = Math.Max(worstRatio, Math.Abs(approx - exact) / bound);
        }
        // The bound is not vacuous: adversarial signs come within a factor 3 of it.
        Assert.True(worstRatio > 1.0 / 3, $"worst ratio {worstRatio}");
    }

    [Fact]
    public void Relative_error_for_a_budget_inverts_the_normalised_error()
    {
        foreach (double h in new[] { 1e-3, 0.5, 1, 7 })
            foreach (double budget in new[] { 1e-12, 1e-6, 1e-2 })
            {
                double epsA = ErrorBudget.RelativeErrorFor(budget, h);
                Assert.Equal(budget, ErrorBudget.NormalisedError(epsA, h), budget * 1e-9);
            }
        Assert.Equal(1, ErrorBudget.RelativeErrorFor(1e-3, 0));
        Assert.Equal(double.PositiveInfinity, ErrorBudget.NormalisedError(1, 1));
    }

    [Fact]
    public void Total_adds_every_term_and_gamma_grows_with_the_count()
    {
        var b = new ErrorBudget
        {
            Epsilon = 1e-3, PolynomialError = 1e-4, ConversionError = 1e-12, ScaleError = 1e-15, EvaluationRounding = 1e-10,
            VMax = 2, VHalfRange = 1.5, OutputUnit = Math.ScaleB(1, -52),
        };
        Assert.Equal(b.PolynomialError + b.ConversionError + b.ScaleError, b.EpsA);
        // The total is the terms' sum rounded up by the sum's own rounding (γ₃), so it bounds the exact sum.
        double plain = b.ApproximationBound + b.RoundingBound + b.OutputRoundingBound;
        Assert.InRange(b.Total, plain, plain * (1 + 4 * ErrorBudget.Unit));
        Assert.Equal(ErrorTerms.Sum(b.Terms), b.Total);
        Assert.True(b.ApproximationBound > b.EpsA * b.VHalfRange);
        Assert.True(b.RoundingBound > 2 * b.EvaluationRounding * b.VMax);
        Assert.True(ErrorBudget.Gamma(10) > 10 * ErrorBudget.Unit && ErrorBudget.Gamma(10) < ErrorBudget.Gamma(11));
        Assert.Equal(double.PositiveInfinity, ErrorBudget.Gamma(1e17));
    }
}
