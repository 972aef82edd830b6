namespace FastAttention.Polynomial;

/// <summary>
/// The error certificate of the polynomial method (Alman–Song Lemmas 3.5–3.6, sharpened, plus float64 rounding):
/// ‖T − Att‖∞ ≤ <see cref="Total"/>. Immutable; every term is an upper bound, so the total is one.
/// </summary>
/// <remarks>
/// <para><b>Approximation (Lemmas 3.5–3.6, sharpened).</b> Let Ã = A∘(1 + E) entrywise with |E_ij| ≤ ε_A &lt; 1 (here
/// Ã = P(s·QKᵀ), Lemma 3.4). Fix a row i and a column c. The exact output is Σ_j w_j V_jc with w_j = A_ij/D_i, the
/// approximate one Σ_j w̃_j V_jc with w̃_j = Ã_ij/D̃_i = w_j(1 + E_ij)/(1 + Ē), Ē = Σ_j w_j E_ij ∈ [−ε_A, ε_A]
/// (Lemma 3.5: |D̃_i − D_i| ≤ ε_A·D_i). Both weight vectors sum to 1, so for any μ
/// |Σ_j (w̃_j − w_j)V_jc| = |Σ_j (w̃_j − w_j)(V_jc − μ)| ≤ Σ_j |w̃_j − w_j| · max_j |V_jc − μ|.
/// Take μ the mid-range of column c, so the max is the half-range H_c ≤ ‖V‖∞. And
/// Σ_j |w̃_j − w_j| = Σ_j w_j |E_ij − Ē| / (1 + Ē) ≤ E_w|E − Ē| / (1 − ε_A) ≤ ε_A/(1 − ε_A),
/// because the mean absolute deviation of a variable with values in [−ε_A, ε_A] is at most √Var ≤ ε_A.
/// Hence ‖T − Att‖∞ ≤ ε_A·H/(1 − ε_A) with H = max_c H_c ≤ ‖V‖∞: half the paper's (ε_A + ε_D)·‖V‖∞ = 2ε_A‖V‖∞
/// (with ε_D = ε_A from Lemma 3.5), and never worse than 2ε_A/(1 − ε_A)·‖V‖∞.</para>
/// <para><b>Relative error of Ã.</b> ε_A = ε_P (the Chebyshev interpolant, <c>ExpPolynomial</c>) + ε_conv (its
/// conversion to monomials in float64: ≤ γ_{g+2}·Σ_k|c_k|·‖T_k‖₁·e^R) + ε_R (rounding of the scale factors that map
/// x = s⟨q,k⟩ to t = x/R: ≤ e^{R·γ₃} − 1).</para>
/// <para><b>Float64 evaluation.</b> Every product φ_α(qᵢ)ψ_α(kⱼ)V_jc reaches the computed numerator N̂ through at
/// most K roundings (inputs scaled, monomial products, coefficient, the sums over keys and over features, whatever
/// their order), so |N̂ − Ñ| ≤ γ_K·Σ_jΣ_α|φ_αψ_α||V_jc| ≤ γ_K·Σ_ℓ|a_ℓ|·m_i·‖V‖∞ (‖σ_q q‖·‖σ_k k‖ ≤ 1), likewise
/// |D̂ − D̃| ≤ γ_K·Σ|a_ℓ|·m_i, while D̃_i ≥ (1 − ε_A)·m_i·e^{−R}. With ρ = γ_K·Σ|a_ℓ|·e^R (γ_K times the monomial
/// condition number) and |Ñ/D̃| ≤ ‖V‖∞: |N̂/D̂ − Ñ/D̃| ≤ (|e_N| + |Ñ/D̃|·|e_D|)/D̂ ≤ 2ρ‖V‖∞/(1 − ε_A − ρ).
/// The final division and the conversion to the output type add u_out·|N̂/D̂|.</para>
/// </remarks>
public sealed record ErrorBudget
{
    /// <summary>Unit roundoff of float64, 2⁻⁵³.</summary>
    public const double Unit = Numerics.FloatingPoint.U;

    /// <summary>The requested ε (absolute, entrywise).</summary>
    public required double Epsilon { get; init; }
    /// <summary>ε_P: relative error of the Chebyshev interpolant of exp on [−R, R].</summary>
    public required double PolynomialError { get; init; }
    /// <summary>ε_conv: relative error added by the float64 monomial coefficients.</summary>
    public required double ConversionError { get; init; }
    /// <summary>ε_R: relative error from rounding the scale factors σ_q, σ_k.</summary>
    public required double ScaleError { get; init; }
    /// <summary>ρ = γ_K·Σ|a_ℓ|·e^R: relative float64 rounding of the low-rank evaluation.</summary>
    public required double EvaluationRounding { get; init; }
    /// <summary>‖V‖∞.</summary>
    public required double VMax { get; init; }
    /// <summary>max over columns of (max V − min V)/2, ≤ ‖V‖∞.</summary>
    public required double VHalfRange { get; init; }
    /// <summary>Relative rounding of the final division and output conversion (2⁻⁵² for float64, 2⁻²⁴ + 2⁻⁵² for float32).</summary>
    public required double OutputUnit { get; init; }

    /// <summary>ε_A = ε_P + ε_conv + ε_R: the relative error of every entry of Ã = U₁U₂ᵀ against A (Def. 3.1).</summary>
    public double EpsA => PolynomialError + ConversionError + ScaleError;
    /// <summary>Lemmas 3.5–3.6 (sharpened): ε_A·H/(1 − ε_A).</summary>
    public double ApproximationBound => NormalisedError(EpsA, VHalfRange);
    /// <summary>2ρ‖V‖∞/(1 − ε_A − ρ).</summary>
    public double RoundingBound => EpsA + EvaluationRounding < 1 ? 2 * EvaluationRounding * VMax / (1 - EpsA - EvaluationRounding) : double.PositiveInfinity;
    /// <summary>u_out·(‖V‖∞ + rounding bound): the last division and the cast to the output type.</summary>
    public double OutputRoundingBound => OutputUnit * (VMax + ApproximationBound + RoundingBound);
    /// <summary>The certified bound on ‖T − Att‖∞.</summary>
    public double Total => ErrorTerms.Sum(Terms);

    /// <summary>The bound as named terms (they add up to <see cref="Total"/>).</summary>
    public IReadOnlyList<ErrorTerm> Terms =>
    [
        new("approximation (Lemmas 3.5–3.6: ε_A·H/(1 − ε_A))", ApproximationBound),
        new("float64 evaluation rounding", RoundingBound),
        new("output rounding", OutputRoundingBound),
    ];

    /// <summary>Lemma 3.6 sharpened: a relative error ε_A on every entry of A moves each output entry by at most ε_A·H/(1 − ε_A).</summary>
    public static double NormalisedError(double epsA, double halfRange) =>
        epsA < 1 ? epsA * halfRange / (1 - epsA) : double.PositiveInfinity;

    /// <summary>The inverse of <see cref="NormalisedError"/>: the largest ε_A whose output error is at most <paramref name="budget"/>.</summary>
    public static double RelativeErrorFor(double budget, double halfRange) =>
        halfRange > 0 ? budget / (halfRange + budget) : 1;

    /// <summary>γ_k = k·u/(1 − k·u): the bound on k compounded float64 roundings (Higham, Lemma 3.1).</summary>
    public static double Gamma(double k) => Numerics.FloatingPoint.Gamma(k);
}
