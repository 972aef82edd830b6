using FastAttention.Approximation;

namespace FastAttention.RangeSearch;

/// <summary>
/// The decoupled polynomial of Lemma 3.5 / Lemma A.3, applied per node with a centred expansion: for a node with centre
/// κ, orthonormal frame R and half-widths w, every key is k = κ + R·(w∘u) with u ∈ [−1, 1]^d, so
/// s·q·k = s·q·κ + b·u with b = (Rᵀ·s·q)∘w. When h = ‖b‖₁ ≤ H, t = b·u/H ∈ [−1, 1] and
/// e^{b·u} ≈ P_H(t) = Σ_ℓ α_ℓ tℓ = Σ_β c_β z^β u^β (z = b/H, c_β = α_|β|·multinomial(β)), whose relative error on [−1, 1]
/// is that of <see cref="ExpPolynomial"/> on [−H, H]. Nodes store the moments Σ_j u_j^β·v_j (and Σ_j u_j^β); a query
/// evaluates Σ_β c_β z^β·moment in O(C(g + d, d)) per value column. Every monomial is of the small, centred quantities
/// u and z (|u_k|, Σ|z_k| ≤ 1), so the evaluation's rounding is amplified by at most
/// <see cref="ConditionNumber"/> = e^H·Σ|α_ℓ| (numerics.md: keep polynomials short, centred and scaled).
/// Immutable.
/// </summary>
internal sealed class CentredExpansion
{
    private readonly int[] _parent, _axis;
    private readonly double[] _coef;
    private readonly int[] _exponents, _down;
    private readonly double[] _binomial;

    public CentredExpansion(int d, double halfWidth, double relativeError)
    {
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d));
        D = d; H = halfWidth;
        // Half of ε for the Chebyshev series (its proof), the rest for the monomial conversion (proven too).
        Polynomial = ExpPolynomial.Create(-halfWidth, halfWidth, 0.5 * relativeError);
        // Monomials in t = x/H (ExpPolynomial's centre is 0 here).
        var alpha = Polynomial.MonomialCoefficients();
        Degree = alpha.Length - 1;
        double monomial = Polynomial.MonomialRelativeErrorBound();
        if (!(monomial <= relativeError))
            ThrowHelper.Refused("range-search expansion", RefusalReason.Float64Reach, $"the monomial form of exp on [−{halfWidth}, {halfWidth}] has a proven float64 relative error of only {monomial:G3}, above the {relativeError:G3} asked; ask for a larger ε.");
        RelativeError = relativeError;
        double sumAbs = 0;
        foreach (double a in alpha) sumAbs += Math.Abs(a);
        ConditionNumber = Math.Exp(halfWidth) * sumAbs;

        // Multi-indices β with |β| ≤ g in graded order; each β > 0 is parent + e_axis with axis ≥ parent's last axis.
        var parent = new List<int> { -1 }; var axis = new List<int> { 0 }; var degree = new List<int> { 0 };
        var exps = new List<int[]> { new int[d] };
        int start = 0;
        for (int l = 1; l <= Degree; l++)
        {
            int end = parent.Count;
            for (int p = start; p < end; p++)
            {
                int from = p == 0 ? 0 : axis[p];
                for (int k = from; k < d; k++)
                {
                    var e = (int[])exps[p].Clone();
                    e[k]++;
                    parent.Add(p); axis.Add(k); degree.Add(l); exps.Add(e);
                }
            }
            start = end;
        }
        Terms = parent.Count;
        _parent = [.. parent]; _axis = [.. axis];
        // Exponents and the index of β − e_c (−1 when β_c = 0), for translating moments between centres.
        _exponents = new int[Terms * d];
        _down = new int[Terms * d];
        var index = new Dictionary<string, int>();
        for (int tIdx = 0; tIdx < Terms; tIdx++) index[string.Join(",", exps[tIdx])] = tIdx;
        for (int tIdx = 0; tIdx < Terms; tIdx++)
            for (int c = 0; c < d; c++)
            {
                _exponents[tIdx * d + c] = exps[tIdx][c];
                if (exps[tIdx][c] == 0) { _down[tIdx * d + c] = -1; continue; }
                var e = (int[])exps[tIdx].Clone();
                e[c]--;
                _down[tIdx * d + c] = index[string.Join(",", e)];
            }
        _binomial = new double[(Degree + 1) * (Degree + 1)];
        for (int a = 0; a <= Degree; a++)
        {
            _binomial[a * (Degree + 1)] = 1;
            for (int b = 1; b <= a; b++)
                _binomial[a * (Degree + 1) + b] = _binomial[(a - 1) * (Degree + 1) + b - 1] + (b <= a - 1 ? _binomial[(a - 1) * (Degree + 1) + b] : 0);
        }
        _coef = new double[Terms];
        for (int tIdx = 0; tIdx < Terms; tIdx++)
        {
            // multinomial(β) = |β|! / Π β_k!
            double mult = 1; int n = 0;
            foreach (int bk in exps[tIdx])
                for (int r = 1; r <= bk; r++) { n++; mult = mult * n / r; }
            _coef[tIdx] = alpha[degree[tIdx]] * mult;
        }
    }

    /// <summary>The verified Chebyshev interpolant of e^{H·t} (shared module).</summary>
    public ExpPolynomial Polynomial { get; }
    public int D { get; }
    /// <summary>Half-width H of the logit interval covered by one expansion.</summary>
    public double H { get; }
    /// <summary>Degree g.</summary>
    public int Degree { get; }
    /// <summary>Number of multi-indices C(g + d, d).</summary>
    public int Terms { get; }
    /// <summary>ε_P: |P_H(t) − e^{Ht}| ≤ ε_P·e^{Ht} on [−1, 1] in the monomial form used here.</summary>
    public double RelativeError { get; }
    /// <summary>e^H·Σ|α_ℓ|: bound on Σ_β|c_β z^β u^β| / e^{b·u} for Σ|z_k| ≤ 1, |u_k| ≤ 1.</summary>
    public double ConditionNumber { get; }

    /// <summary>pw[β] = x^β for all multi-indices (one multiplication each).</summary>
    public void Powers(ReadOnlySpan<double> x, Span<double> pw)
    {
        pw[0] = 1;
        for (int t = 1; t < pw.Length; t++) pw[t] = pw[_parent[t]] * x[_axis[t]];
    }

    /// <summary>wt[β] = c_β·z^β: the query-and-node part of Σ_β c_β z^β·moment_β.</summary>
    public void Weights(ReadOnlySpan<double> z, Span<double> wt)
    {
        Powers(z, wt);
        for (int t = 0; t < wt.Length; t++) wt[t] *= _coef[t];
    }

    /// <summary>
    /// Translates moments to a new centre and scale, one coordinate at a time: with u' = δ + σ∘u (a child box inside its
    /// parent box, |δ_c| + σ_c ≤ 1), u'^β = Π_c Σ_{j ≤ β_c} C(β_c, j)·δ_c^{β_c − j}·σ_c^j·u_c^j, so
    /// μ'[β] = Σ over the same multi-index set (closed under lowering one exponent). All coefficients are bounded by
    /// (|δ_c| + σ_c)^{β_c} ≤ 1, so each pass adds at most (2g + 2)u relative to Σ|v|. Adds the result to
    /// <paramref name="target"/>. <paramref name="work"/> holds 2·Terms doubles.
    /// </summary>
    public void TranslateAdd(ReadOnlySpan<double> source, ReadOnlySpan<double> delta, ReadOnlySpan<double> sigma, Span<double> target, Span<double> work)
    {
        int d = D, g = Degree, terms = Terms;
        var a = work[..terms]; var b = work.Slice(terms, terms);
        source.CopyTo(a);
        Span<double> dp = stackalloc double[g + 1]; Span<double> sp = stackalloc double[g + 1];
        for (int c = 0; c < d; c++)
        {
            dp[0] = 1; sp[0] = 1;
            for (int i = 1; i <= g; i++) { dp[i] = dp[i - 1] * delta[c]; sp[i] = sp[i - 1] * sigma[c]; }
            for (int t = 0; t < terms; t++)
            {
                int e = _exponents[t * d + c];
                // b[t] = Σ_{j=0}^{e} C(e, j) δ^{e−j} σ^j a[β with β_c = j]; walk down from j = e.
                double sum = 0;
                int idx = t;
                for (int j = e; j >= 0; j--)
                {
                    sum += _binomial[e * (g + 1) + j] * dp[e - j] * sp[j] * a[idx];
                    if (j > 0) idx = _down[idx * d + c];
                }
                b[t] = sum;
            }
            b.CopyTo(a);
        }
        for (int t = 0; t < terms; t++) target[t] += a[t];
    }

    /// <summary>Relative rounding bound (units of 2⁻⁵³) for one node's Σ_β c_β z^β·μ_β with moments summed over
    /// <paramref name="count"/> keys in chunks of <paramref name="chunk"/>: powers, coefficient, chunked sums, dot.</summary>
    /// <paramref name="translations"/> is the number of centre translations a moment went through (tree levels).
    public double NodeRoundingUnits(long count, int chunk, int translations = 0) =>
        2.0 * Degree + 4 * D + 12 + Terms + chunk + (double)count / chunk + translations * D * (2.0 * Degree + 4);
}
