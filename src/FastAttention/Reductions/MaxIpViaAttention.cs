using System.Globalization;

namespace FastAttention.Reductions;

/// <summary>The exact maxima M_i = max_j a_i·b_j recovered through attention.</summary>
/// <param name="Maxima">M_i for every a_i.</param>
/// <param name="Lambda">The scaling λ of K = λ·B (the paper's k·C = C·ln n).</param>
/// <param name="OracleCalls">Oracle calls made (rounds of Lemma C.1).</param>
/// <param name="Instance">The instance handed to the oracle and the ε′ it needed (null when none).</param>
public sealed record MaxIpResult(long[] Maxima, double Lambda, int OracleCalls, ReductionInstance? Instance);

/// <summary>
/// Gupta et al. Lemma C.3: Max-IP exactly. With Q = A and K = λ·B the row sums are S_i = Σ_j e^{λ a_i·b_j}, so
/// e^{λM_i} ≤ S_i ≤ m·e^{λM_i}. Lemma C.1 gives |ln Ŝ_i − ln S_i| ≤ e = 0.5 (ε = e^{0.5} − 1); then
/// (ln Ŝ_i + e + 0.25)/λ lies in [M_i + 0.25/λ, M_i + (ln m + 2e + 0.25)/λ], strictly inside (M_i, M_i + 1) as soon as
/// λ &gt; ln m + 2e + 0.25; we take λ = ln m + 1.5 (the paper's C·ln n with C the smallest valid constant; the
/// paper's rounding ⌊log_n S′/C + 0.5⌋ needs ln n &gt; 0, this form also serves m = 1).
/// </summary>
public static class MaxIpViaAttention
{
    private const double LogAccuracy = 0.5;

    /// <summary>Largest entry magnitude accepted (integers beyond this are not represented exactly enough to scale).</summary>
    public const double MaxEntry = 1 << 24;

    /// <summary>Computes M_i = max_j a_i·b_j for integer vectors A (n×d) and B (m×d).</summary>
    public static MaxIpResult Solve(VectorSet a, VectorSet b, AttentionOracle oracle)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(oracle);
        if (a.Dimension != b.Dimension) throw new ArgumentException($"A has dimension {a.Dimension} but B has {b.Dimension}.", nameof(b));
        a.RequireIntegers(MaxEntry);
        b.RequireIntegers(MaxEntry);
        int n = a.Count, m = b.Count, d = a.Dimension;
        // Lemma C.3: Q = A, K = λ·B (λ = C·ln n), row sums by Lemma C.1, M_i by rounding ln Ŝ_i / λ.
        double lambda = Math.Log(m) + 2 * LogAccuracy + 0.5;
        var k = Array.ConvertAll(b.Data, x => lambda * x);
        double epsilon = Math.Exp(LogAccuracy) - 1;
        double bound = Math.Max(a.MaxAbs(), b.MaxAbs());
        int before = oracle.Calls;
        var log = RowSumsViaAttention.EstimateLog(a.Data, n, k, m, d, epsilon, oracle, "maxip (Lemma C.3)",
            () => Hint(m, d, bound, lambda, epsilon), out _);
        var maxima = new long[n];
        for (int i = 0; i < n; i++) maxima[i] = (long)Math.Floor((log[i] + LogAccuracy + 0.25) / lambda);
        return new MaxIpResult(maxima, lambda, oracle.Calls - before, oracle.Instance);
    }

    private static string Hint(int m, int d, double bound, double lambda, double epsilon) =>
        string.Create(CultureInfo.InvariantCulture, $"use entries |x| ≤ {MaxEntryFor(m, d):G6} for d = {d}, m = {m} (got {bound:G6})");

    /// <summary>
    /// The largest integer entry magnitude served for every A (n×d), B (m×d) through the exact oracle: the float64
    /// limit of the Lemma C.1 search on Q = A, K = λ·B (<see cref="RowSumsViaAttention.MaxEntry(int, int, double, bool)"/>
    /// with the keys scaled by λ), capped at <see cref="MaxEntry"/>.
    /// </summary>
    public static double MaxEntryFor(int m, int d)
    {
        double lambda = Math.Log(m) + 2 * LogAccuracy + 0.5;
        double limit = RowSumsViaAttention.MaxEntry(m, d, Math.Exp(LogAccuracy) - 1, true, lambda);
        return Math.Min(MaxEntry, Math.Floor(limit));
    }
}
