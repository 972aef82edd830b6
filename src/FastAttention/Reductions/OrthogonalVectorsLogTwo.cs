using System.Globalization;

namespace FastAttention.Reductions;

/// <summary>
/// Gupta et al. Lemma C.8: orthogonal vectors with small entries. With Q = √ln2·A, K = √ln2·B′ the row sums
/// S_i = Σ_j 2^{a_i·b′_j} are integers; Lemma C.1 recovers them exactly by rounding, and an odd S_i certifies an
/// orthogonal pair in row i (a_i ≠ 0, so every non-orthogonal term is even). B′ keeps each b_j with probability 1/2 and
/// replaces the others by 1_d (never orthogonal to a_i ≠ 0): for an a_i with orthogonal partners the number kept is
/// odd with probability exactly 1/2 (condition on the last one), so r samples miss a "yes" with probability ≤ 2⁻ʳ.
/// Constants: S_i ≤ S_max = m·2^w with w = max_i |a_i|, so relative accuracy ε = 0.4/S_max already gives additive
/// error ≤ 0.4 &lt; 1/2 (the paper asks 1/(10·n·2^d)). A zero vector in A is answered directly.
/// Note: the paper writes Q = log2·A, K = log2·B, whose product is (ln 2)²·a·b, not ln 2·a·b; the factor √ln 2 on
/// each side (entries ≈ 0.833) is what gives 2^{a·b}.
/// </summary>
public static class OrthogonalVectorsLogTwo
{
    /// <summary>Default sampling rounds: a "yes" instance is missed with probability ≤ 2⁻³⁰.</summary>
    public const int DefaultSamples = 30;

    /// <summary>Decides whether some a_i ∈ A, b_j ∈ B (0/1 vectors) are orthogonal (seeded, reproducible).</summary>
    public static OrthogonalVectorsResult Solve(VectorSet a, VectorSet b, AttentionOracle oracle, int seed = 1, int samples = DefaultSamples)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(oracle);
        if (a.Dimension != b.Dimension) throw new ArgumentException($"A has dimension {a.Dimension} but B has {b.Dimension}.", nameof(b));
        if (samples < 1 || samples > 1000) throw new ArgumentOutOfRangeException(nameof(samples), $"samples must be in [1, 1000] (got {samples}).");
        a.RequireBinary();
        b.RequireBinary();
        int n = a.Count, m = b.Count, d = a.Dimension;
        int before = oracle.Calls;
        int w = 0;
        for (int i = 0; i < n; i++)
        {
            int weight = (int)VectorSet.Dot(a[i], a[i]);
            if (weight == 0) return new OrthogonalVectorsResult(true, (i, 0), 0, oracle.Instance, 0, 0);
            w = Math.Max(w, weight);
        }
        double sMax = m * Math.Pow(2, w);
        double epsilon = 0.4 / sMax;
        double root = Math.Sqrt(Math.Log(2));
        var q = Array.ConvertAll(a.Data, x => root * x);
        var k = new double[m * d];
        var kept = new bool[m];
        // Lemma C.8: sample B′ (each b_j kept with probability 1/2, else 1_d), exact row sums by Lemma C.1, parity.
        var rng = new Random(seed);
        for (int s = 1; s <= samples; s++)
        {
            for (int j = 0; j < m; j++)
            {
                kept[j] = rng.Next(2) == 1;
                for (int l = 0; l < d; l++) k[j * d + l] = root * (kept[j] ? b.Data[j * d + l] : 1);
            }
            var log = RowSumsViaAttention.EstimateLog(q, n, k, m, d, epsilon, oracle, "ov log-two (Lemma C.8)", () => Hint(n, m, d, w), out _);
            for (int i = 0; i < n; i++)
            {
                double sum = Math.Round(Math.Exp(log[i]));
                if (sum % 2 == 1)
                {
                    for (int j = 0; j < m; j++)
                        if (kept[j] && VectorSet.Dot(a[i], b[j]) == 0)
                            return new OrthogonalVectorsResult(true, (i, j), oracle.Calls - before, oracle.Instance, s, 0);
                    throw new InvalidOperationException($"ov log-two (Lemma C.8): row {i} has the odd row sum {sum} but no orthogonal partner; this is a bug.");
                }
            }
        }
        return new OrthogonalVectorsResult(false, null, oracle.Calls - before, oracle.Instance, samples, Math.Pow(2, -samples));
    }

    /// <summary>Whether float64 certifies the exact row sums for m keys, dimension d and largest weight w.</summary>
    internal static bool Fits(int m, int d, int w)
    {
        double epsilon = 0.4 / (m * Math.Pow(2, w));
        // Λ ≤ |ln c| + √ln2·√ln2·… ≤ (ln m + w·ln 2 + 1) + √ln2·w (row 1-norm of Q′ times ‖K′‖∞ = 1).
        double lambda = Math.Log(m) + (Math.Log(2) + Math.Sqrt(Math.Log(2))) * w + 1;
        return RowSumsViaAttention.MaxLogitMagnitude(m + 1, d + 1, epsilon) >= lambda;
    }

    private static string Hint(int n, int m, int d, int w)
    {
        int mMax = m;
        while (mMax > 1 && !Fits(mMax, d, w)) mMax /= 2;
        int dMax = 0;
        while (dMax < 1100 && Fits(m, dMax + 1, dMax + 1)) dMax++;
        string mPart = Fits(mMax, d, w) ? $"n ≤ {mMax} at d = {d}, or " : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"use {mPart}d ≤ {dMax} at n = {m} (row sums up to m·2^w = {m}·2^{w} must come out exact; got n = {n}, d = {d}) — or the one-call reduction of Lemma C.6");
    }
}
