using FastAttention.Numerics;

namespace FastAttention.Tests.Numerics;

public class FloatingPointTests
{
    [Fact]
    public void ExpUpperBound_is_at_least_exp_and_within_twice_it()
    {
        // A sweep of [−760, 709] including the points where x·log₂e is an integer (ln 2·k), where rounding the product
        // down would give a bound below e^x.
        var xs = new List<double> { 0, -0.0, 1e-300, -1e-300, 708.9, -745, -744.4, -700, 1 };
        for (int k = -1100; k <= 1022; k++) { double x = k * Math.Log(2); xs.Add(x); xs.Add(Math.BitIncrement(x)); xs.Add(Math.BitDecrement(x)); }
        var rng = new Random(7);
        for (int i = 0; i < 20000; i++) xs.Add(-760 + 1469 * rng.NextDouble());
        foreach (double x in xs)
        {
            double b = FloatingPoint.ExpUpperBound(x);
            if (b == FloatingPoint.MinNormal && KLn2MinusX(-1022, x) >= 0) continue; // the floor: e^x ≤ 2^−1022
            // b = 2^k exactly: b ≥ e^x ⇔ k·ln 2 ≥ x, checked exactly with ln 2 as a double-double (k·hi by TwoProduct);
            // within 2× but for the exponent's widening: (k − 1)·ln 2 < x + 4u|x|.
            int k = Math.ILogB(b);
            Assert.Equal(Math.ScaleB(1.0, k), b);
            Assert.True(KLn2MinusX(k, x) >= 0, $"x = {x:R}: 2^{k} < e^x");
            Assert.True(KLn2MinusX(k - 1, x) < 4 * FloatingPoint.U * Math.Abs(x), $"x = {x:R}: 2^{k} more than 2e^x");
        }

        static double KLn2MinusX(int k, double x)
        {
            const double Hi = 0.6931471805599453, Lo = 2.3190468138462996e-17; // ln 2 = Hi + Lo to ≈ 1e−33
            var (p, e) = FloatingPoint.TwoProduct(k, Hi);
            var (s, f) = FloatingPoint.TwoSum(p, -x);
            return s + (f + e + k * Lo);
        }
    }

    [Fact]
    public void ExpUpperBound_edges()
    {
        Assert.Equal(double.PositiveInfinity, FloatingPoint.ExpUpperBound(709.8));
        Assert.Equal(double.PositiveInfinity, FloatingPoint.ExpUpperBound(double.PositiveInfinity));
        Assert.Equal(FloatingPoint.MinNormal, FloatingPoint.ExpUpperBound(double.NegativeInfinity));
        Assert.Equal(FloatingPoint.MinNormal, FloatingPoint.ExpUpperBound(-800));
        Assert.Equal(FloatingPoint.MinNormal, FloatingPoint.ExpUpperBound(-708.4)); // e^−708.4 < 2^−1022
        Assert.True(double.IsNaN(FloatingPoint.ExpUpperBound(double.NaN)));
        Assert.Equal(1.0, FloatingPoint.ExpUpperBound(0));
        Assert.Equal(2.0, FloatingPoint.ExpUpperBound(1e-300));
    }
}
