using System.Globalization;

namespace FastAttention.Reductions;

/// <summary>Row sums S_i = Σ_j exp(q_i·k_j) estimated through an attention oracle, in the log domain.</summary>
/// <param name="LogEstimates">ln Ŝ_i with |ln Ŝ_i − ln S_i| ≤ ln(1 + ε), hence (1 − ε)·S_i ≤ Ŝ_i ≤ (1 + ε)·S_i.</param>
/// <param name="Epsilon">The multiplicative accuracy ε asked for.</param>
/// <param name="Rounds">Rounds of the parallel binary search (one oracle call each, fewer if rows finish early).</param>
/// <param name="OracleCalls">Oracle calls made.</param>
/// <param name="Instance">The (n+1)×(d+1) instance of Claim C.2 and the ε′ it needed (null when no call was needed).</param>
public sealed record RowSumsResult(double[] LogEstimates, double Epsilon, int Rounds, int OracleCalls, ReductionInstance? Instance)
{
    /// <summary>Ŝ_i = exp(ln Ŝ_i) (+∞ where the row sum exceeds float64's range; use <see cref="LogEstimates"/>).</summary>
    public double[] Estimates => Array.ConvertAll(LogEstimates, Math.Exp);
}

/// <summary>
/// Gupta et al. Lemma C.1 and Claim C.2: every row sum of exp(QKᵀ) within a (1 ± ε) factor by a parallel binary
/// search over thresholds c_i, one oracle call per round on the (n+1)×(d+1) instance
/// Q′ = [ln c, Q; 0, 0], K′ = [1, 0; 0, K], V′ = [0; 1], whose first column is o_i = S_i/(c_i + S_i).
/// Constants, tightened from the paper's ε/100: each round decides task 𝒯 with ε₀ = ε/(2 + ε), which needs the oracle
/// to separate (1+ε₀)/(2+ε₀) from (1−ε₀)/(2−ε₀) (additive ε′ ≈ ε₀/4); a row's interval for ln S_i then shrinks as
/// W ↦ W/2 + atanh ε₀ and the midpoint is within W/2 ≤ ln(1 + ε) after ⌈log₂((W₀ − ln(1+ε))/ln(1+ε))⌉ rounds.
/// The start interval comes from Hölder per coordinate: ln m + Σ_l min/max(q_il·min_j k_jl, q_il·max_j k_jl).
/// </summary>
public static class RowSumsViaAttention
{
    /// <summary>Estimates the row sums of exp(Q·Kᵀ) (scale 1) for Q (n×d) and K (m×d) to within (1 ± ε).</summary>
    public static RowSumsResult Estimate(VectorSet q, VectorSet k, double epsilon, AttentionOracle oracle)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(oracle);
        if (q.Dimension != k.Dimension)
            throw new ArgumentException($"Q has dimension {q.Dimension} but K has {k.Dimension}.", nameof(k));
        if (!(epsilon > 0 && epsilon <= 1)) throw new ArgumentOutOfRangeException(nameof(epsilon), $"ε must be in (0, 1] (got {epsilon}).");
        int before = oracle.Calls;
        var log = EstimateLog(q.Data, q.Count, k.Data, k.Count, q.Dimension, epsilon, oracle, "rowsums (Lemma C.1)", null, out int rounds);
        return new RowSumsResult(log, epsilon, rounds, oracle.Calls - before, oracle.Instance);
    }

    // Lemma C.1 (parallel binary search) driving Claim C.2 (one oracle call per round).
    internal static double[] EstimateLog(double[] q, int n, double[] k, int m, int d, double epsilon, AttentionOracle oracle,
        string reduction, Func<string>? hint, out int rounds)
    {
        double e = Math.Log(1 + epsilon);
        double eps0 = epsilon / (2 + epsilon);
        double up = Math.Log(1 + eps0), down = Math.Log(1 - eps0);
        var (lo, hi) = StartInterval(q, n, k, m, d);
        double w0 = 0;
        for (int i = 0; i < n; i++) w0 = Math.Max(w0, hi[i] - lo[i]);
        rounds = w0 <= e ? 0 : Math.Max(0, (int)Math.Ceiling(Math.Log2((w0 - e) / e)));
        double yes = (1 + eps0) / (2 + eps0), no = (1 - eps0) / (2 - eps0);
        var yesLow = new double[n]; var noHigh = new double[n]; var theta = new double[n];
        // Refuse before the first call when float64 cannot certify the search: Λ below bounds every round's
        // OracleInstance.Lambda() (each θ_i stays within the start interval, shifted by (up + down)/2), and the
        // oracle's threshold test fails exactly when Λ exceeds MaxLogitMagnitude (the same κ, the same thresholds).
        if (rounds > 0)
        {
            double lambda = PredictedLambda(q, n, k, m, d, lo, hi, Math.Abs(up + down) / 2);
            if (!Certifiable(m + 1, d + 1, epsilon, lambda, oracle.Algorithm.IsExact))
                throw new AttentionRefusedException(reduction, RefusalReason.Float64Reach, string.Create(CultureInfo.InvariantCulture,
                    $"this instance needs ε = {eps0 / (4 - eps0 * eps0):G3} which float64 cannot certify: its logit bound Λ = max_i(|ln c_i| + ‖q_i‖₁)·max(1, ‖K‖∞) = {lambda:G4} (|ln c_i| ≤ ln m + Σ_l |q_il|·max_j |k_jl|), while with ε = {epsilon:G3}, m = {m}, d = {d} float64 certifies Λ ≤ {MaxLogitMagnitude(m + 1, d + 1, epsilon, oracle.Algorithm.IsExact):G4} only; {(hint ?? (() => "use smaller entries or a larger ε"))()}."));
        }
        hint ??= () => "use smaller entries or a larger ε";
        for (int round = 0; round < rounds; round++)
        {
            bool any = false;
            for (int i = 0; i < n; i++)
            {
                bool active = hi[i] - lo[i] > 2 * e;
                theta[i] = active ? (lo[i] + hi[i]) / 2 - (up + down) / 2 : 0;
                yesLow[i] = active ? yes : double.NaN;
                noHigh[i] = active ? no : double.NaN;
                any |= active;
            }
            if (!any) break;
            var inst = ClaimC2Instance(q, n, k, m, d, theta);
            var b = oracle.Decide(inst, yesLow, noHigh, reduction, hint, eps0 / (4 - eps0 * eps0));
            for (int i = 0; i < n; i++)
            {
                if (double.IsNaN(yesLow[i])) continue;
                // b = 1 certifies S_i > (1 − ε₀)c_i, b = 0 certifies S_i < (1 + ε₀)c_i (task 𝒯).
                if (b[i]) lo[i] = Math.Max(lo[i], theta[i] + down);
                else hi[i] = Math.Min(hi[i], theta[i] + up);
            }
        }
        var est = new double[n];
        for (int i = 0; i < n; i++) est[i] = (lo[i] + hi[i]) / 2;
        return est;
    }

    /// <summary>Claim C.2: Q′ = [ln c, Q; 0, 0_d], K′ = [1, 0_d; 0_m, K], V′ = [0; 1_m]: o_i = S_i / (c_i + S_i).</summary>
    internal static OracleInstance ClaimC2Instance(double[] q, int n, double[] k, int m, int d, double[] lnC)
    {
        int d1 = d + 1;
        var qp = new double[(n + 1) * d1];
        var kp = new double[(m + 1) * d1];
        var vp = new double[m + 1];
        for (int i = 0; i < n; i++)
        {
            qp[i * d1] = lnC[i];
            Array.Copy(q, i * d, qp, i * d1 + 1, d);
        }
        kp[0] = 1;
        for (int j = 0; j < m; j++)
        {
            Array.Copy(k, j * d, kp, (j + 1) * d1 + 1, d);
            vp[j + 1] = 1;
        }
        return new OracleInstance(qp, kp, vp, n + 1, m + 1, d1, 1.0);
    }

    /// <summary>ln S_i ∈ [ln m + Σ_l min(q_il·kmin_l, q_il·kmax_l), ln m + Σ_l max(…)], widened by a rounding slack.</summary>
    private static (double[] Lo, double[] Hi) StartInterval(double[] q, int n, double[] k, int m, int d)
    {
        var kmin = new double[d]; var kmax = new double[d];
        Array.Fill(kmin, double.PositiveInfinity); Array.Fill(kmax, double.NegativeInfinity);
        for (int j = 0; j < m; j++)
            for (int l = 0; l < d; l++)
            {
                kmin[l] = Math.Min(kmin[l], k[j * d + l]);
                kmax[l] = Math.Max(kmax[l], k[j * d + l]);
            }
        var lo = new double[n]; var hi = new double[n];
        double lnm = Math.Log(m);
        for (int i = 0; i < n; i++)
        {
            double a = 0, b = 0, mag = 0;
            for (int l = 0; l < d; l++)
            {
                double x = q[i * d + l] * kmin[l], y = q[i * d + l] * kmax[l];
                a += Math.Min(x, y); b += Math.Max(x, y);
                mag += Math.Abs(x) + Math.Abs(y);
            }
            double slack = 1e-12 * (1 + mag + lnm);
            lo[i] = lnm + a - slack; hi[i] = lnm + b + slack;
        }
        return (lo, hi);
    }

    /// <summary>
    /// Λ = max_i (|θ_i| + ‖q_i‖₁)·max(1, ‖K‖∞)·(1 + 4(d+1)·1.2e-16) with |θ_i| ≤ max(|lo_i|, |hi_i|) + shift: the largest
    /// <see cref="OracleInstance.Lambda"/> any round's Claim C.2 instance can have.
    /// </summary>
    internal static double PredictedLambda(double[] q, int n, double[] k, int m, int d, double[] lo, double[] hi, double shift)
    {
        double kmax = 1;
        for (int j = 0; j < m * d; j++) kmax = Math.Max(kmax, Math.Abs(k[j]));
        double row = 0;
        for (int i = 0; i < n; i++)
        {
            double s = Math.Max(Math.Abs(lo[i]), Math.Abs(hi[i])) + shift;
            for (int l = 0; l < d; l++) s += Math.Abs(q[i * d + l]);
            row = Math.Max(row, s);
        }
        return row * kmax * (1 + 4 * (d + 1) * 1.2e-16);
    }

    /// <summary>Whether the oracle's threshold test (<see cref="AttentionOracle.Decide"/>) passes at logit bound Λ.</summary>
    internal static bool Certifiable(int keys, int dim, double epsilon, double lambda, bool exactOracle = true)
    {
        double eps0 = epsilon / (2 + epsilon);
        double yes = (1 + eps0) / (2 + eps0), no = (1 - eps0) / (2 - eps0);
        double kappa = AttentionOracle.RelativeRoundingBound(keys, dim, lambda);
        double alpha = exactOracle ? AttentionOracle.UnderflowBound(keys) : 0;
        return yes * (1 - kappa) - alpha - (no * (1 + kappa) + alpha) > 0;
    }

    /// <summary>
    /// The largest Λ (bound on |logits|) for which the oracle still separates (1±ε₀)/(2±ε₀): the float64 limit of
    /// Claim C.2 instances with <paramref name="keys"/> keys, dimension <paramref name="dim"/> and row-sum accuracy ε.
    /// Certifiable exactly up to it (to 2⁻⁶⁰ relative).
    /// </summary>
    internal static double MaxLogitMagnitude(int keys, int dim, double epsilon, bool exactOracle = true)
    {
        bool Fits(double lambda) => Certifiable(keys, dim, epsilon, lambda, exactOracle);
        if (!Fits(0)) return 0;
        double lo = 0, hi = 1;
        while (Fits(hi) && hi < 1e300) { lo = hi; hi *= 2; }
        for (int it = 0; it < 60; it++) { double mid = (lo + hi) / 2; if (Fits(mid)) lo = mid; else hi = mid; }
        return lo;
    }

    /// <summary>
    /// The largest a such that every Q (n×d), K (m×d) with entries |x| ≤ a is served at this ε: the worst case for
    /// <see cref="PredictedLambda"/> is q_i = a·1 with keys ±a·1, which this evaluates through the same code as a run
    /// (start interval included). Inputs with entries a little above it (e.g. exactly that worst case) are refused.
    /// For m = 1 no oracle call is needed and any entries are served (+∞).
    /// </summary>
    public static double MaxEntry(int m, int d, double epsilon, bool exactOracle = true) => MaxEntry(m, d, epsilon, exactOracle, 1);

    /// <summary><see cref="MaxEntry(int, int, double, bool)"/> for keys scaled by <paramref name="keyScale"/> (Lemma C.3's K = λ·B).</summary>
    internal static double MaxEntry(int m, int d, double epsilon, bool exactOracle, double keyScale)
    {
        if (m < 1 || d < 1) throw new ArgumentOutOfRangeException(nameof(m), "m and d must be at least 1.");
        if (m == 1) return double.PositiveInfinity;
        double limit = MaxLogitMagnitude(m + 1, d + 1, epsilon, exactOracle);
        double eps0 = epsilon / (2 + epsilon);
        double shift = Math.Abs(Math.Log(1 + eps0) + Math.Log(1 - eps0)) / 2;
        double Lambda(double a)
        {
            var q = new double[d]; Array.Fill(q, a);
            var k = new double[m * d];
            for (int j = 0; j < m; j++) for (int l = 0; l < d; l++) k[j * d + l] = j % 2 == 0 ? keyScale * a : -keyScale * a;
            var (lo, hi) = StartInterval(q, 1, k, m, d);
            return PredictedLambda(q, 1, k, m, d, lo, hi, shift);
        }
        if (!(Lambda(0) <= limit)) return 0;
        double a0 = 0, a1 = 1;
        while (Lambda(a1) <= limit && a1 < 1e150) { a0 = a1; a1 *= 2; }
        for (int it = 0; it < 80; it++) { double mid = (a0 + a1) / 2; if (Lambda(mid) <= limit) a0 = mid; else a1 = mid; }
        return a0;
    }
}
