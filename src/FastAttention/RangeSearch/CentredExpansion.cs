using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using FastAttention.Exact;

namespace FastAttention.RangeSearch;

/// <summary>
/// The decoupled polynomial of Gupta et al. Lemma 3.5 / Lemma A.3 (the exp polynomial of Lemma 3.3), applied per tree
/// node with a centred expansion: a node with centre κ, frame E and half-extents w holds keys k = κ + E·(w∘u),
/// u ∈ [−1, 1]^d, so s·q·k = s·q·κ + b·u with b = (s·Eᵀq)∘w. When h = ‖b‖₁ ≤ H, t = b·u/H ∈ [−1, 1] and
/// e^{b·u} ≈ P(t) = Σ_ℓ α_ℓ tℓ = Σ_β c_β z^β u^β (z = b/H, c_β = α_|β|·multinomial(β)). Nodes store the moments
/// Σ_j u_j^β·(1, v_j) (already multiplied by c_β, see <see cref="FoldCoefficients"/>); a query evaluates Σ_β z^β·moment_β.
/// <para><b>The polynomial and its proof.</b> P is the Chebyshev series e^{Ht} = I₀(H) + 2Σ_{k≥1} I_k(H)·T_k(t)
/// (Abramowitz–Stegun 9.6.34) truncated at degree g and written in monomials (α_ℓ = Hℓ/ℓ! minus the truncated tail's
/// monomial coefficients, which avoids the cancellation of converting large Chebyshev terms). Acceptance is a proof,
/// not a sample: with P's float64 coefficients α converted back to the Chebyshev basis (p_k = Σ_ℓ α_ℓ·C(ℓ, j)/2^(ℓ−1),
/// all terms of one sign, rounding bounded), |P(t) − e^{Ht}| ≤ Σ_{k≤g} |p_k − c_k| + Σ_{k&gt;g} c_k on [−1, 1], where every
/// c_k = 2I_k(H) is enclosed by its positive power series with a rounding bound and the tail by
/// I_k(H) ≤ (H/2)^k/k!·e^{H²/(4(k+1))}. The result <see cref="AbsoluteError"/> is an absolute, uniform bound, used
/// against the row's mass (the node's keys weigh at least e^{−h} of its centre weight; see the engine's certificate).</para>
/// <para>Evaluation rounding: every monomial is of small centred quantities (|u_k| ≤ 1, Σ|z_k| ≤ 1), so the rounding of
/// Σ_β z^β·c_β·μ_β is at most a few units of 2⁻⁵³ times Σ_β |c_β||z|^β·Σ_j|v_j| = <see cref="Magnitude"/>(h)·Σ_j|v_j|.</para>
/// Multi-indices are kept in lexicographic order so that, for a fixed prefix (β₁ … β_{d−1}), the last exponent runs over
/// a contiguous row: powers are then one vector multiply per row. Immutable.
/// </summary>
internal sealed class CentredExpansion
{
    private const double U = Numerics.FloatingPoint.U;

    private readonly double[] _alpha;
    private readonly int[] _rowStart, _rowLength, _rowParent, _rowAxis;
    private readonly double[] _coef;
    // For each coordinate c, the chains β, β + e_c, β + 2e_c, … (β_c = 0) as index lists: translations walk them.
    private readonly int[][] _chainIndex, _chainStart;
    private readonly double[] _binomial;
    private readonly double[] _magnitude; // Magnitude(H·i/256), i = 0 … 256

    // Run once per (d, H, ε) with long loops: optimised at once rather than in tier-0 code (10 ms of planning).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private CentredExpansion(int d, double halfWidth, int degree, double[] alpha, double proven)
    {
        D = d; H = halfWidth; Degree = degree; _alpha = alpha; AbsoluteError = proven;
        double sum = 0;
        foreach (double a in alpha) sum += Math.Abs(a);
        CoefficientSum = sum * (1 + 2 * (degree + 2) * U);

        // Multi-indices β (|β| ≤ g) in lexicographic order; rows = fixed prefix (β₁ … β_{d−1}).
        var exps = new List<int[]>();
        var rowStart = new List<int>(); var rowLength = new List<int>(); var rowParent = new List<int>(); var rowAxis = new List<int>();
        var rowIndex = new Dictionary<long, int>();
        long Key(ReadOnlySpan<int> e) { long x = 0; foreach (int v in e) x = x * (degree + 1) + v; return x; }
        var prefix = new int[Math.Max(0, d - 1)];
        void Rows(int c, int used)
        {
            if (c == d - 1)
            {
                int r = rowStart.Count;
                rowIndex[Key(prefix)] = r;
                // Parent row: decrement the last nonzero prefix exponent.
                int axis = -1;
                for (int t = d - 2; t >= 0; t--) if (prefix[t] > 0) { axis = t; break; }
                int parent = -1;
                if (axis >= 0)
                {
                    prefix[axis]--;
                    parent = rowIndex[Key(prefix)];
                    prefix[axis]++;
                }
                rowStart.Add(exps.Count); rowLength.Add(degree - used + 1); rowParent.Add(parent); rowAxis.Add(axis);
                for (int last = 0; last <= degree - used; last++)
                {
                    var e = new int[d];
                    for (int t = 0; t < d - 1; t++) e[t] = prefix[t];
                    e[d - 1] = last;
                    exps.Add(e);
                }
                return;
            }
            for (int x = 0; x <= degree - used; x++) { prefix[c] = x; Rows(c + 1, used + x); }
            prefix[c] = 0;
        }
        Rows(0, 0);
        Terms = exps.Count;
        _rowStart = [.. rowStart]; _rowLength = [.. rowLength]; _rowParent = [.. rowParent]; _rowAxis = [.. rowAxis];
        var index = new Dictionary<long, int>();
        for (int t = 0; t < Terms; t++) index[Key(exps[t])] = t;
        _chainIndex = new int[d][]; _chainStart = new int[d][];
        for (int c = 0; c < d; c++)
        {
            var idx = new List<int>(); var starts = new List<int>();
            for (int t = 0; t < Terms; t++)
            {
                if (exps[t][c] != 0) continue;
                starts.Add(idx.Count);
                var e = (int[])exps[t].Clone();
                int used = 0;
                foreach (int x in e) used += x;
                for (int step = 0; used + step <= degree; step++)
                {
                    idx.Add(index[Key(e)]);
                    e[c]++;
                }
            }
            starts.Add(idx.Count);
            _chainIndex[c] = [.. idx]; _chainStart[c] = [.. starts];
        }
        _binomial = Pascal(degree + d);
        _magnitude = new double[MagnitudeSteps + 1];
        for (int i = 0; i <= MagnitudeSteps; i++) _magnitude[i] = MagnitudeAt((double)i / MagnitudeSteps);
        _coef = new double[Terms];
        for (int t = 0; t < Terms; t++)
        {
            // multinomial(β) = Π_c C(β₁ + … + β_c, β_c), each binomial from Pascal's triangle.
            double mult = 1; int run = 0;
            foreach (int bk in exps[t]) { run += bk; mult *= _binomial[run * (degree + d + 1) + bk]; }
            int l = 0;
            foreach (int bk in exps[t]) l += bk;
            _coef[t] = alpha[l] * mult;
        }
    }

    /// <summary>
    /// The expansion of e^{Ht} on [−1, 1] of the lowest degree whose proven uniform error is at most
    /// <paramref name="absoluteError"/>. Refuses (Float64Reach) when no degree ≤ <paramref name="maxDegree"/> reaches it
    /// in float64 (the coefficients' own rounding is about 2⁻⁵³·e^H).
    /// </summary>
    public static CentredExpansion Create(int d, double halfWidth, double absoluteError, int maxDegree = 160) =>
        TryCreate(d, halfWidth, absoluteError, int.MaxValue, maxDegree)!;

    /// <summary>As <see cref="Create"/>, but null (no tables built) when the degree it needs has more than
    /// <paramref name="maxTerms"/> multi-indices C(g + d, d).</summary>
    /// <remarks>The requested error is first rounded down to a quarter step of its binade (a more accurate expansion is still a
    /// valid one), so equal requests up to that rounding share one immutable expansion from a process-wide cache: the
    /// planner asks for the same few (d, H, error) on every head, and proving and tabulating a degree-30 expansion in
    /// d = 3 costs milliseconds.</remarks>
    public static CentredExpansion? TryCreate(int d, double halfWidth, double absoluteError, int maxTerms, int maxDegree = 160)
    {
        if (d < 1) throw new ArgumentOutOfRangeException(nameof(d));
        if (!(halfWidth > 0 && halfWidth <= 64)) throw new ArgumentOutOfRangeException(nameof(halfWidth));
        if (!(absoluteError > 0)) throw new ArgumentOutOfRangeException(nameof(absoluteError));
        // absoluteError = μ·2^k with μ ∈ [1, 2): rounded down to (⌊4μ⌋/4)·2^k, exact in float64 and never above it.
        int k = Math.ILogB(absoluteError);
        int quarter = 4 * k + (int)Math.Floor(4 * Math.ScaleB(absoluteError, -k)) - 4;
        double requested = Math.ScaleB(Math.Floor(4 * Math.ScaleB(absoluteError, -k)) / 4, k);
        var key = (d, halfWidth, quarter, maxDegree);
        if (!Cache.TryGetValue(key, out var entry))
        {
            entry = Search(d, halfWidth, requested, maxDegree);
            if (Cache.Count >= 256) Cache.Clear();
            Cache[key] = entry;
        }
        if (entry.Degree < 0)
            ThrowHelper.Refused("range-search expansion", RefusalReason.Float64Reach, $"no polynomial of degree ≤ {maxDegree} approximates e^(Ht) on [−1, 1] (H = {halfWidth:G3}) within {absoluteError:G3} in float64 (its coefficients' own rounding is ≈ 2⁻⁵³·e^H = {U * Math.Exp(halfWidth):G3}); use a smaller H or a larger ε.");
        if (entry.Terms > maxTerms) return null;
        if (entry.Expansion is null)
        {
            entry = entry with { Expansion = new CentredExpansion(d, halfWidth, entry.Degree, entry.Alpha!, entry.Proven) };
            Cache[key] = entry;
        }
        return entry.Expansion;
    }

    private readonly record struct CacheEntry(int Degree, double Terms, double[]? Alpha, double Proven, CentredExpansion? Expansion);

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(int D, double H, int Quarter, int MaxDegree), CacheEntry> Cache = new();

    /// <summary>The lowest degree whose proven error is within the request (Degree −1 when none up to maxDegree is).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static CacheEntry Search(int d, double halfWidth, double absoluteError, int maxDegree)
    {
        var (lo, hi) = ChebyshevEnclosures(halfWidth, maxDegree + 1);
        int start = Math.Max(1, (int)Math.Floor(0.5 * halfWidth));
        for (int g = start; g <= maxDegree; g++)
        {
            if (TailBound(halfWidth, g) > absoluteError) continue;
            var alpha = MonomialCoefficients(halfWidth, g, lo, hi);
            double proven = ProveBound(alpha, lo, hi, halfWidth, g);
            if (proven > absoluteError) continue;
            double terms = 1;
            for (int i = 1; i <= d; i++) terms = terms * (g + i) / i;
            return new CacheEntry(g, terms, alpha, proven, null);
        }
        return new CacheEntry(-1, 0, null, 0, null);
    }

    public int D { get; }
    /// <summary>Half-width H of the logit interval one expansion covers (h = ‖b‖₁ ≤ H).</summary>
    public double H { get; }
    /// <summary>Degree g.</summary>
    public int Degree { get; }
    /// <summary>Number of multi-indices C(g + d, d).</summary>
    public int Terms { get; }
    /// <summary>Proven: |P(t) − e^{Ht}| ≤ AbsoluteError for every t ∈ [−1, 1], P with exactly the float64 coefficients used.</summary>
    public double AbsoluteError { get; }
    /// <summary>Σ_ℓ |α_ℓ| (rounded up).</summary>
    public double CoefficientSum { get; }
    /// <summary>Monomial coefficients α_ℓ of P(t).</summary>
    public ReadOnlySpan<double> Coefficients => _alpha;

    /// <summary>Σ_ℓ |α_ℓ|·(h/H)^ℓ = Σ_β |c_β|·|z|^β for ‖z‖₁ = h/H (rounded up): the magnitude every term of a node's
    /// evaluation is bounded by, relative to Σ_j |v_j|.</summary>
    public double Magnitude(double h) => MagnitudeAt(Ratio(h));

    // h/H·(1 + 8u) covers the rounding of h and of z = a·w/H against the exact ‖z‖₁ (d ≤ 5).
    private double Ratio(double h) => Math.Min(1, h / H * (1 + 8 * U));

    private double MagnitudeAt(double r)
    {
        double s = 0;
        for (int l = Degree; l >= 0; l--) s = s * r + Math.Abs(_alpha[l]);
        return s * (1 + 3 * (Degree + 2) * U);
    }

    /// <summary>An upper bound on <see cref="Magnitude"/>(h) by table lookup (the per-node bound of the evaluation's
    /// rounding): Horner's rule on positive coefficients is non-decreasing in r even in rounded arithmetic, so the value
    /// at the next grid point r ≤ k/256 (exact in binary) is at least it — at most a few percent larger, on a term that is
    /// 10⁻¹⁰ of the polynomial's own error.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public double MagnitudeAtMost(double h) => _magnitude[Math.Min(MagnitudeSteps, (int)(Ratio(h) * MagnitudeSteps) + 1)];

    private const int MagnitudeSteps = 256;

    /// <summary>P(t) in plain Horner (for tests).</summary>
    public double Evaluate(double t)
    {
        double s = 0;
        for (int l = Degree; l >= 0; l--) s = s * t + _alpha[l];
        return s;
    }

    /// <summary>Rounding of one node's evaluation Σ_β z^β·(c_β μ_β), in units of 2⁻⁵³ relative to
    /// <see cref="Magnitude"/>(h)·Σ_j|v_j|, besides the moments' own rounding: z from b (4 roundings) raised to |β| ≤ g
    /// (≤ 5g), the dot over all terms, and the centre weight's product.</summary>
    public double EvaluationUnits => 5.0 * Degree + Terms + 8;

    /// <summary>Rounding (units of 2⁻⁵³, relative to Σ_j|u^β||v_j|) of folding c_β into a moment: the multinomial from
    /// Pascal's triangle and two products.</summary>
    public double FoldUnits => Degree + D + 3;

    /// <summary>Rounding (units, relative to Σ|v|) of one translation of moments to a parent box (d passes of
    /// Σ_j C(e, j)·δ^{e−j}σ^j·a_j with Σ|coefficients| ≤ 1).</summary>
    public double TranslationUnits => D * (2.0 * Degree + 4);

    /// <summary>pw[β] = x^β for all multi-indices (at most |β| roundings each).</summary>
    public void Powers(ReadOnlySpan<double> x, Span<double> pw, Span<double> work)
    {
        var last = work[..(Degree + 1)];
        var prefix = work.Slice(Degree + 1, _rowStart.Length);
        RowPowers(x, last, prefix);
        for (int r = 0; r < _rowStart.Length; r++)
        {
            double p = prefix[r];
            int start = _rowStart[r], len = _rowLength[r];
            for (int j = 0; j < len; j++) pw[start + j] = p * last[j];
        }
    }

    /// <summary>Doubles a masked vector tail may read past a row's or a column's end (Vector512: 8 lanes, at least one
    /// of them valid): moment arrays given to <see cref="Evaluate(ReadOnlySpan{double}, ReadOnlySpan{double}, int, Span{double}, Span{double})"/>
    /// carry this much padding past the last column, and <see cref="PowersWork"/> this much past the last power.</summary>
    public const int Padding = 7;

    /// <summary>Scratch length <see cref="Powers"/> and <see cref="Evaluate(ReadOnlySpan{double}, ReadOnlySpan{double}, int, Span{double}, Span{double})"/>
    /// need: the last coordinate's powers (g + 1, then <see cref="Padding"/> zeros a row's last vector reads) and the row prefixes.</summary>
    public int PowersWork => Degree + 1 + Padding + _rowStart.Length;

    /// <summary>Powers of the last coordinate (x_d^j, j ≤ g) and each row's prefix product Π_{c&lt;d} x_c^{β_c}.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RowPowers(ReadOnlySpan<double> x, Span<double> last, Span<double> prefix)
    {
        int d = D, g = Degree;
        PowerChains(x[d - 1], last[..(g + 1)]);
        if (d == 2)
        {
            // Rows are x₁^a, a = 0 … g, in order: the same two chains.
            PowerChains(x[0], prefix[..(g + 1)]);
            return;
        }
        double prev = 1;
        prefix[0] = 1;
        for (int r = 1; r < _rowStart.Length; r++)
        {
            int parent = _rowParent[r];
            prev = (parent == r - 1 ? prev : prefix[parent]) * x[_rowAxis[r]];
            prefix[r] = prev;
        }
    }

    /// <summary>p[j] = x^j for j &lt; p.Length in two chains (even powers by x², odd ones x·x² …, each in a register, so a
    /// step waits for one multiply, not a store-to-load forward): x^j carries j − 1 roundings, as one chain would.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PowerChains(double x, Span<double> p)
    {
        int n = p.Length;
        p[0] = 1;
        if (n == 1) return;
        p[1] = x;
        double x2 = x * x, even = 1, odd = x;
        int j = 2;
        for (; j + 1 < n; j += 2)
        {
            even *= x2; odd *= x2;
            p[j] = even; p[j + 1] = odd;
        }
        if (j < n) p[j] = even * x2;
    }

    /// <summary>
    /// result[c] = Σ_β z^β·moments[c·Terms + β] for c &lt; <paramref name="columns"/>, row by row: each power z^β (a row
    /// prefix times a power of the last coordinate, one rounding more than its factors) is formed in a register and
    /// multiplied into three columns' sums at once — no power vector stored and read back — at SimdInfo's widest width up
    /// to 256 bits (Vector128 where that is the widest). 512 bits is not the default: on an AMD Zen 4 (512-bit operations
    /// issued as two 256-bit halves) it measured between 6 % faster and 50 % slower than 256 bits (slower in most cases), in cache and out, at d = 1…4 — rows are short
    /// (a d = 2 row averages g/2 terms), so a wider masked tail wastes more, and the node's moment reads, not the FMAs,
    /// set the pace. A row's last vector is masked to its length (the masked lanes add exact zeros; the moments
    /// they read are the next row's, or the <see cref="Padding"/> doubles <paramref name="moments"/> must have past the
    /// last column). Rounding ≤ (2g + Terms + 3)u relative to Σ_β |z^β||moment_β| whatever the order of the sums (within
    /// <see cref="EvaluationUnits"/>), so every width has the same bound.
    /// </summary>
    public void Evaluate(ReadOnlySpan<double> z, ReadOnlySpan<double> moments, int columns, Span<double> result, Span<double> work) =>
        Evaluate(z, moments, columns, result, work, Math.Min(8, SimdInfo.Float32Lanes));

    /// <summary>As above at <paramref name="float32Lanes"/> (16, 8, 4 or 1, resolved by SimdInfo: never silently
    /// narrowed; the tests run each width the CPU has against the scalar form).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Evaluate(ReadOnlySpan<double> z, ReadOnlySpan<double> moments, int columns, Span<double> result, Span<double> work, int float32Lanes)
    {
        int g = Degree, terms = Terms, rows = _rowStart.Length;
        if (moments.Length < columns * terms + Padding || work.Length < PowersWork || result.Length < columns)
            throw new ArgumentException("moments (with Padding doubles past the last column), scratch or result too short");
        var last = work[..(g + 1 + Padding)];
        var prefix = work.Slice(g + 1 + Padding, rows);
        RowPowers(z, last, prefix);
        last[(g + 1)..].Clear();
        switch (SimdInfo.Resolve(float32Lanes))
        {
            case 16: EvaluateRows<Vector512<double>, Simd512D>(last, prefix, moments, columns, result); return;
            case 8: EvaluateRows<Vector256<double>, Simd256D>(last, prefix, moments, columns, result); return;
            case 4: EvaluateRows<Vector128<double>, Simd128D>(last, prefix, moments, columns, result); return;
        }
        for (int c = 0; c < columns; c++)
        {
            double sum = 0;
            for (int r = 0; r < rows; r++)
            {
                double p = prefix[r];
                int start = _rowStart[r], len = _rowLength[r];
                for (int j = 0; j < len; j++) sum = Math.FusedMultiplyAdd(p * last[j], moments[c * terms + start + j], sum);
            }
            result[c] = sum;
        }
    }

    private const int MaxLanes = 8;
    // MaxLanes ones then MaxLanes zeros: read from MaxLanes − k, a vector's first k lanes are 1 and the rest 0.
    private static readonly double[] HeadMask = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0];

    /// <summary>The vector form of <see cref="Evaluate(ReadOnlySpan{double}, ReadOnlySpan{double}, int, Span{double}, Span{double}, int)"/>:
    /// two vectors of a row per step for three columns (six sums in registers), the row's tail masked by a 0/1 multiply.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void EvaluateRows<TV, TS>(Span<double> last, Span<double> prefix, ReadOnlySpan<double> moments, int columns, Span<double> result)
        where TV : unmanaged where TS : ISimd<double, TV>
    {
        int terms = Terms, rows = _rowStart.Length, w = TS.Count;
        ref double lr = ref MemoryMarshal.GetReference(last);
        ref double mr = ref MemoryMarshal.GetReference(moments);
        ref double mask = ref MemoryMarshal.GetArrayDataReference(HeadMask);
        int[] rowStart = _rowStart, rowLength = _rowLength;
        for (int cg = 0; cg < columns; cg += 3)
        {
            // Three columns per pass (a missing third or second reads the first again; its sums are dropped).
            int o0 = cg * terms, o1 = cg + 1 < columns ? o0 + terms : o0, o2 = cg + 2 < columns ? o0 + 2 * terms : o0;
            var a0 = TS.Zero; var a1 = a0; var a2 = a0; var b0 = a0; var b1 = a0; var b2 = a0;
            for (int r = 0; r < rows; r++)
            {
                var p = TS.Broadcast(prefix[r]);
                int start = rowStart[r], len = rowLength[r], j = 0;
                for (; j + 2 * w <= len; j += 2 * w)
                {
                    int at = start + j;
                    var w0 = TS.Mul(p, TS.Load(ref Unsafe.Add(ref lr, j)));
                    var w1 = TS.Mul(p, TS.Load(ref Unsafe.Add(ref lr, j + w)));
                    a0 = TS.Fma(w0, TS.Load(ref Unsafe.Add(ref mr, o0 + at)), a0);
                    a1 = TS.Fma(w0, TS.Load(ref Unsafe.Add(ref mr, o1 + at)), a1);
                    a2 = TS.Fma(w0, TS.Load(ref Unsafe.Add(ref mr, o2 + at)), a2);
                    b0 = TS.Fma(w1, TS.Load(ref Unsafe.Add(ref mr, o0 + at + w)), b0);
                    b1 = TS.Fma(w1, TS.Load(ref Unsafe.Add(ref mr, o1 + at + w)), b1);
                    b2 = TS.Fma(w1, TS.Load(ref Unsafe.Add(ref mr, o2 + at + w)), b2);
                }
                if (j + w <= len)
                {
                    int at = start + j;
                    var w0 = TS.Mul(p, TS.Load(ref Unsafe.Add(ref lr, j)));
                    a0 = TS.Fma(w0, TS.Load(ref Unsafe.Add(ref mr, o0 + at)), a0);
                    a1 = TS.Fma(w0, TS.Load(ref Unsafe.Add(ref mr, o1 + at)), a1);
                    a2 = TS.Fma(w0, TS.Load(ref Unsafe.Add(ref mr, o2 + at)), a2);
                    j += w;
                }
                if (j < len)
                {
                    int at = start + j;
                    var w1 = TS.Mul(TS.Mul(p, TS.Load(ref Unsafe.Add(ref lr, j))), TS.Load(ref Unsafe.Add(ref mask, MaxLanes - (len - j))));
                    b0 = TS.Fma(w1, TS.Load(ref Unsafe.Add(ref mr, o0 + at)), b0);
                    b1 = TS.Fma(w1, TS.Load(ref Unsafe.Add(ref mr, o1 + at)), b1);
                    b2 = TS.Fma(w1, TS.Load(ref Unsafe.Add(ref mr, o2 + at)), b2);
                }
            }
            result[cg] = TS.SumAcross(TS.Add(a0, b0));
            if (cg + 1 < columns) result[cg + 1] = TS.SumAcross(TS.Add(a1, b1));
            if (cg + 2 < columns) result[cg + 2] = TS.SumAcross(TS.Add(a2, b2));
        }
    }

    /// <summary>Keys per <see cref="AccumulateKeys(ReadOnlySpan{double}, ReadOnlySpan{double}, int, int, Span{double}, Span{double})"/> call: their powers stay in L1 (≈ 12–24 KB of scratch).</summary>
    public int KeyBlock => Math.Clamp(3072 / (KeyPowerStride + _rowStart.Length + ValueStride(8)), 8, 64);

    /// <summary>Scratch length <see cref="AccumulateKeys(ReadOnlySpan{double}, ReadOnlySpan{double}, int, int, Span{double}, Span{double})"/> needs for blocks of <see cref="KeyBlock"/> keys and dv values.</summary>
    public int AccumulateWork(int dv) => KeyBlock * (KeyPowerStride + _rowStart.Length + ValueStride(dv));

    // A key's last-coordinate powers: g + 1, then Padding zeros (a row's last vectors read up to g + 7).
    private int KeyPowerStride => Degree + 1 + Padding;

    // Value columns per key, the weight's 1 first, padded to whole groups of three.
    private static int ValueStride(int dv) => (dv + 1 + 2) / 3 * 3;

    /// <summary>
    /// Adds the moments of <paramref name="count"/> ≤ <see cref="KeyBlock"/> keys (centred coordinates <paramref name="u"/>,
    /// key-major, count × d; values key-major, count × dv): part[β] += Σ_k u_k^β and part[(c + 1)·Terms + β] +=
    /// Σ_k u_k^β·v_k[c]. The powers are formed as before (a row prefix times a power of the last coordinate: at most |β|
    /// roundings) and each term's sum runs over the keys in order in one register lane (one rounding per product and
    /// sum, an FMA each), then is added to part — the same roundings per term as summing the keys one at a time, but
    /// the sums stay in registers across the block: three value columns × three vectors of exponents of one row per
    /// pass, at SimdInfo's widest width up to 256 bits (as <see cref="Evaluate(ReadOnlySpan{double}, ReadOnlySpan{double}, int, Span{double}, Span{double})"/>).
    /// <paramref name="part"/> carries <see cref="Padding"/> doubles past its last column (the masked tail adds +0 there).
    /// </summary>
    public void AccumulateKeys(ReadOnlySpan<double> u, ReadOnlySpan<double> values, int count, int dv, Span<double> part, Span<double> work) =>
        AccumulateKeys(u, values, count, dv, part, work, Math.Min(8, SimdInfo.Float32Lanes));

    /// <summary>As above at <paramref name="float32Lanes"/> (16, 8, 4 or 1, resolved by SimdInfo; the tests run each width
    /// the CPU has against the scalar form).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void AccumulateKeys(ReadOnlySpan<double> u, ReadOnlySpan<double> values, int count, int dv, Span<double> part, Span<double> work, int float32Lanes)
    {
        int d = D, g = Degree, terms = Terms, rows = _rowStart.Length, lw = KeyPowerStride, vs = ValueStride(dv);
        if (count > KeyBlock || u.Length < count * d || values.Length < count * dv || part.Length < (dv + 1) * terms + Padding || work.Length < AccumulateWork(dv))
            throw new ArgumentException("block larger than its scratch", nameof(count));
        var last = work[..(count * lw)];
        var prefix = work.Slice(count * lw, count * rows);
        var vals = work.Slice(count * (lw + rows), count * vs);
        for (int k = 0; k < count; k++)
        {
            RowPowers(u.Slice(k * d, d), last.Slice(k * lw, g + 1), prefix.Slice(k * rows, rows));
            last.Slice(k * lw + g + 1, Padding).Clear();
            vals[k * vs] = 1;
            for (int c = 0; c < dv; c++) vals[k * vs + 1 + c] = values[k * dv + c];
            for (int c = dv + 1; c < vs; c++) vals[k * vs + c] = 0;
        }
        switch (SimdInfo.Resolve(float32Lanes))
        {
            case 16: AccumulateRows<Vector512<double>, Simd512D>(count, dv, last, prefix, vals, part); return;
            case 8: AccumulateRows<Vector256<double>, Simd256D>(count, dv, last, prefix, vals, part); return;
            case 4: AccumulateRows<Vector128<double>, Simd128D>(count, dv, last, prefix, vals, part); return;
        }
        for (int k = 0; k < count; k++)
            for (int r = 0; r < rows; r++)
            {
                double p = prefix[k * rows + r];
                int start = _rowStart[r], len = _rowLength[r];
                for (int j = 0; j < len; j++)
                {
                    double w = p * last[k * lw + j];
                    for (int c = 0; c <= dv; c++) part[c * terms + start + j] = Math.FusedMultiplyAdd(w, vals[k * vs + c], part[c * terms + start + j]);
                }
            }
    }

    /// <summary>The vector form of <see cref="AccumulateKeys(ReadOnlySpan{double}, ReadOnlySpan{double}, int, int, Span{double}, Span{double}, int)"/>:
    /// for each row, three vectors of exponents × three value columns — nine sums in registers over the block's keys.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AccumulateRows<TV, TS>(int count, int dv, Span<double> last, Span<double> prefix, Span<double> vals, Span<double> part)
        where TV : unmanaged where TS : ISimd<double, TV>
    {
        int terms = Terms, rows = _rowStart.Length, lw = KeyPowerStride, vs = ValueStride(dv), w = TS.Count;
        ref double lr = ref MemoryMarshal.GetReference(last);
        ref double pr = ref MemoryMarshal.GetReference(prefix);
        ref double vr = ref MemoryMarshal.GetReference(vals);
        ref double outr = ref MemoryMarshal.GetReference(part);
        ref double mask = ref MemoryMarshal.GetArrayDataReference(HeadMask);
        for (int cg = 0; cg <= dv; cg += 3)
        {
            int nc = Math.Min(3, dv + 1 - cg);
            for (int r = 0; r < rows; r++)
            {
                int start = _rowStart[r], len = _rowLength[r];
                for (int j = 0; j < len; j += 3 * w)
                {
                    // Three vectors of exponents of row r for three columns: nine sums in registers over the keys, each
                    // key's row prefix times its value (p·v_c, one rounding: the same count as (p·u^j)·v_c) times the
                    // vector of its last-coordinate powers, one FMA. Lanes past the row's end sum powers of no term and
                    // are multiplied by 0 when added to part (they are finite: |u| ≤ 1, and the tree's values are V scaled to |v| < 1).
                    var a0 = TS.Zero; var a1 = a0; var a2 = a0; var b0 = a0; var b1 = a0; var b2 = a0; var c0 = a0; var c1 = a0; var c2 = a0;
                    int vectors = Math.Min(3, (len - j + w - 1) / w);
                    ref double pk = ref Unsafe.Add(ref pr, r);
                    ref double lk = ref Unsafe.Add(ref lr, j);
                    ref double vk = ref Unsafe.Add(ref vr, cg);
                    if (vectors == 3)
                        for (int k = 0; k < count; k++)
                        {
                            double p = pk;
                            var x = TS.Broadcast(p * vk); var y = TS.Broadcast(p * Unsafe.Add(ref vk, 1)); var z = TS.Broadcast(p * Unsafe.Add(ref vk, 2));
                            var l0 = TS.Load(ref lk); var l1 = TS.Load(ref Unsafe.Add(ref lk, w)); var l2 = TS.Load(ref Unsafe.Add(ref lk, 2 * w));
                            a0 = TS.Fma(l0, x, a0); a1 = TS.Fma(l1, x, a1); a2 = TS.Fma(l2, x, a2);
                            b0 = TS.Fma(l0, y, b0); b1 = TS.Fma(l1, y, b1); b2 = TS.Fma(l2, y, b2);
                            c0 = TS.Fma(l0, z, c0); c1 = TS.Fma(l1, z, c1); c2 = TS.Fma(l2, z, c2);
                            pk = ref Unsafe.Add(ref pk, rows); lk = ref Unsafe.Add(ref lk, lw); vk = ref Unsafe.Add(ref vk, vs);
                        }
                    else if (vectors == 2)
                        for (int k = 0; k < count; k++)
                        {
                            double p = pk;
                            var x = TS.Broadcast(p * vk); var y = TS.Broadcast(p * Unsafe.Add(ref vk, 1)); var z = TS.Broadcast(p * Unsafe.Add(ref vk, 2));
                            var l0 = TS.Load(ref lk); var l1 = TS.Load(ref Unsafe.Add(ref lk, w));
                            a0 = TS.Fma(l0, x, a0); a1 = TS.Fma(l1, x, a1);
                            b0 = TS.Fma(l0, y, b0); b1 = TS.Fma(l1, y, b1);
                            c0 = TS.Fma(l0, z, c0); c1 = TS.Fma(l1, z, c1);
                            pk = ref Unsafe.Add(ref pk, rows); lk = ref Unsafe.Add(ref lk, lw); vk = ref Unsafe.Add(ref vk, vs);
                        }
                    else
                        for (int k = 0; k < count; k++)
                        {
                            double p = pk;
                            var l0 = TS.Load(ref lk);
                            a0 = TS.Fma(l0, TS.Broadcast(p * vk), a0);
                            b0 = TS.Fma(l0, TS.Broadcast(p * Unsafe.Add(ref vk, 1)), b0);
                            c0 = TS.Fma(l0, TS.Broadcast(p * Unsafe.Add(ref vk, 2)), c0);
                            pk = ref Unsafe.Add(ref pk, rows); lk = ref Unsafe.Add(ref lk, lw); vk = ref Unsafe.Add(ref vk, vs);
                        }
                    // Add the valid lanes (the others add +0 to the next row's, column's or padding slots).
                    int at = start + j;
                    for (int v = 0; v < vectors; v++)
                    {
                        var keep = TS.Load(ref Unsafe.Add(ref mask, MaxLanes - Math.Min(w, len - j - v * w)));
                        int o = at + v * w;
                        var (sa, sb, sc) = v == 0 ? (a0, b0, c0) : v == 1 ? (a1, b1, c1) : (a2, b2, c2);
                        AddMasked(ref Unsafe.Add(ref outr, cg * terms + o), sa, keep);
                        if (nc > 1) AddMasked(ref Unsafe.Add(ref outr, (cg + 1) * terms + o), sb, keep);
                        if (nc > 2) AddMasked(ref Unsafe.Add(ref outr, (cg + 2) * terms + o), sc, keep);
                    }
                }
            }
        }

        static void AddMasked(ref double target, TV sum, TV keep) => TS.Store(TS.Add(TS.Load(ref target), TS.Mul(sum, keep)), ref target);
    }

    /// <summary>Multiplies each moment column by c_β (done once, after all translations).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void FoldCoefficients(Span<double> moments)
    {
        for (int t = 0; t < Terms; t++) moments[t] *= _coef[t];
    }

    /// <summary>
    /// Translates moments to a new centre and scale, one coordinate at a time: with u' = δ + σ∘u (a child box inside its
    /// parent box, |δ_c| + σ_c ≤ 1), u'^β = Π_c Σ_{j ≤ β_c} C(β_c, j)·δ_c^{β_c − j}·σ_c^j·u_c^j, so
    /// μ'[β] = Σ over the same multi-index set (closed under lowering one exponent). All coefficients are bounded by
    /// (|δ_c| + σ_c)^{β_c} ≤ 1, so each pass adds at most (2g + 4)u relative to Σ|v|. Adds the result to
    /// <paramref name="target"/> for <paramref name="columns"/> columns of Terms each. <paramref name="work"/> holds
    /// <see cref="TranslateWork"/>(columns) doubles. Runs at SimdInfo's widest width up to 256 bits, as the other moment
    /// kernels (512 bits measured no faster on Zen 4 in an isolated benchmark at d = 1…4).
    /// </summary>
    public void TranslateAdd(ReadOnlySpan<double> source, ReadOnlySpan<double> delta, ReadOnlySpan<double> sigma, Span<double> target, int columns, Span<double> work) =>
        TranslateAdd(source, delta, sigma, target, columns, work, Math.Min(8, SimdInfo.Float32Lanes));

    /// <summary>As above at <paramref name="float32Lanes"/> (16, 8, 4 or 1, resolved by SimdInfo): every width is
    /// bit-identical to the scalar form (the same FMAs in the same order; the tests compare them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void TranslateAdd(ReadOnlySpan<double> source, ReadOnlySpan<double> delta, ReadOnlySpan<double> sigma, Span<double> target, int columns, Span<double> work, int float32Lanes)
    {
        int d = D, g = Degree, terms = Terms, stride = g + d + 1, g1 = g + 1, gp = CoefficientRow;
        int width = (columns + 2) / 3 * 3; // columns padded with zeros to whole groups of three
        if (work.Length < TranslateWork(columns)) throw new ArgumentException("scratch too short", nameof(work));
        int lanes = SimdInfo.Resolve(float32Lanes);
        var a = work[..(width * terms)]; var b = work.Slice(width * terms, width * terms);
        var coef = work.Slice(2 * width * terms, d * g1 * gp);
        var chain = work.Slice(2 * width * terms + d * g1 * gp, 3 * g1);
        Span<double> dp = stackalloc double[g1]; Span<double> sp = stackalloc double[g1];
        // Coefficients C(e, j)·δ^{e−j}·σ^j of every coordinate, shared by all columns, stored transposed (row j, entry e)
        // with zeros for e < j and up to the padded width gp (a multiple of 8): w consecutive e read as one vector.
        for (int c = 0; c < d; c++)
        {
            dp[0] = 1; sp[0] = 1;
            for (int i = 1; i <= g; i++) { dp[i] = dp[i - 1] * delta[c]; sp[i] = sp[i - 1] * sigma[c]; }
            var cc = coef.Slice(c * g1 * gp, g1 * gp);
            cc.Clear();
            for (int e = 0; e <= g; e++)
                for (int j = 0; j <= e; j++) cc[j * gp + e] = _binomial[e * stride + j] * dp[e - j] * sp[j];
        }
        source[..(columns * terms)].CopyTo(a);
        a[(columns * terms)..].Clear();
        Span<double> o = stackalloc double[6 * MaxLanes];
        for (int c = 0; c < d; c++)
        {
            if (delta[c] == 0 && sigma[c] == 1) continue;
            var cc = coef.Slice(c * g1 * gp, g1 * gp);
            var ci = _chainIndex[c]; var cs = _chainStart[c];
            for (int col = 0; col < width; col += 3)
            {
                var a0 = a.Slice(col * terms, terms); var a1 = a.Slice((col + 1) * terms, terms); var a2 = a.Slice((col + 2) * terms, terms);
                var b0 = b.Slice(col * terms, terms); var b1 = b.Slice((col + 1) * terms, terms); var b2 = b.Slice((col + 2) * terms, terms);
                // Per chain β + j·e_c (j ≤ L): b[β + e·e_c] = Σ_{j ≤ e} C(e, j) δ^{e−j} σ^j a[β + j·e_c], a triangular product.
                for (int ch = 0; ch + 1 < cs.Length; ch++)
                {
                    int from = cs[ch], len = cs[ch + 1] - from;
                    for (int j = 0; j < len; j++)
                    {
                        int t = ci[from + j];
                        chain[3 * j] = a0[t]; chain[3 * j + 1] = a1[t]; chain[3 * j + 2] = a2[t];
                    }
                    var dst = new ChainTarget(ci, from, b0, b1, b2);
                    switch (lanes)
                    {
                        case 16: TranslateChain<Vector512<double>, Simd512D>(cc, chain, len, gp, dst, o); continue;
                        case 8: TranslateChain<Vector256<double>, Simd256D>(cc, chain, len, gp, dst, o); continue;
                        case 4: TranslateChain<Vector128<double>, Simd128D>(cc, chain, len, gp, dst, o); continue;
                    }
                    for (int e = 0; e < len; e++)
                    {
                        double s0 = 0, s1 = 0, s2 = 0;
                        for (int j = 0; j <= e; j++)
                        {
                            double cv = cc[j * gp + e];
                            s0 = Math.FusedMultiplyAdd(cv, chain[3 * j], s0);
                            s1 = Math.FusedMultiplyAdd(cv, chain[3 * j + 1], s1);
                            s2 = Math.FusedMultiplyAdd(cv, chain[3 * j + 2], s2);
                        }
                        int at = ci[from + e];
                        b0[at] = s0; b1[at] = s1; b2[at] = s2;
                    }
                }
            }
            var swap = a; a = b; b = swap;
        }
        for (int col = 0; col < columns; col++)
        {
            var dst = target.Slice(col * terms, terms);
            System.Numerics.Tensors.TensorPrimitives.Add(dst, a.Slice(col * terms, terms), dst);
        }
    }

    // A coefficient row's padded length: a multiple of 8 doubles, so two vectors of any width up to 512 bits starting at a
    // multiple of their combined length stay within the row.
    private int CoefficientRow => (Degree + 1 + 7) & ~7;

    /// <summary>Where one chain's translated terms go: term e of the chain is index ci[from + e] of three columns.</summary>
    private readonly ref struct ChainTarget(int[] ci, int from, Span<double> b0, Span<double> b1, Span<double> b2)
    {
        public readonly int[] Index = ci;
        public readonly int From = from;
        public readonly Span<double> B0 = b0, B1 = b1, B2 = b2;
    }

    /// <summary>One chain's triangular product, 2w e at a time in two vectors (for j &gt; e the coefficient is 0 and adds +0;
    /// lanes past the chain's end are not stored) and three columns at a time (six independent FMA chains sharing each
    /// coefficient vector and each broadcast): every sum is the same FMAs in the same order as one e and one column at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TranslateChain<TV, TS>(Span<double> cc, Span<double> chain, int len, int gp, in ChainTarget dst, Span<double> o)
        where TV : unmanaged where TS : ISimd<double, TV>
    {
        int w = TS.Count;
        ref double cr = ref MemoryMarshal.GetReference(cc);
        ref double hr = ref MemoryMarshal.GetReference(chain);
        ref double ob = ref MemoryMarshal.GetReference(o);
        for (int e0 = 0; e0 < len; e0 += 2 * w)
        {
            var s0 = TS.Zero; var s1 = s0; var s2 = s0; var r0 = s0; var r1 = s0; var r2 = s0;
            int top = Math.Min(e0 + w - 1, len - 1);
            ref double cj = ref Unsafe.Add(ref cr, e0);
            ref double hj = ref hr;
            if (e0 + w < len)
            {
                // Coefficients e0 … e0 + 2w − 1 lie within the padded row (gp is a multiple of 8 ≥ 2w, e0 a multiple of 2w).
                int top2 = Math.Min(e0 + 2 * w - 1, len - 1);
                for (int j = 0; j <= top; j++)
                {
                    var cv = TS.Load(ref cj); var cw = TS.Load(ref Unsafe.Add(ref cj, w));
                    var x = TS.Broadcast(hj); var y = TS.Broadcast(Unsafe.Add(ref hj, 1)); var z = TS.Broadcast(Unsafe.Add(ref hj, 2));
                    s0 = TS.Fma(cv, x, s0); s1 = TS.Fma(cv, y, s1); s2 = TS.Fma(cv, z, s2);
                    r0 = TS.Fma(cw, x, r0); r1 = TS.Fma(cw, y, r1); r2 = TS.Fma(cw, z, r2);
                    cj = ref Unsafe.Add(ref cj, gp); hj = ref Unsafe.Add(ref hj, 3);
                }
                for (int j = top + 1; j <= top2; j++)
                {
                    var cw = TS.Load(ref Unsafe.Add(ref cj, w));
                    r0 = TS.Fma(cw, TS.Broadcast(hj), r0);
                    r1 = TS.Fma(cw, TS.Broadcast(Unsafe.Add(ref hj, 1)), r1);
                    r2 = TS.Fma(cw, TS.Broadcast(Unsafe.Add(ref hj, 2)), r2);
                    cj = ref Unsafe.Add(ref cj, gp); hj = ref Unsafe.Add(ref hj, 3);
                }
            }
            else
                for (int j = 0; j <= top; j++)
                {
                    var cv = TS.Load(ref cj);
                    s0 = TS.Fma(cv, TS.Broadcast(hj), s0);
                    s1 = TS.Fma(cv, TS.Broadcast(Unsafe.Add(ref hj, 1)), s1);
                    s2 = TS.Fma(cv, TS.Broadcast(Unsafe.Add(ref hj, 2)), s2);
                    cj = ref Unsafe.Add(ref cj, gp); hj = ref Unsafe.Add(ref hj, 3);
                }
            // o = [s0 s1 s2 r0 r1 r2], w lanes each.
            TS.Store(s0, ref ob); TS.Store(s1, ref Unsafe.Add(ref ob, w)); TS.Store(s2, ref Unsafe.Add(ref ob, 2 * w));
            TS.Store(r0, ref Unsafe.Add(ref ob, 3 * w)); TS.Store(r1, ref Unsafe.Add(ref ob, 4 * w)); TS.Store(r2, ref Unsafe.Add(ref ob, 5 * w));
            int count = Math.Min(2 * w, len - e0);
            for (int t = 0; t < count; t++)
            {
                int at = dst.Index[dst.From + e0 + t], q = t < w ? t : 2 * w + t;
                dst.B0[at] = o[q]; dst.B1[at] = o[q + w]; dst.B2[at] = o[q + 2 * w];
            }
        }
    }

    /// <summary>Scratch length <see cref="TranslateAdd(ReadOnlySpan{double}, ReadOnlySpan{double}, ReadOnlySpan{double}, Span{double}, int, Span{double})"/> needs for <paramref name="columns"/> columns.</summary>
    public int TranslateWork(int columns) => 2 * ((columns + 2) / 3 * 3) * Terms + D * (Degree + 1) * CoefficientRow + 3 * (Degree + 1);

    // ---- construction and proof ------------------------------------------------------------------------------

    /// <summary>Pascal's triangle C(a, b) for a ≤ size (exact below 2⁵³, relative error ≤ a·u above).</summary>
    private static double[] Pascal(int size)
    {
        int s = size + 1;
        var c = new double[s * s];
        for (int a = 0; a <= size; a++)
        {
            c[a * s] = 1;
            for (int b = 1; b <= a; b++) c[a * s + b] = c[(a - 1) * s + b - 1] + (b <= a - 1 ? c[(a - 1) * s + b] : 0);
        }
        return c;
    }

    /// <summary>
    /// Enclosures [lo_k, hi_k] of the Chebyshev coefficients c₀ = I₀(H), c_k = 2I_k(H) of e^{Ht}, k ≤ K, from the power
    /// series I_k(H) = Σ_j (H/2)^{2j+k}/(j!(j+k)!) (positive terms; each term's rounding ≤ (2k + 3j + 4)u, the sum's
    /// ≤ J·u, the truncated tail ≤ the last term since the ratios fall below 1/2).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static (double[] Lo, double[] Hi) ChebyshevEnclosures(double h, int count)
    {
        var lo = new double[count + 1]; var hi = new double[count + 1];
        double half = 0.5 * h, q = half * half, lead = 1; // lead = (H/2)^k / k!
        for (int k = 0; k <= count; k++)
        {
            if (k > 0) lead = lead * half / k;
            double term = lead, sum = 0;
            int j = 0;
            for (; j < 10000; j++)
            {
                sum += term;
                double ratio = q / ((j + 1.0) * (j + 1.0 + k));
                double next = term * ratio;
                if (ratio <= 0.5 && next <= 1e-20 * sum) { term = next; break; }
                term = next;
            }
            double gamma = (2.0 * k + 4.0 * j + 12) * U;
            double l = sum * (1 - gamma), r = sum * (1 + gamma) + 2 * term * (1 + gamma) + 1e-300;
            double f = k == 0 ? 1 : 2;
            lo[k] = f * l; hi[k] = f * r;
        }
        return (lo, hi);
    }

    /// <summary>Σ_{k&gt;g} 2I_k(H) ≤ 2(H/2)^{g+1}/(g+1)!·e^{H²/(4(g+2))}/(1 − H/(2(g+2))), rounded up.</summary>
    internal static double TailBound(double h, int g)
    {
        double ratio = 0.5 * h / (g + 2);
        if (ratio >= 1) return double.PositiveInfinity;
        double lead = 1;
        for (int k = 1; k <= g + 1; k++) lead = lead * (0.5 * h) / k;
        return 2 * lead * Math.Exp(h * h / (4.0 * (g + 2))) / (1 - ratio) * (1 + 1e-10) + 1e-300;
    }

    /// <summary>α_ℓ of the Chebyshev series truncated at g, as Hℓ/ℓ! minus the monomial coefficients of the tail
    /// Σ_{g&lt;k≤g+K} c_k T_k (small, quickly decreasing terms), so no large Chebyshev terms cancel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static double[] MonomialCoefficients(double h, int g, double[] lo, double[] hi)
    {
        int kMax = Math.Min(lo.Length - 1, g + 80);
        var alpha = new double[g + 1];
        double taylor = 1;
        for (int l = 0; l <= g; l++) { if (l > 0) taylor = taylor * h / l; alpha[l] = taylor; }
        // T_k monomial coefficients by T_{k+1} = 2t·T_k − T_{k−1}; accumulate −c_k·T_k for k > g (only t^ℓ, ℓ ≤ g, kept).
        var prev = new double[kMax + 2]; var cur = new double[kMax + 2]; var next = new double[kMax + 2];
        prev[0] = 1; cur[1] = 1;
        var tail = new double[g + 1];
        for (int k = 1; k <= kMax; k++)
        {
            if (k > g)
            {
                double c = 0.5 * (lo[k] + hi[k]);
                if (c == 0) break;
                for (int l = k % 2; l <= g; l += 2) tail[l] += c * cur[l];
            }
            if (k == kMax) break;
            Array.Clear(next);
            for (int i = 0; i <= k; i++) next[i + 1] += 2 * cur[i];
            for (int i = 0; i <= k - 1; i++) next[i] -= prev[i];
            (prev, cur, next) = (cur, next, prev);
        }
        for (int l = 0; l <= g; l++) alpha[l] -= tail[l];
        return alpha;
    }

    /// <summary>
    /// Proven sup_{t∈[−1,1]} |Σ α_ℓ tℓ − e^{Ht}|: P's Chebyshev coefficients p_k = Σ_ℓ α_ℓ·B_ℓ(j) (t^ℓ = Σ_j B_ℓ(j)·T_{|ℓ−2j|},
    /// B_ℓ(j) = C(ℓ, j)/2^ℓ ≥ 0, Σ_j B_ℓ(j) = 1) are computed with rounding ≤ (3g + 6)u·Σ_ℓ|α_ℓ| in total; then
    /// |P − e^{Ht}| ≤ Σ_{k≤g} max(|p̂_k − lo_k|, |p̂_k − hi_k|) + (3g + 6)u·Σ|α| + Σ_{k&gt;g} c_k, all rounded up.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static double ProveBound(double[] alpha, double[] lo, double[] hi, double h, int g)
    {
        var p = new double[g + 1];
        var row = new double[g + 2];
        row[0] = 1; // B_0
        double sumAbs = 0;
        for (int l = 0; l <= g; l++)
        {
            if (l > 0)
            {
                // B_ℓ(j) = (B_{ℓ−1}(j−1) + B_{ℓ−1}(j)) / 2 (positive sums: relative error ≤ ℓu).
                for (int j = l; j >= 0; j--) row[j] = 0.5 * ((j > 0 ? row[j - 1] : 0) + (j < l ? row[j] : 0));
            }
            sumAbs += Math.Abs(alpha[l]);
            for (int j = 0; j <= l; j++) p[Math.Abs(l - 2 * j)] += alpha[l] * row[j];
        }
        double bound = 0;
        for (int k = 0; k <= g; k++) bound += Math.Max(Math.Abs(p[k] - lo[k]), Math.Abs(p[k] - hi[k]));
        bound += (3.0 * g + 6) * 1.01 * U * sumAbs + TailBound(h, g);
        return bound * (1 + (4.0 * g + 16) * U);
    }
}
