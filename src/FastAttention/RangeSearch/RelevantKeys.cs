namespace FastAttention.RangeSearch;

/// <summary>
/// Relevant keys (Gupta et al. Definition 3.2, Lemma 3.2): for query i with maximum logit Mᵢ = maxⱼ s·qᵢ·kⱼ, key j is
/// relevant when s·qᵢ·kⱼ ≥ Mᵢ − T. The maximum is found exactly (sorted keys for d = 1, branch-and-bound maximum
/// inner-product search on the range tree otherwise), which is tighter than the paper's grid s_max·log(1 + ε).
/// <para>Accounting: every irrelevant key has weight e^{x−Mᵢ} ≤ e^{−T} relative to the maximal key (weight 1), so the
/// discarded fraction of the softmax mass is η ≤ m·e^{−T}. With p = (1 − η)·p⁽ʳ⁾ + η·p⁽ⁱʳʳ⁾ the output moves by
/// |o − o⁽ʳ⁾| = η·|o⁽ⁱʳʳ⁾ − o⁽ʳ⁾| ≤ 2η‖V‖∞ (Lemma 3.2 with the exact constant). T is chosen so that this is a given share of ε.</para>
/// </summary>
public sealed class RelevantKeys
{
    private RelevantKeys(double width, int keys) { Width = width; Keys = keys; }

    /// <summary>The threshold width T = log(2·m·‖V‖∞ / share) (at least 1): keys more than T below the maximum logit are irrelevant.</summary>
    public double Width { get; }
    /// <summary>m, the number of keys.</summary>
    public int Keys { get; }
    /// <summary>η ≤ m·e^{−T}: bound on the softmax mass of the irrelevant keys.</summary>
    public double DiscardedMass => Keys * Math.Exp(-Width);

    /// <summary>Bound 2η‖V‖∞ on ‖o − o⁽ʳ⁾‖∞ from discarding irrelevant keys (Lemma 3.2).</summary>
    public double OutputError(double vMax) => 2 * DiscardedMass * vMax;

    /// <summary>The threshold that makes the discarding error at most <paramref name="share"/>.</summary>
    public static RelevantKeys For(int keys, double vMax, double share)
    {
        if (keys < 1) throw new ArgumentOutOfRangeException(nameof(keys));
        if (!(share > 0)) throw new ArgumentOutOfRangeException(nameof(share));
        double t = vMax > 0 ? Math.Log(2.0 * keys * vMax / share) : 1;
        return new RelevantKeys(Math.Max(1.0, t), keys);
    }
}

/// <summary>
/// The error budget shared by the range-search family. ε is the absolute ‖·‖∞ error of the output. It is split into
/// discarding (ε/4, <see cref="RelevantKeys"/>), polynomial approximation and float64 rounding. If every weight's
/// computed contribution errs by at most ρ·(its true weight), in the sense |N̂ − N| ≤ ρ·Σwⱼ|vⱼ| ≤ ρ‖V‖∞Z and
/// |Ẑ − Z| ≤ ρZ for numerator N and denominator Z over the relevant keys, then
/// |N̂/Ẑ − N/Z| = |e_N − o·e_Z|/Ẑ ≤ 2ρ‖V‖∞/(1 − ρ). ρ = ε_P (polynomial, or the rounding scheme's ε′) + ρ_fp (logit and
/// evaluation rounding). The final division and the conversion to the output type add (2u + u_T)‖V‖∞.
/// </summary>
internal sealed class RangeErrorBudget
{
    /// <summary>Unit roundoff 2⁻⁵³.</summary>
    public const double U = Numerics.FloatingPoint.U;

    public RangeErrorBudget(string algorithm, double epsilon, double vMax, int keys, int d, double logitMagnitude, bool float32Output)
    {
        Epsilon = epsilon; VMax = vMax; LogitMagnitude = logitMagnitude;
        OutputRounding = (4 * U + (float32Output ? Numerics.FloatingPoint.UFloat32 : 0)) * vMax;
        double avail = epsilon - OutputRounding;
        if (!(avail >= 0.5 * epsilon))
            ThrowHelper.Refused(algorithm, float32Output ? RefusalReason.OutputPrecision : RefusalReason.Float64Reach, $"ε = {epsilon:G3} is too small for the output type: rounding the output alone costs {OutputRounding:G3} (‖V‖∞ = {vMax:G3}); use float64 or a larger ε.");
        Relevant = RelevantKeys.For(keys, vMax, 0.25 * avail);
        // 2ε_P‖V‖∞/(1 − ρ) ≤ avail/2 with room for ρ_fp (which gets the last quarter).
        PolynomialError = vMax > 0 ? Math.Min(0.05, 0.95 * 0.5 * avail / (2 * vMax)) : 0.05;
        if (PolynomialError < 1e-13)
            ThrowHelper.Refused(algorithm, RefusalReason.Float64Reach, $"ε = {epsilon:G3} is below float64's reach relative to ‖V‖∞ = {vMax:G3} (relative accuracy {PolynomialError:G2} < 1e-13 would be needed); ask for ε ≥ {4e-13 * vMax:G2}.");
        // 2ρ‖V‖∞/(1 − ρ) ≤ ¾·avail: the relative error the numerator and denominator may carry (range engine).
        RhoMax = vMax > 0 ? 0.75 * avail / (2 * vMax + 0.75 * avail) * (1 - 1e-9) : 0.05;
        // Rounding scheme: logit differences x − M from error-free products (TwoProduct) and a compensated sum against
        // the maximum held as a double-double, then scaled: |δx| ≤ 4u|x − M| + 16(d + 1)u²X, |x − M| ≤ 745 for weights
        // that do not underflow.
        double dx = 4 * U * (745 + 8) + 16.0 * (d + 1) * U * U * logitMagnitude;
        LogitRelativeError = Math.Exp(dx) - 1 + 2 * U; // + Math.Exp's own error
    }

    public double Epsilon { get; }
    public double VMax { get; }
    /// <summary>X ≥ max |s·qᵢ·kⱼ|.</summary>
    public double LogitMagnitude { get; }
    public RelevantKeys Relevant { get; }
    /// <summary>ε_P: relative error asked of the polynomial (or of the rounding scheme).</summary>
    public double PolynomialError { get; }
    /// <summary>The largest relative error ρ of numerator and denominator that keeps 2ρ‖V‖∞/(1 − ρ) within ¾ of the
    /// budget left after the output rounding (the discarding takes the other quarter).</summary>
    public double RhoMax { get; }
    /// <summary>Relative weight error from rounding in the logits (rounding scheme).</summary>
    public double LogitRelativeError { get; }
    /// <summary>Absolute rounding of the final division and the output conversion.</summary>
    public double OutputRounding { get; }

    /// <summary>The certified ‖·‖∞ bound given the measured rounding ρ_fp of the evaluation (besides logits) and the
    /// relative error actually achieved by the approximation (≤ <see cref="PolynomialError"/>).</summary>
    public double Bound(double approximationError, double evaluationRounding)
    {
        if (VMax == 0) return 0;
        double rho = approximationError + LogitRelativeError + evaluationRounding;
        if (!(rho < 0.5)) return double.PositiveInfinity;
        return Relevant.OutputError(VMax) + 2 * rho * VMax / (1 - rho) + OutputRounding;
    }

    /// <summary>The certified bound for a total relative error ρ of numerator and denominator, as named terms (range
    /// engine): the dropped keys, 2ρ‖V‖∞/(1 − ρ), and the output's division and conversion.</summary>
    public IReadOnlyList<ErrorTerm> TermsFromRho(double rho, string approximation = "approximation and float64 rounding (2ρ‖V‖∞/(1 − ρ))",
        string dropped = "dropped keys (Definition 3.2: more than T below the row maximum)")
    {
        if (VMax == 0) return [];
        double main = rho < 0.5 ? 2 * rho * VMax / (1 - rho) : double.PositiveInfinity;
        return
        [
            new(dropped, Relevant.OutputError(VMax)),
            new(approximation, main),
            new("output division and conversion", OutputRounding),
        ];
    }

    /// <summary>The bound of <see cref="Bound"/> as named terms (they add up to it).</summary>
    public IReadOnlyList<ErrorTerm> Terms(double approximationError, double evaluationRounding)
    {
        if (VMax == 0) return [];
        double rho = approximationError + LogitRelativeError + evaluationRounding;
        double main = rho < 0.5 ? 2 * rho * VMax / (1 - rho) : double.PositiveInfinity;
        return
        [
            new("dropped keys (Definition 3.2: more than T below the row maximum)", Relevant.OutputError(VMax)),
            new("approximation and float64 rounding (2ρ‖V‖∞/(1 − ρ))", main),
            new("output division and conversion", OutputRounding),
        ];
    }

    /// <summary>Returns <paramref name="terms"/> when their sum is within ε; otherwise refuses like <see cref="Certify(string, double)"/>.</summary>
    public IReadOnlyList<ErrorTerm> Certify(string algorithm, IReadOnlyList<ErrorTerm> terms)
    {
        Certify(algorithm, ErrorTerms.Sum(terms));
        return terms;
    }

    /// <summary>
    /// Returns <paramref name="bound"/> when it is within ε; otherwise refuses: the rounding measured during the run
    /// (ρ, known only afterwards) left the certificate above ε, which is a refusal, not a silent larger error.
    /// </summary>
    public double Certify(string algorithm, double bound)
    {
        if (!(bound <= Epsilon))
            ThrowHelper.Refused(algorithm, RefusalReason.MeasuredRounding, $"float64 rounding measured during the run leaves the certified bound at {bound:G3} > ε = {Epsilon:G3} (‖V‖∞ = {VMax:G3}, |logits| ≤ {LogitMagnitude:G3}); ask for ε ≥ {bound:G2}.");
        return bound;
    }

    /// <summary>max‖qᵢ‖₂ · max‖kⱼ‖₂ · |s|: a bound on every logit's magnitude.</summary>
    public static double LogitBound(ReadOnlySpan<double> q, int n, ReadOnlySpan<double> k, int m, int d, double scale)
    {
        double qm = 0, km = 0;
        for (int i = 0; i < n; i++) { double s = 0; for (int c = 0; c < d; c++) s += q[i * d + c] * q[i * d + c]; qm = Math.Max(qm, s); }
        for (int j = 0; j < m; j++) { double s = 0; for (int c = 0; c < d; c++) s += k[j * d + c] * k[j * d + c]; km = Math.Max(km, s); }
        return Math.Abs(scale) * Math.Sqrt(qm) * Math.Sqrt(km) * (1 + 4 * d * U);
    }

    /// <summary>Σ_c q_c·k_c − (yHi + yLo) with compensation (<see cref="Numerics.FloatingPoint.DotMinus"/>).</summary>
    public static double DotMinus(ReadOnlySpan<double> q, ReadOnlySpan<double> k, double yHi, double yLo) => Numerics.FloatingPoint.DotMinus(q, k, yHi, yLo);

    /// <summary>q·k as a double-double (<see cref="Numerics.FloatingPoint.Dot2"/>).</summary>
    public static (double Hi, double Lo) Dot2(ReadOnlySpan<double> q, ReadOnlySpan<double> k) => Numerics.FloatingPoint.Dot2(q, k);

    /// <summary>max |V|.</summary>
    public static double MaxAbs(ReadOnlySpan<double> v) => Numerics.FloatingPoint.MaxAbs(v);
}
