using MathNet.Numerics.Distributions;

namespace FastAttention.Cli.Infrastructure;

/// <summary>Ordinary least squares y = a + b·x with the slope's standard error (homoscedastic residuals).</summary>
/// <param name="Slope">b.</param>
/// <param name="Intercept">a.</param>
/// <param name="SlopeStdError">Standard error of b (NaN with fewer than 3 points).</param>
/// <param name="ResidualStd">√(Σ residual² / (count − 2)) (NaN with fewer than 3 points).</param>
/// <param name="Count">Points fitted.</param>
internal readonly record struct LineFit(double Slope, double Intercept, double SlopeStdError, double ResidualStd, int Count)
{
    /// <summary>Two-sided confidence interval of the slope at <paramref name="level"/> (Student t with count − 2
    /// degrees of freedom); (NaN, NaN) with fewer than 3 points.</summary>
    public (double Lo, double Hi) SlopeInterval(double level = 0.95)
    {
        if (Count < 3 || !double.IsFinite(SlopeStdError)) return (double.NaN, double.NaN);
        double t = StudentT.InvCDF(0, 1, Count - 2, 0.5 + level / 2);
        return (Slope - t * SlopeStdError, Slope + t * SlopeStdError);
    }

    /// <summary>a + b·x.</summary>
    public double At(double x) => Intercept + Slope * x;
}

/// <summary>A line through the origin y = c·x and how far the points are from it.</summary>
/// <param name="Coefficient">c, least squares.</param>
/// <param name="RmsResidual">√(mean (y − c·x)²).</param>
/// <param name="Residuals">y − c·x per point, in input order.</param>
internal sealed record ProportionalFit(double Coefficient, double RmsResidual, IReadOnlyList<double> Residuals);

/// <summary>The fits the experiments report: power laws on log–log data, lines through the origin.</summary>
internal static class Fit
{
    /// <summary>Least-squares line through (x, y). Needs at least 2 points with distinct x.</summary>
    public static LineFit Line(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count) throw new ArgumentException($"x has {x.Count} points, y has {y.Count}.", nameof(y));
        int n = x.Count;
        if (n < 2) throw new ArgumentException($"a line needs at least 2 points (got {n}).", nameof(x));
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
        mx /= n; my /= n;
        double sxx = 0, sxy = 0;
        for (int i = 0; i < n; i++) { sxx += (x[i] - mx) * (x[i] - mx); sxy += (x[i] - mx) * (y[i] - my); }
        if (!(sxx > 0)) throw new ArgumentException("a line needs at least two distinct x values.", nameof(x));
        double b = sxy / sxx, a = my - b * mx;
        if (n < 3) return new LineFit(b, a, double.NaN, double.NaN, n);
        double ss = 0;
        for (int i = 0; i < n; i++) { double r = y[i] - (a + b * x[i]); ss += r * r; }
        double sigma = Math.Sqrt(ss / (n - 2));
        return new LineFit(b, a, sigma / Math.Sqrt(sxx), sigma, n);
    }

    /// <summary>The exponent p of t ≈ C·n^p: the least-squares slope of ln t against ln n (all points positive).</summary>
    public static LineFit PowerLaw(IReadOnlyList<double> n, IReadOnlyList<double> t)
    {
        for (int i = 0; i < n.Count; i++)
            if (!(n[i] > 0) || !(t[i] > 0)) throw new ArgumentException($"a power law needs positive values (point {i}: n = {n[i]}, t = {t[i]}).", nameof(t));
        return Line(n.Select(v => Math.Log(v)).ToArray(), t.Select(v => Math.Log(v)).ToArray());
    }

    /// <summary>Least-squares c of y ≈ c·x (no intercept) with the residuals.</summary>
    public static ProportionalFit Proportional(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count) throw new ArgumentException($"x has {x.Count} points, y has {y.Count}.", nameof(y));
        double sxx = 0, sxy = 0;
        for (int i = 0; i < x.Count; i++) { sxx += x[i] * x[i]; sxy += x[i] * y[i]; }
        if (!(sxx > 0)) throw new ArgumentException("a proportional fit needs a nonzero x.", nameof(x));
        double c = sxy / sxx;
        var res = new double[x.Count];
        double ss = 0;
        for (int i = 0; i < x.Count; i++) { res[i] = y[i] - c * x[i]; ss += res[i] * res[i]; }
        return new ProportionalFit(c, Math.Sqrt(ss / x.Count), res);
    }
}

/// <summary>Bisection for the edge of a monotone predicate (true below some x*, false above).</summary>
internal static class Bisection
{
    /// <summary>The outcome: <see cref="Lower"/> is the largest point where the predicate was seen true (<c>lo</c> when
    /// it never was), <see cref="Upper"/> the smallest point seen false (<c>hi</c> when it never was), so x* ∈ [Lower, Upper].</summary>
    public readonly record struct Edge(double Lower, double Upper, bool TrueAtHi, bool TrueSomewhere, int Evaluations);

    /// <summary>
    /// Largest x in [lo, hi] with <paramref name="predicate"/>(x) true, for a predicate assumed true on [lo, x*] and false
    /// on (x*, hi]. Tries hi first (when it holds there, x* = hi and no search is needed), then halves [lo, hi]
    /// <paramref name="steps"/> times. The predicate is never called at <paramref name="lo"/> itself.
    /// </summary>
    public static Edge LargestTrue(Func<double, bool> predicate, double lo, double hi, int steps)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        if (!(hi > lo)) throw new ArgumentException($"the interval must have hi > lo (got [{lo}, {hi}]).", nameof(hi));
        if (steps < 0) throw new ArgumentOutOfRangeException(nameof(steps), $"steps must be non-negative (got {steps}).");
        if (predicate(hi)) return new Edge(hi, hi, true, true, 1);
        double a = lo, b = hi;
        bool any = false;
        int evals = 1;
        for (int i = 0; i < steps; i++)
        {
            double mid = 0.5 * (a + b);
            evals++;
            if (predicate(mid)) { a = mid; any = true; }
            else b = mid;
        }
        return new Edge(a, b, false, any, evals);
    }
}
