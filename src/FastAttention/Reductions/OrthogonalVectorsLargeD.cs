using System.Globalization;

namespace FastAttention.Reductions;

/// <summary>The answer of an orthogonal-vectors reduction.</summary>
/// <param name="Found">Whether some a_i·b_j = 0.</param>
/// <param name="Pair">The witness (i, j), re-checked directly, when found.</param>
/// <param name="OracleCalls">Oracle calls made.</param>
/// <param name="Instance">The instance handed to the oracle (null when none was needed).</param>
/// <param name="Samples">Sampling rounds used (Lemma C.8; 0 for Lemma C.6).</param>
/// <param name="FailureProbability">Probability that a "no" answer is wrong (0: the answer is certain).</param>
public sealed record OrthogonalVectorsResult(bool Found, (int I, int J)? Pair, int OracleCalls, ReductionInstance? Instance, int Samples, double FailureProbability);

/// <summary>
/// Gupta et al. Lemma C.6: orthogonal vectors with one oracle call, any d. Q = −√|ln k|·A, K = √|ln k|·B give row sums
/// S_i = Σ_j k^{a_i·b_j}: S_i ≥ 1 when a_i has an orthogonal partner, S_i ≤ m·k otherwise. One call of Claim C.2's
/// instance with the fixed threshold c = γ decides every row: o_i = S_i/(γ + S_i) ≥ 1/(1+γ) or ≤ γ/(1+γ) when
/// k = γ²/m. For an oracle of additive error η &lt; 1/2 the smallest valid scaling is γ = (1 − 2η)/(1 + 2η), i.e.
/// |ln k| = ln m + 2·ln((1 + 2η)/(1 − 2η)) and B′ = √|ln k| = O(√log n) (the paper's k &lt; (1−c)/(n(1+c)), c &gt; ε).
/// </summary>
public static class OrthogonalVectorsLargeD
{
    /// <summary>The oracle error the construction is sized for when none is given.</summary>
    public const double DefaultOracleEpsilon = 0.1;

    /// <summary>Decides whether some a_i ∈ A, b_j ∈ B (0/1 vectors) are orthogonal, with one oracle call.</summary>
    /// <param name="a">The set A.</param>
    /// <param name="b">The set B.</param>
    /// <param name="oracle">The attention oracle.</param>
    /// <param name="oracleEpsilon">The additive error η &lt; 1/2 the instance is built to tolerate (its ε′).</param>
    public static OrthogonalVectorsResult Solve(VectorSet a, VectorSet b, AttentionOracle oracle, double oracleEpsilon = DefaultOracleEpsilon)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(oracle);
        if (a.Dimension != b.Dimension) throw new ArgumentException($"A has dimension {a.Dimension} but B has {b.Dimension}.", nameof(b));
        if (!(oracleEpsilon > 0 && oracleEpsilon < 0.5))
            throw new ArgumentOutOfRangeException(nameof(oracleEpsilon), $"the oracle error η must be in (0, 1/2) (got {oracleEpsilon}).");
        a.RequireBinary();
        b.RequireBinary();
        int n = a.Count, m = b.Count, d = a.Dimension;
        // Lemma C.6: Q = −√|ln k|·A, K = √|ln k|·B, one call of Claim C.2's instance with threshold c = γ.
        double gamma = (1 - 2 * oracleEpsilon) / (1 + 2 * oracleEpsilon);
        double lnK = Math.Log(gamma * gamma / m); // ln k < 0
        double root = Math.Sqrt(-lnK);
        var q = Array.ConvertAll(a.Data, x => -root * x);
        var k = Array.ConvertAll(b.Data, x => root * x);
        var lnC = new double[n];
        Array.Fill(lnC, Math.Log(gamma));
        var inst = RowSumsViaAttention.ClaimC2Instance(q, n, k, m, d, lnC);
        var yes = new double[n]; var no = new double[n];
        Array.Fill(yes, 1 / (1 + gamma));
        Array.Fill(no, gamma / (1 + gamma));
        int before = oracle.Calls;
        var rows = oracle.Decide(inst, yes, no, "ov (Lemma C.6)", () => Hint(m, d, gamma, root));
        (int, int)? pair = null;
        for (int i = 0; i < n && pair is null; i++)
            if (rows[i]) pair = (i, Partner(a, b, i) ?? throw new InvalidOperationException($"ov (Lemma C.6): row {i} was certified to have an orthogonal partner but has none; this is a bug."));
        return new OrthogonalVectorsResult(pair is not null, pair, oracle.Calls - before, oracle.Instance, 0, 0);
    }

    /// <summary>The first j with a_i·b_j = 0, by a direct O(m·d) scan (the witness, not part of the decision).</summary>
    internal static int? Partner(VectorSet a, VectorSet b, int i)
    {
        for (int j = 0; j < b.Count; j++)
            if (VectorSet.Dot(a[i], b[j]) == 0) return j;
        return null;
    }

    private static string Hint(int m, int d, double gamma, double root)
    {
        // Λ = (|ln γ| + root·d)·max(1, root) at worst: find the largest d the rounding bound allows.
        double yes = 1 / (1 + gamma), no = gamma / (1 + gamma);
        bool Fits(long dim)
        {
            double lambda = (Math.Abs(Math.Log(gamma)) + root * dim) * Math.Max(1, root);
            double kappa = AttentionOracle.RelativeRoundingBound(m + 1, (int)Math.Min(dim + 1, int.MaxValue), lambda);
            return yes * (1 - kappa) - no * (1 + kappa) > 2 * AttentionOracle.UnderflowBound(m + 1);
        }
        long dmax = 1;
        while (dmax < (1L << 40) && Fits(dmax * 2)) dmax *= 2;
        return string.Create(CultureInfo.InvariantCulture, $"use d ≤ {dmax} (got d = {d})");
    }
}
