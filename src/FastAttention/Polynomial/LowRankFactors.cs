using System.Numerics;
using System.Numerics.Tensors;

namespace FastAttention.Polynomial;

/// <summary>
/// Alman–Song Lemma 3.2 with the multinomial (not the paper's 2d-variable) expansion: for a polynomial
/// P(t) = Σ_ℓ a_ℓ tℓ in t = ⟨σ_q·q, σ_k·k⟩, the feature maps
/// φ(q)_α = a_{|α|}·(|α| choose α)·(σ_q q)^α and ψ(k)_α = (σ_k k)^α over all multi-indices |α| ≤ g satisfy
/// ⟨φ(q), ψ(k)⟩ = P(t) exactly, because tℓ = Σ_{|α|=ℓ} (ℓ choose α)·q̂^α·k̂^α. So U₁ = [φ(qᵢ)], U₂ = [ψ(kⱼ)] have
/// U₁U₂ᵀ = P(s·QKᵀ/R) with rank r = C(g + d, d), below the paper's C(2(g + d), 2g).
/// Immutable; the monomial order, parents and coefficients are computed once at construction.
/// </summary>
/// <remarks>
/// Monomial order: degree by degree; within degree ℓ, block i (i = 0..d−1) holds x_i·μ for the degree-(ℓ−1)
/// monomials μ whose smallest variable is ≥ i. Those μ form a contiguous suffix of degree ℓ−1, so every block is a
/// contiguous range times one variable — a row of monomials costs r multiplications, vectorised over rows.
/// </remarks>
public sealed class LowRankFactors
{
    private readonly double[] _monomial;      // a_ℓ in t (the polynomial)
    private readonly double[] _coefficients;  // a_{|α|}·multinomial(α), per feature
    private readonly int[] _degreeOf;         // |α| per feature
    private readonly int[][] _exponents;      // α per feature
    // Blocks: feature range [Dst, Dst + Len) = x_Var ⊙ features [Src, Src + Len).
    private readonly (int Dst, int Src, int Len, int Var)[] _blocks;

    /// <summary>Builds the factor maps for P(t) = Σ a_ℓ tℓ, t = ⟨σ_q q, σ_k k⟩ in dimension d.</summary>
    /// <param name="monomialCoefficients">a_0..a_g of P in the scaled variable t (<c>ExpPolynomial.MonomialCoefficients()</c>).</param>
    /// <param name="dimension">d, the length of q and k.</param>
    /// <param name="queryScale">σ_q (includes the logit scale s and its sign).</param>
    /// <param name="keyScale">σ_k.</param>
    public LowRankFactors(ReadOnlySpan<double> monomialCoefficients, int dimension, double queryScale, double keyScale)
    {
        if (monomialCoefficients.IsEmpty) ThrowHelper.Argument(nameof(monomialCoefficients), "the polynomial needs at least one coefficient.");
        if (dimension < 1) ThrowHelper.ArgumentOutOfRange(nameof(dimension), $"the dimension d must be at least 1 (got {dimension}).");
        if (!double.IsFinite(queryScale) || !double.IsFinite(keyScale))
            ThrowHelper.Argument(nameof(queryScale), $"the scales must be finite (got σ_q = {queryScale}, σ_k = {keyScale}).");
        int g = monomialCoefficients.Length - 1, d = dimension;
        double rank = NaturalRank(g, d);
        if (rank > int.MaxValue / 64)
            ThrowHelper.ArgumentOutOfRange(nameof(dimension), $"rank C(g + d, d) = C({g + d}, {d}) = {rank:G4} is too large to materialise.");
        int r = (int)rank;
        _monomial = monomialCoefficients.ToArray();
        Dimension = d; QueryScale = queryScale; KeyScale = keyScale;
        _coefficients = new double[r];
        _degreeOf = new int[r];
        _exponents = new int[r][];
        var multinomial = new double[r];
        var minVar = new int[r];
        var blocks = new List<(int, int, int, int)>();
        _exponents[0] = new int[d];
        multinomial[0] = 1;
        minVar[0] = d; // the constant monomial: "smallest variable" beyond every i
        int prevStart = 0, prevEnd = 1, next = 1;
        for (int l = 1; l <= g; l++)
        {
            int levelStart = next;
            for (int i = 0; i < d; i++)
            {
                // The suffix of degree l−1 whose smallest variable is ≥ i (contiguous by construction).
                int src = prevStart;
                while (src < prevEnd && minVar[src] < i) src++;
                int len = prevEnd - src;
                if (len == 0) continue;
                blocks.Add((next, src, len, i));
                for (int p = src; p < prevEnd; p++, next++)
                {
                    var e = (int[])_exponents[p].Clone();
                    e[i]++;
                    _exponents[next] = e;
                    _degreeOf[next] = l;
                    minVar[next] = i;
                    // multinomial(α) = multinomial(α − e_i)·ℓ/α_i (exact integers while below 2⁵³).
                    multinomial[next] = multinomial[p] * l / e[i];
                }
            }
            prevStart = levelStart; prevEnd = next;
        }
        if (next != r) ThrowHelper.InvalidOperation($"monomial enumeration produced {next} features, expected C(g + d, d) = {r}.");
        for (int f = 0; f < r; f++) _coefficients[f] = _monomial[_degreeOf[f]] * multinomial[f];
        MaxMultinomial = multinomial.Max();
        _blocks = blocks.ToArray();
    }

    /// <summary>d.</summary>
    public int Dimension { get; }
    /// <summary>The polynomial degree g.</summary>
    public int Degree => _monomial.Length - 1;
    /// <summary>The rank r = C(g + d, d): the number of monomials of degree ≤ g in d variables.</summary>
    public int Rank => _coefficients.Length;
    /// <summary>The paper's rank bound C(2(g + d), 2g) (Lemma 3.2), for comparison.</summary>
    public double PaperRankBound => Binomial(2 * (Degree + Dimension), 2 * Degree);
    /// <summary>σ_q: the query row is scaled by this before the monomials are taken.</summary>
    public double QueryScale { get; }
    /// <summary>σ_k.</summary>
    public double KeyScale { get; }
    /// <summary>The largest multinomial coefficient (exactly representable when below 2⁵³).</summary>
    public double MaxMultinomial { get; }
    /// <summary>a_ℓ: P(t) = Σ a_ℓ tℓ.</summary>
    public ReadOnlySpan<double> MonomialCoefficients => _monomial;
    /// <summary>Per feature α: a_{|α|}·(|α| choose α); ⟨φ(q), ψ(k)⟩ = Σ_α Coefficients[α]·q̂^α·k̂^α.</summary>
    public ReadOnlySpan<double> Coefficients => _coefficients;
    /// <summary>The exponent vector α of feature f.</summary>
    public ReadOnlySpan<int> Exponents(int feature) => _exponents[feature];
    /// <summary>Σ_ℓ |a_ℓ|: bounds Σ_α |φ_α(q)ψ_α(k)| when ‖σ_q q‖·‖σ_k k‖ ≤ 1 (used by the rounding bound).</summary>
    public double AbsoluteCoefficientSum => _monomial.Sum(Math.Abs);

    /// <summary>r = C(g + d, d) as a double (may exceed int).</summary>
    public static double NaturalRank(int degree, int dimension) => Binomial(degree + dimension, dimension);

    /// <summary>C(n, k) in double (exact while it fits 2⁵³).</summary>
    public static double Binomial(int n, int k)
    {
        if (k < 0 || k > n) return 0;
        k = Math.Min(k, n - k);
        double c = 1;
        for (int i = 1; i <= k; i++) c = c * (n - k + i) / i;
        return Math.Round(c) is var rc && rc < 9007199254740992.0 ? rc : c;
    }

    /// <summary>P(t) = Σ a_ℓ tℓ by Horner (for tests and diagnostics).</summary>
    public double Polynomial(double t)
    {
        double p = 0;
        for (int l = _monomial.Length - 1; l >= 0; l--) p = Math.FusedMultiplyAdd(p, t, _monomial[l]);
        return p;
    }

    /// <summary>
    /// Monomials of a block of rows, structure-of-arrays: <paramref name="scaled"/> holds the scaled inputs
    /// column-major (variable i of row j at [i·stride + j]); <paramref name="monomials"/> receives monomial f of row j
    /// at [f·stride + j], for j &lt; <paramref name="rows"/>. Costs r·rows multiplications, vectorised over rows.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal void Monomials(ReadOnlySpan<double> scaled, int rows, int stride, Span<double> monomials)
    {
        monomials.Slice(0, rows).Fill(1.0);
        foreach (var (dst, src, len, v) in _blocks)
        {
            var x = scaled.Slice(v * stride, rows);
            for (int p = 0; p < len; p++)
                TensorPrimitives.Multiply(monomials.Slice((src + p) * stride, rows), x, monomials.Slice((dst + p) * stride, rows));
        }
    }

    /// <summary>
    /// Monomials of one row (array-of-structures): <paramref name="monomials"/>[f] = x^α_f for the scaled input
    /// <paramref name="scaled"/> (length d). Costs r multiplications; used by the causal method's row-by-row stream.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    internal void MonomialsRow(ReadOnlySpan<double> scaled, Span<double> monomials)
    {
        monomials[0] = 1.0;
        foreach (var (dst, src, len, v) in _blocks)
        {
            double x = scaled[v];
            if (len >= 8)
                TensorPrimitives.Multiply(monomials.Slice(src, len), x, monomials.Slice(dst, len));
            else
                for (int p = 0; p < len; p++) monomials[dst + p] = monomials[src + p] * x;
        }
    }

    /// <summary>U₁ (n×r, row-major): row i is φ(qᵢ) (Lemma 3.2). Materialised: for tests and small problems only.</summary>
    public double[] QueryFactor<T>(ReadOnlySpan<T> q, int rows) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var u = Materialise(q, rows, QueryScale);
        for (int i = 0; i < rows; i++)
            TensorPrimitives.Multiply(u.AsSpan(i * Rank, Rank), _coefficients, u.AsSpan(i * Rank, Rank));
        return u;
    }

    /// <summary>U₂ (m×r, row-major): row j is ψ(kⱼ) (Lemma 3.2).</summary>
    public double[] KeyFactor<T>(ReadOnlySpan<T> k, int rows) where T : unmanaged, IBinaryFloatingPointIeee754<T> =>
        Materialise(k, rows, KeyScale);

    private double[] Materialise<T>(ReadOnlySpan<T> x, int rows, double scale) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int d = Dimension, r = Rank;
        if (x.Length != rows * d) ThrowHelper.Argument(nameof(x), $"expected {rows}×{d} = {rows * d} entries, got {x.Length}.");
        var scaled = new double[d * rows];
        for (int j = 0; j < rows; j++)
            for (int i = 0; i < d; i++)
                scaled[i * rows + j] = scale * double.CreateTruncating(x[j * d + i]);
        var soa = new double[r * rows];
        Monomials(scaled, rows, rows, soa);
        var u = new double[rows * r];
        for (int f = 0; f < r; f++)
            for (int j = 0; j < rows; j++)
                u[j * r + f] = soa[f * rows + j];
        return u;
    }
}
