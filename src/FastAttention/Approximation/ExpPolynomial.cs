namespace FastAttention.Approximation;

/// <summary>
/// A polynomial P with |P(x) − eˣ| ≤ ε·eˣ on [a, b] (Alman–Song Lemma 2.1 / Cor. 2.2; Gupta et al. Lemma 3.4), built by
/// Chebyshev interpolation of exp in the centred, scaled variable t = (x − c)/h ∈ [−1, 1] (c = (a + b)/2,
/// h = (b − a)/2) and evaluated with Clenshaw's recurrence. The degree is the smallest whose relative error,
/// measured in float64 on a dense grid, is at most half the target (the other half is the safety margin), so the
/// verified error includes the evaluation's own rounding. Relative error depends only on L = b − a (eˣ⁺ᶜ = eᶜ·eˣ),
/// so the polynomial is stored for e^{h·t} and rescaled by e^c. Immutable.
/// </summary>
public sealed class ExpPolynomial
{
    /// <summary>Dense verification grid size per unit of degree (plus the Chebyshev extrema and end points).</summary>
    private const int GridPerDegree = 16;

    private readonly double[] _cheb; // Chebyshev coefficients of e^{h t} on t ∈ [−1, 1]

    private ExpPolynomial(double a, double b, double target, double[] cheb, double verified)
    {
        A = a; B = b; TargetRelativeError = target; _cheb = cheb; VerifiedRelativeError = verified;
    }

    /// <summary>Left end of the interval.</summary>
    public double A { get; }
    /// <summary>Right end of the interval.</summary>
    public double B { get; }
    /// <summary>Interval length L = b − a.</summary>
    public double Length => B - A;
    /// <summary>Centre c = (a + b)/2.</summary>
    public double Centre => 0.5 * (A + B);
    /// <summary>Half-width h = (b − a)/2.</summary>
    public double HalfWidth => 0.5 * (B - A);
    /// <summary>The degree g.</summary>
    public int Degree => _cheb.Length - 1;
    /// <summary>The requested relative error ε.</summary>
    public double TargetRelativeError { get; }
    /// <summary>max over the dense grid of |P(x) − eˣ|/eˣ, computed in float64 (≤ ε/2 by construction).</summary>
    public double VerifiedRelativeError { get; }
    /// <summary>Chebyshev coefficients c_k of e^{h·t} ≈ Σ c_k T_k(t), t = (x − c)/h.</summary>
    public ReadOnlySpan<double> ChebyshevCoefficients => _cheb;

    /// <summary>
    /// Builds the lowest-degree Chebyshev interpolant meeting the relative error, verified numerically.
    /// Throws <see cref="ArgumentOutOfRangeException"/> naming the argument when ε ∉ (0, 1) or the interval is empty
    /// or not finite, and <see cref="AttentionRefusedException"/> when float64 cannot reach ε on an interval this long
    /// (relative floor ≈ 2⁻⁵³·e^L) within <paramref name="maxDegree"/>.
    /// </summary>
    public static ExpPolynomial Create(double a, double b, double relativeError, int maxDegree = 400)
    {
        if (!double.IsFinite(a) || !double.IsFinite(b) || !(b > a))
            ThrowHelper.ArgumentOutOfRange(nameof(b), $"the interval [{a}, {b}] must be finite with b > a.");
        if (!(relativeError > 0 && relativeError < 1))
            ThrowHelper.ArgumentOutOfRange(nameof(relativeError), $"the relative error must lie in (0, 1) (got {relativeError}).");
        if (maxDegree < 0) ThrowHelper.ArgumentOutOfRange(nameof(maxDegree), $"maxDegree must be non-negative (got {maxDegree}).");
        double l = b - a, h = 0.5 * l;
        double floor = FloatingPointFloor(l);
        if (relativeError < floor)
            ThrowHelper.Refused("exp polynomial", RefusalReason.Float64Reach, $"relative error {relativeError:G3} on an interval of length {l:G4} is below float64's evaluation floor ≈ 2⁻⁵³·e^L = {floor:G3}; split the interval (the range-search algorithm does) or ask for a larger ε.");
        // Start a little below the Aggarwal–Alman estimate and raise the degree until the verified error holds.
        int g = Math.Max(0, Math.Min(maxDegree, (int)(0.6 * TheoryDegree(l, relativeError)) - 2));
        for (; g <= maxDegree; g++)
        {
            var cheb = Interpolate(h, g);
            double err = Verify(cheb, h);
            if (err <= 0.5 * relativeError) return new ExpPolynomial(a, b, relativeError, cheb, err);
        }
        ThrowHelper.Refused("exp polynomial", RefusalReason.Float64Reach, $"no polynomial of degree ≤ {maxDegree} reaches relative error {relativeError:G3} on an interval of length {l:G4} in float64; split the interval or ask for a larger ε.");
        return null!;
    }

    /// <summary>P(x) = e^c · Σ c_k T_k((x − c)/h) by Clenshaw's recurrence (stable in the Chebyshev basis).</summary>
    public double Evaluate(double x) => Math.Exp(Centre) * EvaluateScaled((x - Centre) / HalfWidth);

    /// <summary>Σ c_k T_k(t) ≈ e^{h·t} for t ∈ [−1, 1].</summary>
    public double EvaluateScaled(double t) => Clenshaw(_cheb, t);

    /// <summary>
    /// Monomial coefficients a_ℓ with Σ a_ℓ tℓ = Σ c_k T_k(t), in the centred, scaled variable t = (x − c)/h, so that
    /// P(x) = e^c · Σ a_ℓ ((x − c)/h)^ℓ. Use only for short intervals: the conversion's relative error on [−1, 1] is
    /// about 2⁻⁵³·<see cref="MonomialConditionNumber"/>.
    /// </summary>
    public double[] MonomialCoefficients()
    {
        int g = Degree;
        // T_0 = 1, T_1 = t, T_{k+1} = 2t T_k − T_{k−1}; accumulate c_k·T_k in the monomial basis.
        var result = new double[g + 1];
        var prev = new double[g + 1]; var cur = new double[g + 1]; var next = new double[g + 1];
        prev[0] = 1;
        result[0] += _cheb[0];
        if (g >= 1) { cur[1] = 1; result[1] += _cheb[1]; }
        for (int k = 1; k < g; k++)
        {
            Array.Clear(next);
            for (int i = 0; i <= k; i++) next[i + 1] += 2 * cur[i];
            for (int i = 0; i <= k - 1; i++) next[i] -= prev[i];
            for (int i = 0; i <= k + 1; i++) result[i] += _cheb[k + 1] * next[i];
            (prev, cur, next) = (cur, next, prev);
        }
        return result;
    }

    /// <summary>Σ|a_ℓ| / min_{t∈[−1,1]} e^{h·t} = e^h·Σ|a_ℓ|: relative amplification of rounding in the monomial basis.</summary>
    public double MonomialConditionNumber => MonomialCoefficients().Sum(Math.Abs) * Math.Exp(HalfWidth);

    /// <summary>Float64's relative floor for evaluating exp's polynomial over a range of length L: 2⁻⁵³·e^L.</summary>
    public static double FloatingPointFloor(double length) => Math.ScaleB(1, -53) * Math.Exp(length);

    /// <summary>
    /// The Aggarwal–Alman degree Θ(max{L, log(1/ε)/log(log(1/ε)/L)}) with unit constants, reported next to the
    /// verified degree (for L ≥ log(1/ε) the first term dominates; the second is used only when log(1/ε) &gt; e·L).
    /// </summary>
    public static double TheoryDegree(double length, double relativeError)
    {
        double lg = Math.Log(1 / relativeError);
        double second = lg > Math.E * length && length > 0 ? lg / Math.Log(lg / length) : lg;
        return Math.Max(length, second);
    }

    private static double[] Interpolate(double h, int g)
    {
        // Interpolation at the g + 1 Chebyshev points of the first kind: c_k = (2/(g+1)) Σ_j f(t_j) T_k(t_j).
        int np = g + 1;
        var f = new double[np];
        for (int j = 0; j < np; j++) f[j] = Math.Exp(h * Math.Cos(Math.PI * (j + 0.5) / np));
        var c = new double[np];
        for (int k = 0; k < np; k++)
        {
            double s = 0;
            for (int j = 0; j < np; j++) s += f[j] * Math.Cos(Math.PI * k * (j + 0.5) / np);
            c[k] = 2.0 * s / np;
        }
        c[0] *= 0.5;
        return c;
    }

    private static double Verify(double[] cheb, double h)
    {
        int g = cheb.Length - 1;
        int points = Math.Max(512, GridPerDegree * (g + 1));
        double worst = 0;
        for (int i = 0; i <= points; i++)
        {
            double t = -1 + 2.0 * i / points;
            worst = Math.Max(worst, Math.Abs(Clenshaw(cheb, t) * Math.Exp(-h * t) - 1));
        }
        // The extrema of T_{g+1} (where the interpolation error peaks) as well.
        for (int i = 0; i <= g + 1; i++)
        {
            double t = Math.Cos(Math.PI * i / (g + 1));
            worst = Math.Max(worst, Math.Abs(Clenshaw(cheb, t) * Math.Exp(-h * t) - 1));
        }
        return worst;
    }

    internal static double Clenshaw(ReadOnlySpan<double> c, double t)
    {
        double b1 = 0, b2 = 0, t2 = 2 * t;
        for (int k = c.Length - 1; k >= 1; k--)
        {
            double b0 = Math.FusedMultiplyAdd(t2, b1, c[k] - b2);
            b2 = b1; b1 = b0;
        }
        return Math.FusedMultiplyAdd(t, b1, c[0] - b2);
    }
}
