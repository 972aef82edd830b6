namespace FastAttention.Approximation;

/// <summary>
/// A polynomial P with |P(x) − eˣ| ≤ ε·eˣ on [a, b] (Alman–Song Lemma 2.1 / Cor. 2.2; Gupta et al. Lemma 3.4): the
/// Chebyshev series of exp truncated at degree g, in the centred, scaled variable t = (x − c)/h ∈ [−1, 1]
/// (c = (a + b)/2, h = (b − a)/2), evaluated with Clenshaw's recurrence. Relative error depends only on L = b − a
/// (eˣ⁺ᶜ = eᶜ·eˣ), so the polynomial is stored for e^{h·t} and rescaled by e^c. Immutable.
/// <para>
/// The degree is accepted by a proof, not a sample: e^{ht} = I₀(h) + 2·Σ_{k≥1} I_k(h)·T_k(t) (modified Bessel
/// functions, all positive), so with |T_k| ≤ 1 on [−1, 1] the stored polynomial is off by at most
/// Σ_{k≤g}|c_k − 2I_k(h)| + 2·Σ_{k&gt;g} I_k(h) everywhere (<see cref="ApproximationError"/>, relative to
/// min e^{ht} = e^{−h}); each I_k is a sum of positive terms computed with a counted rounding bound and a geometric
/// remainder. The float64 evaluation's own rounding is bounded separately (<see cref="EvaluationError"/>: Clenshaw's
/// local errors act as perturbations of the coefficients, plus the argument and e^c), and a degree is accepted when
/// the sum is at most ε.
/// </para>
/// </summary>
public sealed class ExpPolynomial
{
    private const double U = 1.1102230246251565e-16; // unit roundoff 2⁻⁵³
    /// <summary>Margin on every bound computed here: covers the float64 rounding of the bound arithmetic itself
    /// (sums of fewer than 10⁴ positive terms) and a library exp/cos within a few ulps.</summary>
    private const double BoundMargin = 1 + TwoToMinus40;
    private const double TwoToMinus40 = 9.094947017729282e-13, TwoToMinus110 = 7.703719777548943e-34;

    private readonly double[] _cheb; // Chebyshev coefficients of e^{h t} on t ∈ [−1, 1]

    private ExpPolynomial(double a, double b, double target, double[] cheb, double approximation, double evaluation)
    {
        A = a; B = b; TargetRelativeError = target; _cheb = cheb;
        ApproximationError = approximation; EvaluationError = evaluation;
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
    /// <summary>Proven bound on max_{x∈[a,b]} |P(x) − eˣ|/eˣ for P with the stored coefficients in exact arithmetic.</summary>
    public double ApproximationError { get; }
    /// <summary>Proven bound on the extra relative error of float64 evaluation: <see cref="Evaluate"/> for x ∈ [a, b]
    /// and <see cref="EvaluateScaled"/> for t ∈ [−1, 1] (Clenshaw's rounding, the argument's, e^c's).</summary>
    public double EvaluationError { get; }
    /// <summary>Proven bound on |fl(P(x)) − eˣ|/eˣ on [a, b] in float64: (1 + <see cref="ApproximationError"/>)·(1 +
    /// <see cref="EvaluationError"/>) − 1, at most <see cref="TargetRelativeError"/> by construction.</summary>
    public double VerifiedRelativeError => Combine(ApproximationError, EvaluationError);

    /// <summary>(1 + a)(1 + b) − 1, rounded up.</summary>
    private static double Combine(double a, double b) => (a + b + a * b) * BoundMargin;
    /// <summary>Chebyshev coefficients c_k of e^{h·t} ≈ Σ c_k T_k(t), t = (x − c)/h.</summary>
    public ReadOnlySpan<double> ChebyshevCoefficients => _cheb;

    /// <summary>
    /// Builds the lowest-degree truncated Chebyshev series whose proven float64 error (approximation plus evaluation)
    /// meets the relative error. Throws <see cref="ArgumentOutOfRangeException"/> naming the argument when ε ∉ (0, 1)
    /// or the interval is empty or not finite, and <see cref="AttentionRefusedException"/> when float64 cannot reach ε
    /// on an interval this long (relative floor ≈ 2⁻⁵³·e^L) within <paramref name="maxDegree"/>.
    /// </summary>
    public static ExpPolynomial Create(double a, double b, double relativeError, int maxDegree = 400)
    {
        if (!double.IsFinite(a) || !double.IsFinite(b) || !(b > a))
            ThrowHelper.ArgumentOutOfRange(nameof(b), $"the interval [{a}, {b}] must be finite with b > a.");
        if (!(relativeError > 0 && relativeError < 1))
            ThrowHelper.ArgumentOutOfRange(nameof(relativeError), $"the relative error must lie in (0, 1) (got {relativeError}).");
        if (maxDegree < 0) ThrowHelper.ArgumentOutOfRange(nameof(maxDegree), $"maxDegree must be non-negative (got {maxDegree}).");
        double l = b - a, h = 0.5 * l;
        if (!double.IsFinite(l))
            ThrowHelper.ArgumentOutOfRange(nameof(b), $"the interval [{a}, {b}] is longer than float64's range.");
        double floor = FloatingPointFloor(l);
        if (relativeError < floor)
            ThrowHelper.Refused("exp polynomial", RefusalReason.Float64Reach, $"relative error {relativeError:G3} on an interval of length {l:G4} is below float64's evaluation floor ≈ 2⁻⁵³·e^L = {floor:G3}; split the interval (the range-search algorithm does) or ask for a larger ε.");
        var series = new BesselSeries(h);
        double centre = 0.5 * (a + b);
        double best = double.PositiveInfinity;
        // Start a little below the Aggarwal–Alman estimate and raise the degree until the proven error holds.
        int g = Math.Max(0, Math.Min(maxDegree, (int)(0.6 * TheoryDegree(l, relativeError)) - 2));
        for (; g <= maxDegree; g++)
        {
            var cheb = series.Coefficients(g);
            var (coefficientError, truncation) = series.TruncationBound(g);
            double approximation = coefficientError + truncation;
            double evaluation = EvaluationBound(cheb, h, centre, refined: false);
            // Near float64's floor the uniform bound on Clenshaw's b_k is loose: refine it where that decides.
            if (Combine(approximation, evaluation) > relativeError && (approximation < relativeError || evaluation > relativeError))
                evaluation = Math.Min(evaluation, EvaluationBound(cheb, h, centre, refined: true));
            double total = Combine(approximation, evaluation);
            best = Math.Min(best, total);
            if (total <= relativeError)
                return new ExpPolynomial(a, b, relativeError, cheb, approximation, evaluation);
            // Rounding (of the evaluation or of the coefficients) alone above ε: a higher degree cannot help.
            if (evaluation > relativeError || (truncation < coefficientError && Combine(coefficientError, evaluation) > relativeError)) break;
        }
        ThrowHelper.Refused("exp polynomial", RefusalReason.Float64Reach, $"the proven float64 error of exp's Chebyshev series on an interval of length {l:G4} is at best {best:G3} (degrees up to {Math.Min(g, maxDegree)} tried), above the relative error {relativeError:G3} asked; split the interval or ask for a larger ε.");
        return null!;
    }

    /// <summary>P(x) = e^c · Σ c_k T_k((x − c)/h) by Clenshaw's recurrence (stable in the Chebyshev basis). The scaled
    /// argument is clamped to [−1, 1]: for x ∈ [a, b] that only undoes its rounding.</summary>
    public double Evaluate(double x) => Math.Exp(Centre) * EvaluateScaled(Math.Clamp((x - Centre) / HalfWidth, -1.0, 1.0));

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

    /// <summary>
    /// Proven bound on the relative error float64 evaluation adds. Clenshaw with b_k = fl(2t·b_{k+1} + fl(c_k −
    /// b_{k+2})) (FMA) computes exactly the recurrence for coefficients c_k + ρ_k with
    /// |ρ_k| ≤ u(1 + 2u)(|c_k| + |b_{k+2}| + |b_k|), so the result is Σ (c_k + ρ_k)T_k(t) and is off by at most Σ|ρ_k|
    /// on [−1, 1]. The |b_k(t)| are bounded either uniformly, by Σ_{j≥k}|c_j|(j − k + 1) (|U_n| ≤ n + 1), relative to
    /// min e^{ht} = e^{−h}; or, <paramref name="refined"/>, on subintervals I of width ≤ 1/h, by their largest value
    /// on a grid of spacing δ times 1/(1 − g²δ/|I|) (Markov: |p′| ≤ 2g²/|I|·max_I |p| for degree ≤ g), the computed
    /// values' own error entering as a relative factor, relative to min_I e^{ht} — near t = −1 the b_k are far below
    /// their uniform bound, which grows like e^h·h². Evaluate(x) adds the argument's rounding (the exponent c + h·t̂ − x is at most
    /// 3.1u(h + |c|), clamping included), e^c (2u) and the product (u).
    /// </summary>
    private static double EvaluationBound(double[] c, double h, double centre, bool refined)
    {
        int g = c.Length - 1;
        var bk = new double[g + 3];
        double tail = 0, largest = 0;
        for (int k = g; k >= 1; k--)
        {
            tail += Math.Abs(c[k]);
            bk[k] = bk[k + 1] + tail;
            largest = Math.Max(largest, bk[k]);
        }
        double sumAbs = tail + Math.Abs(c[0]);
        // The ρ's own share of the computed b_k: |b̂_k − b_k| ≤ Σ_{j≥k}|ρ_j|(j − k + 1) ≤ 4u(g + 1)²·max B_k.
        double grow = 4 * U * (g + 1.0) * (g + 1.0) * Math.Max(largest, sumAbs);
        double clenshaw;
        if (!refined || g == 0)
        {
            double rho = 0;
            for (int k = 1; k <= g; k++) rho += Math.Abs(c[k]) + bk[k + 2] + bk[k] + 2 * grow;
            // The final step y = fma(t, b₁, fl(c₀ − b₂)), |y| ≤ Σ|c_k| + Σ|ρ_k|.
            rho += Math.Abs(c[0]) + bk[Math.Min(2, g + 2)] + 2 * grow + sumAbs * (1 + 1e-9);
            clenshaw = U * (1 + 2 * U) * rho * Math.Exp(h) * BoundMargin * BoundMargin;
        }
        else clenshaw = RefinedClenshaw(c, h);
        double exponent = 3.1 * U * (h + Math.Abs(centre));
        double argument = double.ExpM1(exponent * BoundMargin) * BoundMargin;
        return Combine(Combine(clenshaw, argument), 3.01 * U);
    }

    /// <summary>The subinterval form of <see cref="EvaluationBound"/> (g ≥ 1).</summary>
    private static double RefinedClenshaw(double[] c, double h)
    {
        int g = c.Length - 1;
        int pieces = Math.Max(1, (int)Math.Ceiling(2 * h));
        int points = 2 * g * g + 2; // spacing δ = |I|/(points − 1) < |I|/(2g²): the Markov factor is below 2
        var mx = new double[g + 3];
        double worst = 0;
        for (int piece = 0; piece < pieces; piece++)
        {
            double alpha = -1 + 2.0 * piece / pieces, beta = -1 + 2.0 * (piece + 1) / pieces, width = beta - alpha;
            Array.Clear(mx);
            double my = 0;
            for (int i = 0; i < points; i++)
            {
                double t = i == points - 1 ? beta : alpha + width * i / (points - 1), t2 = 2 * t, b1 = 0, b2 = 0;
                for (int k = g; k >= 1; k--)
                {
                    double b0 = Math.FusedMultiplyAdd(t2, b1, c[k] - b2);
                    mx[k] = Math.Max(mx[k], Math.Abs(b0));
                    b2 = b1; b1 = b0;
                }
                my = Math.Max(my, Math.Abs(Math.FusedMultiplyAdd(t, b1, c[0] - b2)));
            }
            // Grid points lie within δ(1 + 1e-9) of every point of I (their own rounding included).
            double markov = 1 / (1 - (double)g * g / (points - 1) * (1 + 1e-9));
            // With R = max Σ|ρ_j| over I and the grid: |b̂_k − b_k| ≤ (g + 1)R everywhere, so max_I |b_k| ≤
            // markov·(max_grid |b̂_k| + (g + 1)R) and R ≤ u′(Σ|c_k| + Σ_k (max|b_{k+2}| + max|b_k|) + max|y| + …);
            // solved for R, the b̂'s own share is the factor 1/(1 − 8u′(g + 1)²·markov).
            double sum = 0;
            for (int k = 1; k <= g; k++) sum += Math.Abs(c[k]) + markov * ((k + 2 <= g ? mx[k + 2] : 0) + mx[k]);
            sum += Math.Abs(c[0]) + markov * ((g >= 2 ? mx[2] : 0) + my);
            double u1 = U * (1 + 2 * U), shrink = 1 - 8 * u1 * (g + 1.0) * (g + 1.0) * markov;
            if (!(shrink > 0.5)) return double.PositiveInfinity;
            worst = Math.Max(worst, u1 * sum / shrink * Math.Exp(-h * alpha) * BoundMargin * BoundMargin);
        }
        return worst;
    }

    /// <summary>
    /// Proven relative error, against e^{h·t} on t ∈ [−1, 1], of Σ a_ℓ tℓ in exact arithmetic with the computed
    /// <see cref="MonomialCoefficients"/>: <see cref="ApproximationError"/> combined with
    /// <see cref="MonomialConversionError"/>. Callers bound their own evaluation of the monomial form.
    /// </summary>
    public double MonomialRelativeErrorBound() => Combine(ApproximationError, MonomialConversionError());

    /// <summary>
    /// ε_conv: the conversion's rounding, |Σ Δa_ℓ tℓ| ≤ Σ_ℓ|Δa_ℓ| ≤ γ_{g+2}·Σ_k |c_k|·‖T_k‖₁ on |t| ≤ 1 (the
    /// Chebyshev polynomials' integer coefficients are exact below 2⁵³; each a_ℓ is a sum of g + 1 rounded products),
    /// relative to min e^{ht} = e^{−h}. +∞ when the integers exceed 2⁵³ (no such bound).
    /// </summary>
    public double MonomialConversionError()
    {
        int g = Degree;
        double prev = 1, cur = 1, w = Math.Abs(_cheb[0]) + (g >= 1 ? Math.Abs(_cheb[1]) : 0), largest = 1;
        for (int k = 2; k <= g; k++)
        {
            double next = 2 * cur + prev; // ‖T_k‖₁ ≤ 2‖T_{k−1}‖₁ + ‖T_{k−2}‖₁ (triangle inequality on the recurrence)
            w += Math.Abs(_cheb[k]) * next;
            largest = Math.Max(largest, next);
            prev = cur; cur = next;
        }
        if (!(largest < 9007199254740992.0)) return double.PositiveInfinity;
        return Gamma(g + 2) * w * Math.Exp(HalfWidth) * BoundMargin * BoundMargin;
    }

    private static double Gamma(double n) => n * U / (1 - n * U);

    /// <summary>
    /// The Chebyshev coefficients of e^{h·t}: a₀ = I₀(h), a_k = 2I_k(h), with I_k(h) = Σ_j x^{2j+k}/(j!(j+k)!),
    /// x = h/2, summed in double-double with a counted rounding bound (dominated by the final rounding to float64), a
    /// geometric bound on the series' remainder and an absolute bound where the leading term falls below 2⁻⁹⁰⁰.
    /// </summary>
    /// <summary>Unevaluated sums hi + lo (|lo| ≤ u·|hi|) for positive series: products and quotients by FMA, each
    /// step within a few u² relatively (Dekker, Knuth).</summary>
    private readonly record struct DoubleDouble(double Hi, double Lo = 0)
    {
        public static DoubleDouble Square(double x) => new(x * x, Math.FusedMultiplyAdd(x, x, -(x * x)));

        public DoubleDouble Times(double y)
        {
            double p = Hi * y, e = Math.FusedMultiplyAdd(Hi, y, -p) + Lo * y;
            return Normalize(p, e);
        }

        public DoubleDouble Times(DoubleDouble y)
        {
            double p = Hi * y.Hi, e = Math.FusedMultiplyAdd(Hi, y.Hi, -p) + (Hi * y.Lo + Lo * y.Hi);
            return Normalize(p, e);
        }

        public DoubleDouble Over(double d)
        {
            double q = Hi / d, r = Math.FusedMultiplyAdd(-q, d, Hi) + Lo;
            return Normalize(q, r / d);
        }

        public DoubleDouble Plus(DoubleDouble y)
        {
            double s = Hi + y.Hi, bb = s - Hi, e = (Hi - (s - bb)) + (y.Hi - bb) + Lo + y.Lo;
            return Normalize(s, e);
        }

        private static DoubleDouble Normalize(double a, double b)
        {
            double s = a + b;
            return new(s, b - (s - a));
        }
    }

    private sealed class BesselSeries(double h)
    {
        private const double Tiny = 1.4996968138956309e-271; // 2⁻⁹⁰⁰ (normal, far above underflow)
        private readonly double _x = 0.5 * h;
        private readonly List<(double Value, double Error)> _terms = [];

        /// <summary>2I_k(h) (I₀ for k = 0) and a bound on its absolute error.</summary>
        private (double Value, double Error) Term(int k)
        {
            while (_terms.Count <= k) _terms.Add(Compute(_terms.Count));
            return _terms[k];
        }

        private (double, double) Compute(int k)
        {
            double x = _x;
            // The series in double-double (terms and sum ~u² relative each), so that the only error of note is the
            // final rounding to a double — coefficients of size ~e^h near t = −1 cost their error times e^{2h}.
            var tau = new DoubleDouble(1);
            for (int i = 1; i <= k; i++)
            {
                tau = tau.Times(x).Over(i);
                // Once the leading term is below 2⁻⁹⁰⁰ every later factor x/i is below 1 (the product of the earlier
                // ones is), so x^k/k! ≤ 2·2⁻⁹⁰⁰ and I_k ≤ x^k/k!·e^{x²/(k+1)}.
                if (tau.Hi < Tiny)
                    return (0, (k == 0 ? 1 : 2) * 2 * Tiny * Math.Exp(x * x / (k + 1)) * BoundMargin);
            }
            var x2 = DoubleDouble.Square(x);
            var sum = tau;
            int j = 0;
            while (true)
            {
                double r = x2.Hi / ((j + 1.0) * (j + k + 1.0));
                tau = tau.Times(x2).Over((j + 1.0) * (j + k + 1.0));
                j++;
                sum = sum.Plus(tau);
                // Ratios decrease in j: once r ≤ 1/2 the remainder Σ_{j′>j} is at most the last term.
                if (r <= 0.5 && tau.Hi <= sum.Hi * TwoToMinus110) break;
            }
            // Each double-double step errs by at most 16u² relatively: 2k for the leading term, 3 per later term,
            // one per addition (all terms positive); then the value is rounded to the double Hi (error |Lo|).
            double ddError = (2.0 * k + 4.0 * j + 4) * 16 * U * U * sum.Hi;
            double error = (Math.Abs(sum.Lo) + ddError + 2 * tau.Hi) * (1 + 1e-9);
            return k == 0 ? (sum.Hi, error * BoundMargin) : (2 * sum.Hi, 2 * error * BoundMargin);
        }

        public double[] Coefficients(int g)
        {
            var c = new double[g + 1];
            for (int k = 0; k <= g; k++) c[k] = Term(k).Value;
            return c;
        }

        /// <summary>
        /// Relative bound for the degree-g truncation with the computed coefficients: (Σ_{k≤g} |ĉ_k − a_k| +
        /// Σ_{k&gt;g} a_k)·e^h. The tail uses I_{k+1} ≤ (x/(k+1))·I_k (termwise), so past K with x/(K+1) ≤ 1/2 the rest
        /// is at most a_K.
        /// </summary>
        public (double Coefficients, double Truncation) TruncationBound(int g)
        {
            double err = 0;
            for (int k = 0; k <= g; k++) err += Term(k).Error;
            double tail = 0;
            for (int k = g + 1; ; k++)
            {
                var (v, e) = Term(k);
                tail += v + e;
                if (_x / (k + 1) <= 0.5 && (v == 0 || v + e <= tail * TwoToMinus40))
                {
                    tail += v + e; // the geometric remainder Σ_{k′>K} a_k′ ≤ a_K
                    break;
                }
            }
            double scale = Math.Exp(2 * _x) * BoundMargin * BoundMargin;
            return (err * scale, tail * scale);
        }
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
